"""Events a :class:`~coaptcp.core.udp.messaging.UdpEndpoint` reports (RFC 7252, RFC 7641).

Each names the peer it concerns.  The message layer itself (ACKs, Resets, retransmission,
deduplication, answering a ping) is handled by the endpoint; these events say what the
caller must act on (a request to answer, a response, a failure) and, for logging, what the
endpoint did on its own (a ping answered, a duplicate, a rejected datagram, a bound hit).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from coaptcp.core.message import Message
from coaptcp.core.udp.state import IncomingRequest, OutgoingRequest

__all__ = [
    "DatagramRejected",
    "DuplicateReceived",
    "LimitReached",
    "ObservationCancelled",
    "PingFailed",
    "RequestAcknowledged",
    "RequestFailed",
    "ResponseFailed",
    "UdpEvent",
    "UdpPingReceived",
    "UdpPongReceived",
    "UdpRequestReceived",
    "UdpResponseReceived",
]


class UdpEvent:
    """Base class of the UDP endpoint's events."""

    __slots__ = ()


# The two events of every exchange are plain slotted dataclasses, not frozen ones (see
# coaptcp.core.events): nothing changes them after they are made.


@dataclass(slots=True)
class UdpRequestReceived(UdpEvent):
    """A new request (not a duplicate): answer it with ``send_response`` (RFC 7252 5.1)."""

    request: IncomingRequest


@dataclass(slots=True)
class UdpResponseReceived(UdpEvent):
    """A response to one of our requests, piggybacked or separate (RFC 7252 section 5.2).

    For an observation (RFC 7641), every fresh notification comes as one of these with
    ``notification`` true; stale ones (section 3.4) are not reported.  ``request.done``
    says whether more may follow.
    """

    request: OutgoingRequest
    message: Message
    notification: bool = False


@dataclass(frozen=True, slots=True)
class RequestAcknowledged(UdpEvent):
    """Our CON request got an Empty ACK: the response will come separately (5.2.2)."""

    request: OutgoingRequest


@dataclass(frozen=True, slots=True)
class RequestFailed(UdpEvent):
    """Our request failed (RFC 7252 section 4.2): ``reason`` is ``"timeout"`` (no ACK
    after MAX_RETRANSMIT retransmissions) or ``"reset"`` (the peer rejected it)."""

    request: OutgoingRequest
    reason: str


@dataclass(frozen=True, slots=True)
class ResponseFailed(UdpEvent):
    """Our separate CON response was not acknowledged (``"timeout"``) or was rejected
    (``"reset"``) (RFC 7252 sections 4.2 and 5.2.2)."""

    request: IncomingRequest
    reason: str


@dataclass(frozen=True, slots=True)
class ObservationCancelled(UdpEvent):
    """The peer no longer observes (RFC 7641 sections 3.6 and 4.5): it answered a
    notification with a Reset (``"reset"``) or a CON notification timed out
    (``"timeout"``).  Remove the observer."""

    peer: Hashable
    token: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class UdpPingReceived(UdpEvent):
    """The peer sent a CoAP ping (an Empty CON); the Reset is already queued (4.2)."""

    peer: Hashable
    message_id: int


@dataclass(frozen=True, slots=True)
class UdpPongReceived(UdpEvent):
    """Our ping (``send_ping``) was answered with a Reset (or an Empty ACK)."""

    peer: Hashable
    message_id: int


@dataclass(frozen=True, slots=True)
class PingFailed(UdpEvent):
    """Our ping got no answer within MAX_TRANSMIT_WAIT (RFC 7252 section 4.8.2)."""

    peer: Hashable
    message_id: int


@dataclass(frozen=True, slots=True)
class DuplicateReceived(UdpEvent):
    """A duplicate message (RFC 7252 section 4.5): not processed again; a CON's ACK (or
    piggybacked response) was sent again when ``replayed``."""

    peer: Hashable
    message_id: int
    confirmable: bool
    replayed: bool


@dataclass(frozen=True, slots=True)
class DatagramRejected(UdpEvent):
    """A datagram the endpoint rejected (RFC 7252 sections 3, 4.2, 4.3, 5.3.2): malformed,
    an unexpected response, a type and code Table 1 does not allow.  ``reset`` says whether
    a Reset was sent (for a CON); otherwise it was silently ignored."""

    peer: Hashable
    diagnostic: str
    reset: bool


@dataclass(frozen=True, slots=True)
class LimitReached(UdpEvent):
    """A bound of :class:`~coaptcp.core.udp.config.UdpLimits` was reached; ``limit`` is the
    field's name and ``diagnostic`` says what was done about it."""

    peer: Hashable
    limit: str
    diagnostic: str
