"""Drives one sans-I/O :class:`~coaptcp.core.Connection` for a Twisted transport.

The :class:`Channel` is the only place where the core meets Twisted: it feeds received
bytes to the core, dispatches the events (requests to the :class:`~coaptcp.server.resource.Site`,
responses to the Deferreds waiting on their tokens, Pongs to pings), writes what the core
queued in one flush per input, and owns every timer (on an injected reactor).  The TCP and
WebSocket protocols are thin wrappers around it.

It is made of one mixin per concern, sharing the state :class:`~coaptcp.channel.base.
ChannelBase` declares: :mod:`~coaptcp.channel.flow` (input flow control),
:mod:`~coaptcp.channel.lifecycle` (CSM, Release, Abort, the close; RFC 8323 sections 5.3-5.6),
:mod:`~coaptcp.channel.outgoing` (our requests, Pings, observations),
:mod:`~coaptcp.channel.responder` (the requests we serve) and
:mod:`~coaptcp.channel.serving` (the observations we serve, RFC 7641).  This module
builds the channel and dispatches the core's events to them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from coaptcp.channel.base import FrameWriter, transport_gone
from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.flow import InputFlow
from coaptcp.channel.lifecycle import Lifecycle
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server
from coaptcp.channel.outgoing import Outgoing
from coaptcp.channel.owner import ChannelOwner
from coaptcp.channel.responder import EARLY_WRITE, NO_SERVER_RESPONSE, Responder
from coaptcp.channel.serving import DEFAULT_MAX_OBSERVATIONS, ServedObservations
from coaptcp.channel.watchdog import Watchdog, cancel_calls
from coaptcp.core.events import (
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    Event,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IReactorTime

    from coaptcp.core.blockwise import BlockwiseServer
    from coaptcp.core.connection import Connection
    from coaptcp.server.resource import Site

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_OBSERVATIONS",
    "DEFAULT_RELEASE_TIMEOUT",
    "EARLY_WRITE",
    "NO_SERVER_RESPONSE",
    "Channel",
    "ChannelOwner",
    "ConnectionClosedError",
    "RequestNotSent",
]

#: Seconds to wait for a closing transport to flush (an Abort, say) before dropping it.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: Seconds to wait, after a Release, for the work in flight and the peer's close.
DEFAULT_RELEASE_TIMEOUT = 10.0


class Channel(Lifecycle, Outgoing, Responder, ServedObservations, InputFlow):
    """One CoAP connection's dispatcher over a Twisted transport.

    :param connection: the sans-I/O core for this connection (not yet started).
    :param write: writes a list of frames (joined into one write for TCP/TLS; one binary
        WebSocket message per frame for WebSockets).
    :param write_soon: writes frames that may wait for the end of the reactor's turn
        (notifications, RFC 7641 section 4.2: each connection's go out in one send, see
        :mod:`coaptcp.transport.eager`); ``write`` by default.
    :param close: closes the transport gracefully (flushing pending writes first); it may
        return true when the transport is sure to close within a reactor turn (nothing
        unsent, no closing handshake): then no close timeout is armed.
    :param abort: drops the transport at once (used when a close does not complete).
    :param reactor: provides ``callLater`` and ``seconds`` for every timer.
    :param site: the resource tree; ``None`` means this side serves nothing (5.01).
    :param peer: the peer's address, shown to resources.
    :param default_host: the default Uri-Host for requests (RFC 8323 section 8).
    :param secure: whether the transport is TLS.
    """

    # The slots are ChannelBase's (see there why); every mixin adds none.
    __slots__ = ()

    def __init__(
        self,
        connection: Connection,
        *,
        write: FrameWriter,
        write_soon: FrameWriter | None = None,
        close: Callable[[], bool | None],
        abort: Callable[[], None],
        reactor: IReactorTime,
        site: Site | None = None,
        peer: IAddress | None = None,
        default_host: str | None = None,
        secure: bool = False,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        release_timeout: float = DEFAULT_RELEASE_TIMEOUT,
        max_observations: int = DEFAULT_MAX_OBSERVATIONS,
        blockwise: BlockwiseServer | None = None,
        limits: Limits = DEFAULT_LIMITS,
        set_reading: Callable[[bool], None] | None = None,
    ) -> None:
        self.connection = connection
        self.site = site
        self.counts = getattr(site, "counts", None)
        self._meter = site.meter_for(self.__class__, secure) if site is not None else None
        self.peer = peer
        self.default_host = default_host
        self.secure = secure
        self.tls = None  # set once a TLS handshake is done (coaptcp.transport.tls)
        self.close_timeout = close_timeout
        self.release_timeout = release_timeout
        self._write = write
        self._write_soon = write if write_soon is None else write_soon
        self._close = close
        self._abort = abort
        self._reactor = reactor
        self._pending = {}
        self._pings = {}
        self._waiting_for_csm = []
        self._inbound_received = 0
        # Requests being rendered (async), by arrival number: answered 5.03 if still
        # there when a Release's time is up.
        self._unanswered = {}
        # Custody Pings waiting for the requests received before them, oldest first
        # (bounded by limits.max_custody_pings), and the oldest request number that may
        # still be unanswered (it only moves forward: O(1) amortized per answer).
        self._custody_waits = deque()
        self._custody_oldest = 1
        self._next_token = int.from_bytes(os.urandom(4), "big")
        self._closing = False
        self._lost = False
        self._close_call = None
        self._release_call = None
        self._closed_waiters = []
        self.close_reason = None
        self.max_observations = max_observations
        self.blockwise = blockwise if blockwise is not None else make_blockwise_server(limits)
        self._upload_call = None
        self._observations = {}
        self._paused = False
        self.limits = limits
        self._csm_call = None
        self._frame_call = None
        self._watchdog = Watchdog(
            self,
            reactor,
            idle_timeout=limits.idle_timeout,
            keepalive_interval=limits.keepalive_interval,
            pong_timeout=limits.pong_timeout,
        )
        self._limits_logged = set()
        self._observing = {}
        self._csm_waiters = []
        # Input flow control (see _process_input): what a read brought that is not
        # processed yet, and why reading from the transport is off.
        self._set_reading = set_reading if set_reading is not None else transport_gone
        self._reading_off = False
        self._held_events = None
        self._ws_queue = deque()
        self._input_call = None
        self._input_ended = False
        self._turn_left = limits.messages_per_read
        self._write_call = None

    def start(self) -> None:
        """Send our CSM and start the connection's timers; call from ``connectionMade``.

        One timer per connection while it is young: when the CSM timeout is shorter than
        the watchdog's periods (as by default), the watchdog starts only once the CSM
        timeout has passed (:meth:`_csm_timed_out`), from when the peer was last heard,
        so its checks come when they would have; a connection that closes before then
        (connect, one request, Release) never arms more than that one timer.
        """
        self.connection.start()
        self._flush()
        limits = self.limits
        csm_timeout = limits.csm_timeout
        if csm_timeout is not None:
            self._csm_call = self._reactor.callLater(csm_timeout, self._csm_timed_out)
        first_check = self._watchdog.first_check
        if csm_timeout is None or (first_check is not None and first_check <= csm_timeout):
            self._watchdog.start()

    # -- event dispatch -------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self._on_request(event.message)  # type: ignore[attr-defined]
                if self._paused:
                    # The peer does not read what we answer: stop processing its
                    # requests (not only reading them) until the transport drains.
                    # (The position by identity: events may compare equal.)
                    index = next(i for i, each in enumerate(events) if each is event)
                    rest = events[index + 1 :]
                    if rest:
                        self._held_events = rest
                        self._hold_input()
                    break
            elif kind is ResponseReceived:
                self._on_response(event.message)  # type: ignore[attr-defined]
            elif kind is CsmReceived:
                self._on_csm(event)  # type: ignore[arg-type]
            elif kind is PongReceived:
                self._on_pong(event)  # type: ignore[arg-type]
            elif kind is PingReceived:
                self._on_custody_ping(event)  # type: ignore[arg-type]
            elif kind is ReleaseReceived:
                self._on_release(event)  # type: ignore[arg-type]
            elif kind is AbortReceived:
                self._on_abort(event)  # type: ignore[arg-type]
            elif kind is ConnectionAborted:
                self._on_violation(event)  # type: ignore[arg-type]
            elif kind is UnknownSignalReceived:
                self.log.debug(
                    "Ignoring unknown signal {code} from {peer}",
                    code=event.message.code.dotted,  # type: ignore[attr-defined]
                    peer=self.peer,
                )
        if (self._waiting_for_csm or self._csm_waiters) and self.connection.peer_csm_received:
            self._send_waiting()  # lenient mode: the peer opened without a CSM
        frames = self.connection.data_to_send()  # self._flush(), inline: once per read
        if frames and not self._lost:
            self._write(frames)

    def _on_csm(self, event: CsmReceived) -> None:
        if event.first:
            if not self._watchdog.started and self._watchdog.has_periods:
                pass  # the CSM timer fires, finds the CSM and starts the watchdog (start)
            elif self._csm_call is not None:
                cancel_calls(self._csm_call)
                self._csm_call = None
            self._send_waiting()

