"""What every part of a :class:`~coaptcp.channel.Channel` shares: its state and its output.

The Channel is assembled from mixins, one per concern (RFC 8323 sections 3-7: the
connection's life cycle, our requests, the requests we serve, their observations, input
flow control).  :class:`ChannelBase` is their common base: it declares every attribute
(as one ``__slots__``), writes what the core queued, logs reached limits once, and names
the methods one mixin calls on another, so that each is checked on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IAddress, IReactorTime
    from twisted.python.failure import Failure

    from coaptcp.channel.errors import ConnectionClosedError
    from coaptcp.channel.limits import Limits
    from coaptcp.channel.observing import ChannelObservation
    from coaptcp.channel.watchdog import Watchdog
    from coaptcp.core.blockwise import BlockwiseServer
    from coaptcp.core.connection import Connection
    from coaptcp.core.events import Event
    from coaptcp.core.message import Message
    from coaptcp.server.counts import AnswerMeter, EventCounts
    from coaptcp.server.observe import Observer
    from coaptcp.server.request import Response
    from coaptcp.server.resource import Site
    from coaptcp.server.tlsinfo import TLSInfo

__all__ = ["ChannelBase", "FrameWriter", "transport_gone"]

#: How a channel writes: ``write(frames)``, one frame per CoAP message, in order.
FrameWriter = Callable[[list[bytes]], None]


def transport_gone(*_: object) -> None:
    """What a channel's write, close and abort become once its transport is gone."""


