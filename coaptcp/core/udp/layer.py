"""The shared machinery of a UDP endpoint: peers, deduplication, CON retransmission.

:class:`MessageLayer` holds what the client side (:mod:`coaptcp.core.udp.client`) and the
server side (:mod:`coaptcp.core.udp.server`) of a :class:`~coaptcp.core.udp.messaging.UdpEndpoint`
share: the peer table (bounded, idle peers swept), the deduplication cache (RFC 7252
section 4.5), the datagrams to send, and the transmissions an ACK or a Reset may match,
with the CON retransmission timers (section 4.2).
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Protocol

from coaptcp.core.errors import LocalProtocolError, MessageTooLarge
from coaptcp.core.udp.config import TransmissionParameters, UdpLimits
from coaptcp.core.udp.dedup import DedupCache
from coaptcp.core.udp.events import UdpEvent
from coaptcp.core.udp.state import Kind, Peer, TimerHeap, Transmission

__all__ = ["LimitError", "MessageLayer", "RandomSource"]

_SWEEP_INTERVAL = 30.0


class LimitError(LocalProtocolError):
    """A local call hit a bound of :class:`UdpLimits`; ``limit`` names the field."""

    def __init__(self, limit: str, diagnostic: str) -> None:
        super().__init__(diagnostic)
        self.limit = limit


class RandomSource(Protocol):
    """What the endpoint draws from: ``random.Random`` fits; tests pass a fixed one."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


class MessageLayer:
    """Peers, deduplication, output and CON transmissions of one endpoint."""

    def __init__(
        self,
        parameters: TransmissionParameters,
        limits: UdpLimits,
        rng: RandomSource | None,
    ) -> None:
        self.parameters = parameters
        self.limits = limits
        self.rng: RandomSource = rng if rng is not None else random.Random()
        #: How long our Message IDs to a peer stay in use (EXCHANGE_LIFETIME).
        self.lifetime = parameters.exchange_lifetime
        self.dedup = DedupCache(
            con_lifetime=parameters.exchange_lifetime,
            non_lifetime=parameters.non_lifetime,
            max_entries=limits.max_dedup_entries,
            max_entries_per_peer=limits.max_dedup_entries_per_peer,
            max_bytes=limits.max_dedup_bytes,
        )
        self.peers: dict[Hashable, Peer] = {}
        self.timers = TimerHeap()
        self.out: list[tuple[bytes, Hashable]] = []
        #: Events of local calls (a bound reached), reported with the next input or timer.
        self.later: list[UdpEvent] = []
        #: Our CONs waiting for an ACK.
        self.outstanding = 0
        self.next_sweep = float("-inf")
        self._forced_sweep = float("-inf")

    # -- peers ------------------------------------------------------------------------------

    def peer(self, address: Hashable, now: float) -> Peer | None:
        """The state of ``address``, made if need be; ``None`` at ``max_peers``.

        At the bound, idle peers are swept first (at most once a second).
        """
        peer = self.peers.get(address)
        if peer is None:
            if len(self.peers) >= self.limits.max_peers:
                if now < self._forced_sweep + 1.0:
                    return None
                self._forced_sweep = now
                self.sweep(now)
                if len(self.peers) >= self.limits.max_peers:
                    return None
            if not self.peers:
                self.next_sweep = now + _SWEEP_INTERVAL
            peer = self.peers[address] = Peer(address, self.rng.getrandbits(16))
        return peer

    def need_peer(self, address: Hashable, now: float) -> Peer:
        """:meth:`peer`, raising :class:`LimitError` at ``max_peers``."""
        peer = self.peer(address, now)
        if peer is None:
            raise LimitError("max_peers", f"more than {self.limits.max_peers} peers")
        return peer

    def sweep(self, now: float) -> None:
        """Forget the peers that hold nothing."""
        for address in [a for a, peer in self.peers.items() if peer.idle(now)]:
            del self.peers[address]
        self.next_sweep = now + _SWEEP_INTERVAL

    # -- output -----------------------------------------------------------------------------

    def check_size(self, datagram: bytes) -> None:
        """Raise :class:`MessageTooLarge` above ``max_message_size`` (RFC 7252 4.6)."""
        if len(datagram) > self.limits.max_message_size:
            raise MessageTooLarge(len(datagram), self.limits.max_message_size)

    def room_for_con(self) -> bool:
        """Whether another CON may be in flight (``max_outstanding``)."""
        return self.outstanding < self.limits.max_outstanding

    def transmit(
        self, peer: Peer, mid: int, datagram: bytes, kind: Kind, owner: object, now: float
    ) -> Transmission:
        """Send a CON and arm its retransmission timer (RFC 7252 section 4.2).

        The first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
        """
        item = Transmission(peer.address, mid, datagram, True, kind, owner, now)
        item.timeout = self.parameters.initial_timeout(self.rng.random())
        self.timers.schedule(item, now + item.timeout)
        peer.sent[mid] = item
        self.outstanding += 1
        self.out.append((datagram, peer.address))
        return item

    def finish(self, peer: Peer, item: Transmission) -> None:
        """The transmission is over (acknowledged, reset, failed or abandoned)."""
        if not item.live:
            return
        item.live = False
        self.timers.cancel(item)
        if peer.sent.get(item.message_id) is item:
            del peer.sent[item.message_id]
        if item.confirmable:
            self.outstanding -= 1

    def retransmit_or_give_up(self, peer: Peer, item: Transmission, now: float) -> bool:
        """A CON's timer fired: retransmit it (``True``), or it failed (``False``).

        The timeout doubles on each retransmission; after MAX_RETRANSMIT of them the next
        timeout is a failure (section 4.2).  No retransmission leaves MAX_TRANSMIT_SPAN
        (when called late); the failure then comes at MAX_TRANSMIT_WAIT.
        """
        parameters = self.parameters
        if item.retransmits < parameters.max_retransmit:
            if now - item.first_sent <= parameters.max_transmit_span:
                item.retransmits += 1
                item.timeout *= 2
                self.timers.schedule(item, now + item.timeout)
                self.out.append((item.datagram, peer.address))
                return True
            item.retransmits = parameters.max_retransmit
            give_up = item.first_sent + parameters.max_transmit_wait
            if give_up > now:
                self.timers.schedule(item, give_up)
                return True
        self.finish(peer, item)
        return False
