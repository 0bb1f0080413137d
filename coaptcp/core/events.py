"""Events the connection state machine reports to its driver (RFC 8323 sections 3-5).

Each is a small frozen dataclass.  Signaling that the core fully handles itself (answering
a Ping without Custody, ignoring Empty messages) produces no event the driver must act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaptcp.core.message import Message

__all__ = [
    "AbortReceived",
    "ConnectionAborted",
    "CsmReceived",
    "Event",
    "PeerSettings",
    "PingReceived",
    "PongReceived",
    "ReleaseReceived",
    "RequestReceived",
    "ResponseReceived",
    "UnknownSignalReceived",
]

#: Max-Message-Size before any CSM says otherwise (RFC 8323 section 5.3.1).
BASE_MAX_MESSAGE_SIZE = 1152


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """What the peer's CSMs have said so far (RFC 8323 section 5.3); base values at first."""

    max_message_size: int = BASE_MAX_MESSAGE_SIZE
    block_wise_transfer: bool = False

    @property
    def bert(self) -> bool:
        """Whether the peer accepts BERT (RFC 8323 section 5.3.2): BWT and MMS > 1152."""
        return self.block_wise_transfer and self.max_message_size > BASE_MAX_MESSAGE_SIZE


class Event:
    """Base class of all events."""

    __slots__ = ()


# The two events that come with every request and response are not frozen: a frozen
# dataclass's __init__ costs a call of object.__setattr__ per field, once per message.
# Nothing changes them after they are made.


@dataclass(slots=True)
class RequestReceived(Event):
    """The peer sent a request (a 0.01-0.31 code)."""

    message: Message


@dataclass(slots=True)
class ResponseReceived(Event):
    """The peer sent a response (a 2.xx, 4.xx or 5.xx code)."""

    message: Message


@dataclass(frozen=True, slots=True)
class CsmReceived(Event):
    """The peer sent a CSM; ``settings`` are the cumulative settings now in force."""

    settings: PeerSettings
    first: bool


@dataclass(frozen=True, slots=True)
class PingReceived(Event):
    """A Ping carrying Custody: send the Pong once earlier requests are answered.

    Pings without Custody are answered by the core at once and produce no event.
    """

    token: bytes


@dataclass(frozen=True, slots=True)
class PongReceived(Event):
    """The peer answered one of our Pings (RFC 8323 section 5.4)."""

    token: bytes
    custody: bool


@dataclass(frozen=True, slots=True)
class ReleaseReceived(Event):
    """The peer wants an orderly shutdown (RFC 8323 section 5.5)."""

    alternative_addresses: tuple[str, ...]
    hold_off: int | None
    diagnostic: str


@dataclass(frozen=True, slots=True)
class AbortReceived(Event):
    """The peer aborted the connection (RFC 8323 section 5.6)."""

    bad_csm_option: int | None
    diagnostic: str


@dataclass(frozen=True, slots=True)
class ConnectionAborted(Event):
    """We aborted because the peer broke the protocol; an Abort is queued to send.

    The driver should flush the outgoing data and close the connection.
    """

    diagnostic: str
    bad_csm_option: int | None
    #: The kind of violation (:attr:`~coaptcp.core.errors.RemoteProtocolError.reason`).
    reason: str = "protocol"


@dataclass(frozen=True, slots=True)
class UnknownSignalReceived(Event):
    """A signaling code no registry we know assigns; it is otherwise ignored."""

    message: Message
