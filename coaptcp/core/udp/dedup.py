"""Message deduplication for CoAP over UDP (RFC 7252 section 4.5), bounded.

A recipient remembers each CON for EXCHANGE_LIFETIME and each NON for NON_LIFETIME, keyed
by the Message ID and the source endpoint; a duplicate CON gets the same ACK (or
piggybacked response) again, a duplicate NON is ignored, and neither is processed twice.

The cache is bounded three ways (entries in all, entries per peer, bytes of replies kept):
when a bound is reached the oldest entry is forgotten early.  That only weakens
deduplication for the oldest messages (section 4.5 allows relaxing it), it never refuses
service; the per-peer bound keeps one peer's flood from shortening the others' memory.
Insertion order is expiry order (per kind), so expiry and eviction are O(1) each.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

__all__ = ["DedupCache", "SeenMessage"]


class SeenMessage:
    """One remembered message: its key, when it is forgotten, and the reply to replay.

    :ivar reply: the datagram sent in answer (an ACK, a piggybacked response), replayed to
        duplicates; ``None`` while there is none (a NON, or a CON not yet answered).
    :ivar exchange: what the endpoint attached (the request being processed), if anything.
    """

    __slots__ = ("confirmable", "dead", "exchange", "expires", "message_id", "peer", "reply")

    def __init__(self, peer: Hashable, message_id: int, confirmable: bool, expires: float) -> None:
        self.peer = peer
        self.message_id = message_id
        self.confirmable = confirmable
        self.expires = expires
        self.reply: bytes | None = None
        self.exchange: Any = None
        self.dead = False


class DedupCache:
    """The deduplication memory of one endpoint (RFC 7252 section 4.5).

    :param con_lifetime: EXCHANGE_LIFETIME, how long a CON is remembered.
    :param non_lifetime: NON_LIFETIME, how long a NON is remembered.
    """

    def __init__(
        self,
        *,
        con_lifetime: float,
        non_lifetime: float,
        max_entries: int,
        max_entries_per_peer: int,
        max_bytes: int,
    ) -> None:
        self.con_lifetime = con_lifetime
        self.non_lifetime = non_lifetime
        self.max_entries = max_entries
        self.max_entries_per_peer = max_entries_per_peer
        self.max_bytes = max_bytes
        self._by_peer: dict[Hashable, OrderedDict[int, SeenMessage]] = {}
        # Expiry order per kind; entries forgotten early stay in them, marked dead, until
        # a compaction (when the dead outnumber the live): bounded by twice the live.
        self._con: deque[SeenMessage] = deque()
        self._non: deque[SeenMessage] = deque()
        self._dead = 0
        self._size = 0
        self.reply_bytes = 0
        #: How many entries were forgotten before their time because of a bound.
        self.evicted = 0

    def __len__(self) -> int:
        return self._size

    def entries_of(self, peer: Hashable) -> int:
        """How many messages of ``peer`` are remembered."""
        entries = self._by_peer.get(peer)
        return len(entries) if entries else 0

    def lookup(self, peer: Hashable, message_id: int, now: float) -> SeenMessage | None:
        """The live entry for this message, or ``None`` (never seen, or expired)."""
        entries = self._by_peer.get(peer)
        if entries is None:
            return None
        seen = entries.get(message_id)
        if seen is None or seen.expires <= now:
            return None
        return seen

    def add(
        self, peer: Hashable, message_id: int, confirmable: bool, now: float
    ) -> tuple[SeenMessage, str | None]:
        """Remember a new message; returns its entry and the bound that made room, if any.

        An expired entry with the same key is replaced.
        """
        entries = self._by_peer.get(peer)
        reason = None
        if entries is not None:
            old = entries.get(message_id)
            if old is not None:
                self._forget(old, entries, evicted=False)
            if len(entries) >= self.max_entries_per_peer:
                self._forget(next(iter(entries.values())), entries, evicted=True)
                reason = "max_dedup_entries_per_peer"
        if self._size >= self.max_entries:
            self._evict_oldest()
            reason = "max_dedup_entries"
        entries = self._by_peer.get(peer)
        if entries is None:
            entries = self._by_peer[peer] = OrderedDict()
        lifetime = self.con_lifetime if confirmable else self.non_lifetime
        seen = SeenMessage(peer, message_id, confirmable, now + lifetime)
        entries[message_id] = seen
        (self._con if confirmable else self._non).append(seen)
        self._size += 1
        return seen, reason

    def set_reply(self, seen: SeenMessage, reply: bytes) -> str | None:
        """Keep ``reply`` for replay to duplicates; returns the bound that made room, if any."""
        if seen.dead:
            return None
        if seen.reply is not None:
            self.reply_bytes -= len(seen.reply)
        seen.reply = reply
        self.reply_bytes += len(reply)
        reason = None
        while self.reply_bytes > self.max_bytes and self._size:
            self._evict_oldest()
            reason = "max_dedup_bytes"
        return reason

    def expire(self, now: float) -> None:
        """Forget every entry whose lifetime is over."""
        for queue in (self._con, self._non):
            while queue and queue[0].expires <= now:
                seen = queue.popleft()
                if seen.dead:
                    self._dead -= 1
                else:
                    self._drop(seen)

    def next_expiry(self) -> float | None:
        """When the next entry expires (``None`` when empty)."""
        con, non = self._con, self._non
        if not con:
            return non[0].expires if non else None
        if non and non[0].expires < con[0].expires:
            return non[0].expires
        return con[0].expires

    def _evict_oldest(self) -> None:
        # The oldest is whichever queue's front was received first.
        while True:
            con = self._con[0] if self._con else None
            non = self._non[0] if self._non else None
            if con is None and non is None:
                return
            if non is None or (
                con is not None
                and con.expires - self.con_lifetime <= non.expires - self.non_lifetime
            ):
                queue = self._con
            else:
                queue = self._non
            seen = queue.popleft()
            if seen.dead:
                self._dead -= 1
                continue
            self._drop(seen)
            self.evicted += 1
            return

    def _forget(
        self, seen: SeenMessage, entries: OrderedDict[int, SeenMessage], *, evicted: bool
    ) -> None:
        """Drop an entry that may not be at the front of its queue (marked dead there)."""
        del entries[seen.message_id]
        self._release(seen)
        seen.dead = True
        self._dead += 1
        if evicted:
            self.evicted += 1
        if self._dead > 64 and self._dead > self._size:
            self._con = deque(s for s in self._con if not s.dead)
            self._non = deque(s for s in self._non if not s.dead)
            self._dead = 0
        if not entries:
            del self._by_peer[seen.peer]

    def _drop(self, seen: SeenMessage) -> None:
        """Drop an entry already taken off its queue."""
        entries = self._by_peer[seen.peer]
        del entries[seen.message_id]
        if not entries:
            del self._by_peer[seen.peer]
        self._release(seen)
        seen.dead = True

    def _release(self, seen: SeenMessage) -> None:
        self._size -= 1
        if seen.reply is not None:
            self.reply_bytes -= len(seen.reply)
