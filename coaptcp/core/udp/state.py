"""The state a UDP endpoint keeps: exchanges, transmissions, peers, timers (RFC 7252 s. 4-5).

The two handles the caller holds are here: :class:`IncomingRequest` (a request a peer sent
us, answered with :meth:`UdpEndpoint.send_response`) and :class:`OutgoingRequest` (a
request we sent, returned by :meth:`UdpEndpoint.send_request`).  The rest is internal to
:mod:`coaptcp.core.udp.messaging`: one :class:`Transmission` per message we sent that may be
acknowledged or reset, per-peer state, server-side observation state, and a timer heap.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Hashable
from typing import Any

from coaptcp.core.message import Message
from coaptcp.core.udp.observeorder import NotificationOrder

__all__ = [
    "ExchangeState",
    "IncomingRequest",
    "OutgoingRequest",
    "RequestState",
]


class ExchangeState(enum.Enum):
    """Where an :class:`IncomingRequest` stands (RFC 7252 sections 5.2.1-5.2.3)."""

    #: Not answered; a CON has not been acknowledged either.
    PENDING = "pending"
    #: A CON acknowledged with an Empty ACK: the response will be a separate one.
    ACKNOWLEDGED = "acknowledged"
    #: Answered (piggybacked, separately, or refused by the endpoint), or dropped.
    DONE = "done"


class IncomingRequest:
    """A request a peer sent us (RFC 7252 section 5.1); answer it with ``send_response``.

    :ivar peer: the source endpoint, as the caller named it.
    :ivar message: the request.
    :ivar confirmable: whether it came in a CON.
    :ivar message_id: its Message ID.
    :ivar received: when it arrived (the caller's clock).
    """

    __slots__ = ("_seen", "confirmable", "message", "message_id", "peer", "received", "state")

    def __init__(
        self, peer: Hashable, message_id: int, confirmable: bool, message: Message, now: float
    ) -> None:
        self.peer = peer
        self.message_id = message_id
        self.confirmable = confirmable
        self.message = message
        self.received = now
        self.state = ExchangeState.PENDING
        self._seen: Any = None

    @property
    def token(self) -> bytes:
        """The request's token, echoed in every response (RFC 7252 section 5.3.1)."""
        return self.message.token

    def __repr__(self) -> str:
        kind = "CON" if self.confirmable else "NON"
        return f"IncomingRequest({self.peer!r}, {kind} {self.message_id:#06x}, {self.state.value})"


class RequestState(enum.Enum):
    """Where an :class:`OutgoingRequest` stands (RFC 7252 sections 4.7 and 5.2)."""

    #: Waiting behind NSTART for an earlier request to the same peer (section 4.7).
    QUEUED = "queued"
    #: Sent; nothing received yet.
    SENT = "sent"
    #: Acknowledged with an Empty ACK: a separate response is to follow (section 5.2.2).
    ACKNOWLEDGED = "acknowledged"
    #: An observation is established: notifications may follow (RFC 7641 section 3).
    OBSERVING = "observing"
    #: Answered, failed or cancelled: nothing more will be reported.
    DONE = "done"


class OutgoingRequest:
    """A request we send (RFC 7252 section 5.1), returned by ``send_request``.

    :ivar peer: the destination endpoint.
    :ivar message: the request (its token identifies the responses).
    :ivar confirmable: whether it travels as CON.
    :ivar message_id: assigned when it is first sent (``None`` while queued).
    :ivar observe: whether it registers an observation (GET or FETCH with Observe 0).
    """

    __slots__ = (
        "_holds_slot",
        "_transmission",
        "confirmable",
        "message",
        "message_id",
        "observe",
        "order",
        "peer",
        "state",
    )

    def __init__(self, peer: Hashable, message: Message, confirmable: bool) -> None:
        self.peer = peer
        self.message = message
        self.confirmable = confirmable
        self.message_id: int | None = None
        self.state = RequestState.QUEUED
        self.observe = message.code in (1, 5) and message.options.observe == 0
        #: The freshest notification so far (RFC 7641 section 3.4), for observations.
        self.order: NotificationOrder | None = NotificationOrder() if self.observe else None
        self._transmission: Transmission | None = None
        self._holds_slot = False

    @property
    def token(self) -> bytes:
        """The request's token (RFC 7252 section 5.3.1)."""
        return self.message.token

    @property
    def done(self) -> bool:
        """Whether nothing more will be reported for this request."""
        return self.state is RequestState.DONE

    def __repr__(self) -> str:
        return (
            f"OutgoingRequest({self.peer!r}, token={self.token.hex() or '-'}, {self.state.value})"
        )


class Kind(enum.Enum):
    """What a :class:`Transmission` carries."""

    REQUEST = "request"
    RESPONSE = "response"
    NOTIFICATION = "notification"
    PING = "ping"


class Transmission:
    """One message we sent that an ACK or a Reset may match (RFC 7252 sections 4.2-4.4).

    A CON is retransmitted on a timeout that starts random in [ACK_TIMEOUT,
    ACK_TIMEOUT * ACK_RANDOM_FACTOR] and doubles each time (section 4.2).  A NON request
    keeps its NSTART slot until a response or its hold time (the timer then frees it).
    """

    __slots__ = (
        "confirmable",
        "datagram",
        "due",
        "first_sent",
        "kind",
        "live",
        "message_id",
        "owner",
        "peer",
        "retransmits",
        "timeout",
        "timer",
    )

    def __init__(
        self,
        peer: Hashable,
        message_id: int,
        datagram: bytes,
        confirmable: bool,
        kind: Kind,
        owner: Any,
        now: float,
    ) -> None:
        self.peer = peer
        self.message_id = message_id
        self.datagram = datagram
        self.confirmable = confirmable
        self.kind = kind
        self.owner = owner
        self.first_sent = now
        self.retransmits = 0
        self.timeout = 0.0
        self.due = 0.0
        self.timer = 0
        self.live = True


class Observation:
    """Server side of one observation (RFC 7641 section 4.5), keyed by peer and token.

    ``inflight`` is the CON notification waiting for its ACK; ``newer`` a notification that
    replaces it at its next retransmission (section 4.5.2).  ``mids`` are the Message IDs
    of recent notifications, so that a Reset to any of them cancels the observation.
    """

    __slots__ = ("final", "inflight", "last_con", "mids", "newer", "peer", "token")

    #: Message IDs of past notifications still recognised in a Reset.
    RECENT_MIDS = 8

    def __init__(self, peer: Hashable, token: bytes, now: float) -> None:
        self.peer = peer
        self.token = token
        self.last_con = now
        self.inflight: Transmission | None = None
        self.newer: Message | None = None
        self.final = False
        self.mids: deque[int] = deque()


class Peer:
    """What one endpoint knows of one peer: its Message IDs in use, requests, slots."""

    __slots__ = (
        "address",
        "mid_hold",
        "next_mid",
        "observations",
        "outstanding",
        "pending",
        "queue",
        "requests",
        "sent",
    )

    def __init__(self, address: Hashable, first_mid: int) -> None:
        self.address = address
        #: The next Message ID for this peer (random start, RFC 7252 section 4.4).
        self.next_mid = first_mid
        #: Until when our Message IDs to it must be remembered (EXCHANGE_LIFETIME).
        self.mid_hold = 0.0
        #: Our messages an ACK or Reset may match, by Message ID.
        self.sent: dict[int, Transmission | Observation] = {}
        #: Our requests to it (sent, queued or observing), by token.
        self.requests: dict[bytes, OutgoingRequest] = {}
        #: Requests waiting behind NSTART (RFC 7252 section 4.7); made when first needed
        #: (an empty deque costs 760 bytes, most peers never queue anything).
        self.queue: deque[OutgoingRequest] | None = None
        #: Outstanding interactions, at most NSTART.
        self.outstanding = 0
        #: Its requests we have not answered.
        self.pending = 0
        #: Observations we notify it of, by token.
        self.observations: dict[bytes, Observation] = {}

    def take_mid(self, now: float, lifetime: float) -> int:
        """A fresh Message ID: sequential from a random start (RFC 7252 section 4.4)."""
        mid = self.next_mid
        self.next_mid = (mid + 1) & 0xFFFF
        self.mid_hold = now + lifetime
        return mid

    def idle(self, now: float) -> bool:
        """Whether it holds nothing and its Message IDs may be forgotten."""
        return not (
            self.sent
            or self.requests
            or self.queue
            or self.pending
            or self.observations
            or self.mid_hold > now
        )


class TimerHeap:
    """Transmission timers in a heap, cancelled lazily, compacted when mostly dead.

    Its size stays below twice the live timers plus a constant.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Transmission]] = []
        self._counter = 0
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def schedule(self, item: Transmission, due: float) -> None:
        """(Re)arm ``item``'s timer for ``due``."""
        if item.timer:
            self._live -= 1
        self._counter += 1
        item.timer = self._counter
        item.due = due
        self._live += 1
        heapq.heappush(self._heap, (due, self._counter, item))
        if len(self._heap) > 64 and len(self._heap) > 2 * self._live:
            self._heap = [entry for entry in self._heap if entry[2].timer == entry[1]]
            heapq.heapify(self._heap)

    def cancel(self, item: Transmission) -> None:
        """Disarm ``item``'s timer, if armed."""
        if item.timer:
            item.timer = 0
            self._live -= 1

    def next_due(self) -> float | None:
        """The earliest armed timer (``None`` when there is none)."""
        heap = self._heap
        while heap and heap[0][2].timer != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Transmission]:
        """Disarm and return the timers due at ``now``, earliest first."""
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            _, counter, item = heapq.heappop(heap)
            if item.timer == counter:
                item.timer = 0
                self._live -= 1
                out.append(item)
        return out