class ChannelBase:
    """The state of one connection's channel (RFC 8323 sections 3-7), shared by the
    mixins that make it up."""

    log = Logger()

    # Slots: a channel has more attributes than CPython shares between the dicts of
    # instances (30), so without them every attribute access on the hot path would be
    # a dict lookup, and each idle connection would carry a dict of 1.6 KB.  The
    # ``__dict__`` slot keeps subclasses and tests free to add attributes of their own.
    # Every mixin has ``__slots__ = ()``: they all share this one layout.
    __slots__ = (
        "__dict__",
        "_abort",
        "_close",
        "_close_call",
        "_closed_waiters",
        "_closing",
        "_csm_call",
        "_csm_waiters",
        "_custody_oldest",
        "_custody_waits",
        "_frame_call",
        "_held_events",
        "_inbound_received",
        "_input_call",
        "_input_ended",
        "_limits_logged",
        "_lost",
        "_meter",
        "_next_token",
        "_observations",
        "_observing",
        "_paused",
        "_pending",
        "_pings",
        "_reactor",
        "_reading_off",
        "_release_call",
        "_set_reading",
        "_turn_left",
        "_unanswered",
        "_upload_call",
        "_waiting_for_csm",
        "_watchdog",
        "_write",
        "_write_call",
        "_write_soon",
        "_ws_queue",
        "blockwise",
        "close_reason",
        "close_timeout",
        "connection",
        "counts",
        "default_host",
        "limits",
        "max_observations",
        "peer",
        "release_timeout",
        "secure",
        "site",
        "tls",
    )

    # -- what the channel is given --------------------------------------------------------
    connection: Connection
    site: Site | None
    peer: IAddress | None
    default_host: str | None
    secure: bool
    #: Who the peer is on a TLS connection, set once the handshake is done.
    tls: TLSInfo | None
    limits: Limits
    blockwise: BlockwiseServer
    #: The server's counts of rare events (Aborts, limits reached, notifications) when
    #: it exports metrics: its site's ``counts``; ``None`` (nothing counted) otherwise.
    counts: EventCounts | None
    #: How this connection counts the requests it answers (``--metrics``), or ``None``.
    _meter: AnswerMeter | None
    close_timeout: float
    release_timeout: float
    max_observations: int
    _reactor: IReactorTime
    _write: FrameWriter
    #: Writes output that may wait for the end of the reactor's turn (notifications).
    _write_soon: FrameWriter
    #: Closes the transport gracefully; true if it is sure to close within a reactor
    #: turn (then no close timeout is armed).
    _close: Callable[[], bool | None]
    _abort: Callable[[], None]
    _set_reading: Callable[[bool], None]

    # -- life cycle (lifecycle.py) --------------------------------------------------------
    close_reason: str | None
    _closing: bool
    _lost: bool
    _input_ended: bool
    _close_call: Any
    _release_call: Any
    _csm_call: Any
    _closed_waiters: list[Deferred[None]]
    _watchdog: Watchdog
    _limits_logged: set[str]

    # -- our requests, Pings and observations (outgoing.py) -------------------------------
    _pending: dict[bytes, Deferred[Response]]
    _pings: dict[bytes, tuple[Deferred[float], float]]
    _waiting_for_csm: list[tuple[Message, Deferred[Response]]]
    _csm_waiters: list[Deferred[None]]
    _observing: dict[bytes, ChannelObservation]
    _next_token: int

    # -- the requests we serve (responder.py) and their observations ----------------------
    _inbound_received: int
    _unanswered: dict[int, Message]
    _custody_waits: deque[tuple[int, bytes]]
    _custody_oldest: int
    _upload_call: Any
    _observations: dict[bytes, Observer]

    # -- input flow control (flow.py) -----------------------------------------------------
    _paused: bool
    _reading_off: bool
    _held_events: list[Event] | None
    _ws_queue: deque[bytes]
    _input_call: Any
    _frame_call: Any
    _write_call: Any
    _turn_left: int

    # -- shared by every part -------------------------------------------------------------

    def _flush(self) -> None:
        """Write what the core queued, in one call of the transport (one per input)."""
        frames = self.connection.data_to_send()
        if frames and not self._lost:
            self._write(frames)

    def _flush_soon(self) -> None:
        """Write what the core queued, allowed to wait for the end of the reactor's turn
        (a notification: not an answer to what the peer just sent)."""
        frames = self.connection.data_to_send()
        if frames and not self._lost:
            self._write_soon(frames)

    def _log_limit_once(self, name: str, message: str, **fields: object) -> None:
        """Count that the limit ``name`` (a :class:`~coaptcp.channel.limits.Limits` field)
        was reached; log it once per connection and limit."""
        counts = self.counts
        if counts is not None:
            counts.limit_reached(name)
        if name not in self._limits_logged:
            self._limits_logged.add(name)
            self.log.warn(message, peer=self.peer, **fields)

    # -- what one part calls on another (each defined by exactly one mixin) ---------------

    def _dispatch(self, events: list[Event]) -> None:
        """Handle the core's events (channel.py)."""
        raise NotImplementedError

    def _send_waiting(self) -> None:
        """Send what waited for the peer's CSM (outgoing.py)."""
        raise NotImplementedError

    def _fail_outgoing(self, error: ConnectionClosedError) -> None:
        """Fail every answer we wait for: the connection is gone (outgoing.py)."""
        raise NotImplementedError

    def ping(self, *, custody: bool = False, timeout: float | None = None) -> Deferred[float]:
        """Send a Ping (outgoing.py)."""
        raise NotImplementedError

    def abort(self, diagnostic: str, reason: str = "application") -> None:
        """Send Abort and close (lifecycle.py)."""
        raise NotImplementedError

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Send Release and close once the work in flight is done (lifecycle.py)."""
        raise NotImplementedError

    def _maybe_finish_release(self) -> None:
        """Close if a Release or a FIN is waiting only for the work in flight (lifecycle.py)."""
        raise NotImplementedError

    def _close_transport(self) -> None:
        """Close the transport once the queued frames are written (lifecycle.py)."""
        raise NotImplementedError

    def _respond(self, request: Message, response: Response) -> None:
        """Answer ``request`` (responder.py)."""
        raise NotImplementedError

    def _response_or_error(self, result: Response | Failure) -> Response:
        """A render's outcome as a response (responder.py)."""
        raise NotImplementedError

    def notify(self, observation: Observer) -> None:
        """Send ``observation`` a fresh notification (serving.py)."""
        raise NotImplementedError

    def _drop_observations(self) -> None:
        """End every observation of ours (serving.py)."""
        raise NotImplementedError

    def _hold_input(self) -> None:
        """Stop reading while a backlog waits (flow.py)."""
        raise NotImplementedError

    @property
    def input_backlog(self) -> bool:
        """Whether input was received that is not processed yet (flow.py)."""
        raise NotImplementedError
