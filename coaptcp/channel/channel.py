"""Drives one sans-I/O :class:`~coaptcp.core.Connection` for a Twisted transport.

The :class:`Channel` is the only place where the core meets Twisted: it feeds received
bytes to the core, dispatches the events (requests to the :class:`~coaptcp.server.resource.Site`,
responses to the Deferreds waiting on their tokens, Pongs to pings), writes what the core
queued in one flush per input, and owns every timer (on an injected reactor).  The TCP and
WebSocket protocols are thin wrappers around it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server
from coaptcp.channel.observing import ChannelObservation
from coaptcp.core.blockwise import BlockwiseServer
from coaptcp.core.codes import Code
from coaptcp.core.connection import Connection, State
from coaptcp.core.errors import LocalProtocolError, MessageTooLarge
from coaptcp.core.events import (
    BASE_MAX_MESSAGE_SIZE,
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
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.server.observe import (
    ObservableResource,
    ObservationRegistry,
    Observer,
    mark_notification,
)
from coaptcp.server.resource import Request, Response, Site

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IReactorTime

    from coaptcp.server.tlsinfo import TLSInfo

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_RELEASE_TIMEOUT",
    "NO_SERVER_RESPONSE",
    "Channel",
    "ConnectionClosedError",
    "RequestNotSent",
]

#: Seconds to wait for a closing transport to flush (an Abort, say) before dropping it.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: Seconds to wait, after a Release, for the work in flight and the peer's close.
DEFAULT_RELEASE_TIMEOUT = 10.0

_CLOSED = State.CLOSED

#: An answer larger than this is written at once, not with the rest of its read's
#: answers, so that a transport whose buffer it fills stops the processing of the next
#: requests at once (Twisted pauses its producer from within ``write``).
EARLY_WRITE = 8192
_BLOCK2 = int(OptionNumber.BLOCK2)  # Block2 (23), Block1 (27) and Size1 (60) come last
_SERVICE_UNAVAILABLE = Code.SERVICE_UNAVAILABLE
#: The shortest delay of a re-armed timer (a deadline rounded just short must not spin).
_MIN_TIMER_DELAY = 0.001

def _transport_gone(*_: object) -> None:
    """What a channel's write, close and abort become once its transport is gone."""


#: The answer of a side without a resource tree (RFC 8323 section 3.3).
NO_SERVER_RESPONSE = Response(Code.NOT_IMPLEMENTED, b"no resources are served on this side")


#: Observations one connection may hold (RFC 7641 section 4.1 lets a server decline more).
DEFAULT_MAX_OBSERVATIONS = 64


class Channel(ObservationRegistry):
    """One CoAP connection's dispatcher over a Twisted transport.

    :param connection: the sans-I/O core for this connection (not yet started).
    :param write: writes a list of frames (``transport.writeSequence`` for TCP/TLS; one
        binary WebSocket message per frame for WebSockets).
    :param close: closes the transport gracefully (flushing pending writes first).
    :param abort: drops the transport at once (used when a close does not complete).
    :param reactor: provides ``callLater`` and ``seconds`` for every timer.
    :param site: the resource tree; ``None`` means this side serves nothing (5.01).
    :param peer: the peer's address, shown to resources.
    :param default_host: the default Uri-Host for requests (RFC 8323 section 8).
    :param secure: whether the transport is TLS.
    """

    log = Logger()

    # Slots: a channel has more attributes than CPython shares between the dicts of
    # instances (30), so without them every attribute access on the hot path would be
    # a dict lookup, and each idle connection would carry a dict of 1.6 KB.  The
    # ``__dict__`` slot keeps subclasses and tests free to add attributes of their own.
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
        "_keepalive_ping",
        "_last_activity",
        "_limits_logged",
        "_lost",
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
        "_watchdog_call",
        "_write",
        "_write_call",
        "_ws_queue",
        "blockwise",
        "close_reason",
        "close_timeout",
        "connection",
        "default_host",
        "limits",
        "max_observations",
        "peer",
        "release_timeout",
        "secure",
        "site",
        "tls",
    )

    def __init__(
        self,
        connection: Connection,
        *,
        write: Callable[[list[bytes]], None],
        close: Callable[[], None],
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
        self.peer = peer
        self.default_host = default_host
        self.secure = secure
        #: Who the peer is on a TLS connection, set once the handshake is done
        #: (coaptcp.transport.tls.transport).
        self.tls: TLSInfo | None = None
        self.close_timeout = close_timeout
        self.release_timeout = release_timeout
        self._write = write
        self._close = close
        self._abort = abort
        self._reactor = reactor
        self._pending: dict[bytes, Deferred[Response]] = {}
        self._pings: dict[bytes, tuple[Deferred[float], float]] = {}
        self._waiting_for_csm: list[tuple[Message, Deferred[Response]]] = []
        self._inbound_received = 0
        # Requests being rendered (async), by arrival number: answered 5.03 if still
        # there when a Release's time is up.
        self._unanswered: dict[int, Message] = {}
        # Custody Pings waiting for the requests received before them, oldest first
        # (bounded by limits.max_custody_pings), and the oldest request number that may
        # still be unanswered (it only moves forward: O(1) amortized per answer).
        self._custody_waits: deque[tuple[int, bytes]] = deque()
        self._custody_oldest = 1
        self._next_token = int.from_bytes(os.urandom(4), "big")
        self._closing = False
        self._lost = False
        self._close_call: Any = None
        self._release_call: Any = None
        self._closed_waiters: list[Deferred[None]] = []
        self.close_reason: str | None = None
        self.max_observations = max_observations
        self.blockwise = blockwise if blockwise is not None else make_blockwise_server(limits)
        self._upload_call: Any = None
        self._observations: dict[bytes, Observer] = {}
        self._paused = False
        self.limits = limits
        self._last_activity = reactor.seconds()
        self._csm_call: Any = None
        self._frame_call: Any = None
        self._watchdog_call: Any = None
        self._keepalive_ping: Deferred[float] | None = None
        self._limits_logged: set[str] = set()
        self._observing: dict[bytes, ChannelObservation] = {}
        self._csm_waiters: list[Deferred[None]] = []
        # Input flow control (see _process_input): what a read brought that is not
        # processed yet, and why reading from the transport is off.
        self._set_reading = set_reading if set_reading is not None else _transport_gone
        self._reading_off = False
        self._held_events: list[Event] | None = None
        self._ws_queue: deque[bytes] = deque()
        self._input_call: Any = None
        self._input_ended = False
        self._turn_left = limits.messages_per_read
        self._write_call: Any = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Send our CSM and start the connection's timers; call from ``connectionMade``."""
        self.connection.start()
        self._flush()
        limits = self.limits
        if limits.csm_timeout is not None:
            self._csm_call = self._reactor.callLater(limits.csm_timeout, self._csm_timed_out)
        self._arm_watchdog()

    def data_received(self, data: bytes) -> None:
        """Feed bytes from a TCP or TLS stream."""
        self._last_activity = self._reactor.seconds()
        if self._reading_off:
            # A backlog is waiting (or the peer does not read our answers): keep the
            # bytes for later.  Reading is off, so this is at most what one read of the
            # transport (or of its TLS layer) held when we paused it.
            self.connection.feed(data)
        else:
            self._process_input(data)
        self._check_frame_timer()

    def _process_input(self, data: bytes = b"") -> None:
        """Process what the peer sent, within this reactor turn's budget.

        At most ``limits.messages_per_read`` messages are handled at once, and none once
        our output is blocked (the peer does not read it): the rest waits, with reading
        from the transport off, for a later turn or for the transport to drain.  So one
        read costs bounded time and output, and other connections get their turn.
        """
        connection = self.connection
        self._dispatch(connection.receive_data(data, self.limits.messages_per_read))
        if self._held_events is not None or connection.input_waiting:
            self._hold_input()

    def _hold_input(self) -> None:
        """Stop reading while a backlog waits; go on in a later turn unless blocked."""
        self._stop_reading()
        if self._input_call is None and not self._paused and not self._lost:
            self._input_call = self._reactor.callLater(0, self._continue_input)

    def _continue_input(self) -> None:
        """A later turn: the held events first, then one more budget of the backlog."""
        self._input_call = None
        if self._lost or self._paused:
            return
        held = self._held_events
        if held is not None:
            self._held_events = None
            self._dispatch(held)
        if self._held_events is None and not self._paused:
            if self.connection.websocket:
                self._turn_left = self.limits.messages_per_read
                queue = self._ws_queue
                while queue and self._turn_left > 0 and not self._paused and not self._lost:
                    self._turn_left -= 1
                    self._dispatch(self.connection.receive_ws_message(queue.popleft()))
            else:
                self._dispatch(self.connection.receive_data(b"", self.limits.messages_per_read))
        if self._lost or self._paused:
            return  # blocked again: resume() goes on
        if self.input_backlog:
            self._hold_input()
            return
        self._read_again()
        self._check_frame_timer()
        self._maybe_finish_release()

    def _stop_reading(self) -> None:
        if not self._reading_off:
            self._reading_off = True
            self._set_reading(False)

    def _read_again(self) -> None:
        """Turn reading back on, unless the connection is closing (no more input then)."""
        if self._reading_off and not self._closing and not self._lost:
            self._reading_off = False
            self._set_reading(True)

    @property
    def input_backlog(self) -> bool:
        """Whether input was received that is not processed yet (flow control)."""
        return bool(
            self._held_events is not None or self._ws_queue or self.connection.input_waiting
        )

    def _check_frame_timer(self) -> None:
        frame_timeout = self.limits.frame_timeout
        if frame_timeout is None:
            return
        if self.connection.partial_frame and not self._reading_off:
            if self._frame_call is None and not self._lost and not self._closing:
                self._frame_call = self._reactor.callLater(frame_timeout, self._frame_timed_out)
        elif self._frame_call is not None:
            if self._frame_call.active():
                self._frame_call.cancel()
            self._frame_call = None

    def _frame_timed_out(self) -> None:
        self._frame_call = None
        if self._reading_off:
            return  # our backlog, not the peer's slowness; checked again once it clears
        if self.connection.partial_frame and not self._lost:
            self._dispatch(
                self.connection.abort_for_violation(
                    f"a frame took longer than {self.limits.frame_timeout:g} s to arrive"
                )
            )

    def new_read(self) -> None:
        """A new read of the transport starts: WebSocket messages get a fresh budget."""
        self._turn_left = self.limits.messages_per_read

    def ws_message_received(self, data: bytes) -> None:
        """Feed one binary WebSocket message."""
        self._last_activity = self._reactor.seconds()
        if self._reading_off or self._turn_left <= 0 or self._paused:
            self._ws_queue.append(data)
            self._hold_input()
            return
        self._turn_left -= 1
        self._dispatch(self.connection.receive_ws_message(data))

    def input_ended(self) -> None:
        """The peer closed its side of a TCP connection (a FIN, ``IHalfCloseableProtocol``).

        What it sent before is still processed and answered, as after a Release
        (RFC 8323 section 5.5); then the connection is closed, within ``release_timeout``.
        """
        if self._lost or self._input_ended:
            return
        self._input_ended = True
        if self.close_reason is None:
            self.close_reason = "the peer closed its side of the connection"
        self._arm_release_timer()
        self._maybe_finish_release()

    # -- timers (section 3.3 CSM, section 5.4 Ping, section 5.5 Release) ------------------

    def _csm_timed_out(self) -> None:
        self._csm_call = None
        if not self.connection.peer_csm_received and not self._lost:
            self._dispatch(
                self.connection.abort_for_violation(
                    f"no CSM received within {self.limits.csm_timeout:g} s"
                )
            )

    def _arm_watchdog(self) -> None:
        limits = self.limits
        periods = [p for p in (limits.idle_timeout, limits.keepalive_interval) if p is not None]
        if periods and not self._lost and not self._closing:
            period = min(periods)
            delay = period - (self._reactor.seconds() - self._last_activity)
            if delay <= 0:
                delay = period  # overdue but busy: look again a whole period later
            self._watchdog_call = self._reactor.callLater(delay, self._watchdog)

    def _watchdog(self) -> None:
        self._watchdog_call = None
        if self._lost or self._closing:
            return
        limits = self.limits
        idle = self._reactor.seconds() - self._last_activity
        busy = bool(self._pending or self._unanswered or self._observations or self._observing)
        if limits.idle_timeout is not None and idle >= limits.idle_timeout and not busy:
            self.log.info("Releasing {peer}: idle for {idle:.0f} s", peer=self.peer, idle=idle)
            self.release(f"idle for {idle:.0f} s")
            return
        interval = limits.keepalive_interval
        connection = self.connection
        draining = connection.release_sent or connection.release_received
        if (
            interval is not None
            and idle >= interval
            and self._keepalive_ping is None
            and not draining  # after a Release, only the work in flight is finished
        ):
            self._keepalive_ping = self.ping(timeout=limits.pong_timeout)
            self._keepalive_ping.addCallbacks(self._pong_arrived, self._pong_missing)
            self._last_activity = self._reactor.seconds()
        self._arm_watchdog()

    def _pong_arrived(self, rtt: float) -> None:
        self._keepalive_ping = None

    def _pong_missing(self, failure: Failure) -> None:
        self._keepalive_ping = None
        if failure.check(TimeoutError, CancelledError) and not self._lost:
            self.log.info(
                "Closing {peer}: no Pong within {timeout:g} s",
                peer=self.peer,
                timeout=self.limits.pong_timeout,
            )
            self.abort(f"no Pong within {self.limits.pong_timeout:g} s")

    def _log_limit_once(self, name: str, message: str, **fields: object) -> None:
        """Log that a limit was reached, once per connection and limit."""
        if name not in self._limits_logged:
            self._limits_logged.add(name)
            self.log.warn(message, peer=self.peer, **fields)

    def violation(self, diagnostic: str) -> None:
        """Abort for a transport-level violation the core cannot see (a text WS frame)."""
        self._dispatch(self.connection.abort_for_violation(diagnostic))

    def connection_lost(self, reason: Failure | None = None) -> None:
        """The transport is gone: fail what is pending, cancel timers."""
        if self._lost:
            return
        self._lost = True
        self._drop_observations()  # RFC 8323 section 7.4: observations end with the link
        note = self.connection.connection_lost()
        if note:
            self.log.info("Peer {peer} closed the connection: {note}", peer=self.peer, note=note)
        if self.close_reason is None:
            if reason is None or reason.check(ConnectionDone):
                self.close_reason = "connection closed"
            else:
                self.close_reason = f"connection lost: {reason.getErrorMessage()}"
        for call in (
            self._close_call,
            self._release_call,
            self._csm_call,
            self._watchdog_call,
            self._frame_call,
            self._input_call,
            self._write_call,
            self._upload_call,
        ):
            if call is not None and call.active():
                call.cancel()
        self.blockwise.drop_uploads()  # their bytes go back to the server's budget
        # Let go of the transport's callables (bound methods of the protocol that owns
        # this channel): otherwise the two keep each other alive until a full collection
        # of the cyclic garbage collector, which an idle server may not run for long.
        self._write = self._close = self._abort = self._set_reading = _transport_gone
        self._held_events = None
        self._ws_queue.clear()
        error = ConnectionClosedError(self.close_reason)
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(Failure(error))
        waiting, self._waiting_for_csm = self._waiting_for_csm, []
        for _, d in waiting:
            d.errback(Failure(error))
        pings, self._pings = self._pings, {}
        for ping, _ in pings.values():
            ping.errback(Failure(error))
        csm_waiters, self._csm_waiters = self._csm_waiters, []
        for w in csm_waiters:
            w.errback(Failure(error))
        observing, self._observing = self._observing, {}
        for observation in observing.values():
            observation.connection_lost(error)  # RFC 8323 section 7.4: they end with it
        waiters, self._closed_waiters = self._closed_waiters, []
        for w in waiters:
            w.callback(None)

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once the transport has closed."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    @property
    def pending_requests(self) -> int:
        """Our requests still waiting for a response."""
        return len(self._pending) + len(self._waiting_for_csm)

    # -- output ---------------------------------------------------------------------------

    def _flush(self) -> None:
        frames = self.connection.data_to_send()
        if frames and not self._lost:
            self._write(frames)

    def _close_transport(self) -> None:
        """Close after the queued frames are written; drop the link if that stalls."""
        if self._closing or self._lost:
            return
        self._closing = True
        for call in (
            self._csm_call,
            self._watchdog_call,
            self._frame_call,
            self._input_call,
            self._upload_call,
        ):
            if call is not None and call.active():
                call.cancel()
        self._input_call = None
        self.blockwise.drop_uploads()  # no block of theirs will be processed now
        self._flush()
        self._close()
        self._close_call = self._reactor.callLater(self.close_timeout, self._force_close)

    def _force_close(self) -> None:
        if not self._lost:
            self.log.info("Dropping {peer}: the close did not complete", peer=self.peer)
            self._abort()

    # -- requests we send -----------------------------------------------------------------

    def _allocate_token(self) -> bytes:
        while True:
            self._next_token = (self._next_token + 1) & 0xFFFFFFFF
            token = self._next_token.to_bytes(4, "big")
            if token not in self._pending and token not in self._pings:
                if token not in self._observing:
                    return token

    def request(
        self,
        method: Code,
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a request; the Deferred fires with the :class:`Response`.

        Cancelling the Deferred (or the timeout expiring) frees the token; a response
        arriving later is ignored.  A request larger than the base Max-Message-Size waits
        for the peer's CSM; one larger than the peer's limit fails with
        :class:`RequestNotSent` (RFC 8323 section 5.3.1).
        """
        if not Code(method).is_request:
            return fail(LocalProtocolError(f"{Code(method)} is not a request method"))
        if self._lost or self._closing or self.connection.state is State.CLOSED:
            return fail(ConnectionClosedError(self.close_reason or "connection is closing"))
        if self.pending_requests >= self.limits.max_outbound_requests:
            return fail(
                RequestNotSent(
                    f"{self.pending_requests} requests already wait for answers "
                    f"(max_outbound_requests)"
                )
            )
        token = self._allocate_token()
        message = Message(Code(method), token, options, payload)
        d: Deferred[Response] = Deferred(lambda _: self._forget(token, message))
        if (
            not self.connection.peer_csm_received
            and self.connection.encoded_size(message) > BASE_MAX_MESSAGE_SIZE
        ):
            self._waiting_for_csm.append((message, d))
        else:
            self._send_request(message, d)
        if timeout is not None:
            d.addTimeout(timeout, self._reactor)
        return d

    def _send_request(self, message: Message, d: Deferred[Response]) -> None:
        try:
            self.connection.send(message)
        except (LocalProtocolError, MessageTooLarge) as error:
            d.errback(Failure(RequestNotSent(str(error))))
            return
        self._pending[message.token] = d
        self._flush()

    def _forget(self, token: bytes, message: Message) -> None:
        self._pending.pop(token, None)
        self._waiting_for_csm = [(m, w) for m, w in self._waiting_for_csm if m is not message]
        self._maybe_finish_release()

    def ping(self, *, custody: bool = False, timeout: float | None = None) -> Deferred[float]:
        """Send a Ping; fires with the round-trip time in seconds (RFC 8323 section 5.4).

        Pings carry an empty token: libcoap answers any Ping with an empty-token Pong, so
        Pongs are matched to the oldest outstanding Ping when their token is unknown.
        """
        if self._lost or self.connection.state is State.CLOSED:
            return fail(ConnectionClosedError(self.close_reason or "connection is closed"))
        token = b"" if not self._pings else self._allocate_token()
        d: Deferred[float] = Deferred(lambda _: self._forget_ping(token))
        self._pings[token] = (d, self._reactor.seconds())
        self.connection.send_ping(token, custody=custody)
        self._flush()
        if timeout is not None:
            d.addTimeout(timeout, self._reactor)
        return d

    def _forget_ping(self, token: bytes) -> None:
        self._pings.pop(token, None)

    def when_csm_received(self) -> Deferred[None]:
        """Fires once the peer's CSM has arrived (RFC 8323 section 5.3): its
        Max-Message-Size and Block-Wise-Transfer are then known.  Fails with
        :class:`ConnectionClosedError` if the connection closes first."""
        if self._lost:
            return fail(ConnectionClosedError(self.close_reason or "connection closed"))
        if self.connection.peer_csm_received:
            return succeed(None)
        d: Deferred[None] = Deferred(self._csm_waiters.remove)
        self._csm_waiters.append(d)
        return d

    # -- observations we hold (the client side of RFC 7641 and RFC 8323 section 7) --------

    def observe(
        self,
        options: Options,
        *,
        on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
    ) -> ChannelObservation:
        """Register a GET with Observe=0 and keep its token for every notification.

        ``on_notification`` gets each 2.xx response carrying Observe (whatever its value,
        which is ignored on reliable transports: RFC 8323 section 7.1), and the response
        that ends the observation (one without Observe, or an error).  ``on_end`` is
        called once: with ``None`` when the server ended the observation or it was
        cancelled, with :class:`ConnectionClosedError` when the connection went.  Raises
        :class:`ConnectionClosedError` or :class:`RequestNotSent` when the GET cannot go.
        """
        if self._lost or self._closing or self.connection.state is State.CLOSED:
            raise ConnectionClosedError(self.close_reason or "connection is closing")
        observation = ChannelObservation(
            self, self._allocate_token(), options, on_notification, on_end, self._reactor
        )
        self.send_observe(observation, 0)
        self._observing[observation.token] = observation
        return observation

    def send_observe(self, observation: ChannelObservation, value: int) -> None:
        """Send the observation's GET with Observe=``value`` (0 registers, 1 cancels)."""
        options = observation.options.replace(OptionNumber.OBSERVE, value)
        try:
            self.connection.send(Message(Code.GET, observation.token, options))
        except (LocalProtocolError, MessageTooLarge) as error:
            raise RequestNotSent(str(error)) from None
        self._flush()

    def forget_observation(self, observation: ChannelObservation) -> None:
        """Free the observation's token (it ended, or its deregistration was answered)."""
        if self._observing.get(observation.token) is observation:
            del self._observing[observation.token]
            self._maybe_finish_release()

    @property
    def observing(self) -> int:
        """Observations we hold on this connection (their tokens still in use)."""
        return len(self._observing)

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Send Release, finish the work in flight, then close (RFC 8323 section 5.5).

        Requests already received are still answered; the transport is closed once none
        is left (or after ``release_timeout``).  Fires when the transport has closed.
        """
        closed = self.when_closed()
        if self._lost or self._closing:
            return closed
        if self.connection.state is not State.CLOSED and not self.connection.release_sent:
            self.connection.send_release(diagnostic)
            self._flush()
        self._arm_release_timer()
        self._maybe_finish_release()
        return closed

    def abort(self, diagnostic: str) -> None:
        """Send Abort and close (RFC 8323 section 5.6)."""
        if self._lost:
            return
        self.close_reason = f"aborted by us: {diagnostic}"
        self.connection.send_abort(diagnostic)
        self._drop_observations()  # free the resources' slots now, not at the close
        self._close_transport()

    def _maybe_finish_release(self) -> None:
        connection = self.connection
        ended = self._input_ended
        if not (connection.release_sent or connection.release_received or ended):
            return
        if self._unanswered or (self._pending and not ended) or self.input_backlog:
            return
        self._close_transport()

    def _arm_release_timer(self) -> None:
        """Bound the work in flight after a Release (sent or received) or a FIN: one
        timer, whichever comes first and however many follow."""
        if self._release_call is None:
            self._release_call = self._reactor.callLater(
                self.release_timeout, self._release_timed_out
            )

    def _release_timed_out(self) -> None:
        """The time for the work in flight after a Release is up: answer what is still
        being rendered 5.03 (RFC 8323 section 5.5 expects it answered), then close."""
        self._release_call = None
        if self._lost or self._closing:
            return
        unanswered, self._unanswered = self._unanswered, {}
        if unanswered and self.connection.state is not State.CLOSED:
            self.log.info(
                "Answering {count} requests of {peer} 5.03: still rendering at the close",
                count=len(unanswered),
                peer=self.peer,
            )
            answer = Response(Code.SERVICE_UNAVAILABLE, b"shutting down")
            for request in unanswered.values():
                self._respond(request, answer)
        self._close_transport()

    # -- event dispatch -------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for index, event in enumerate(events):
            kind = type(event)
            if kind is RequestReceived:
                self._on_request(event.message)  # type: ignore[attr-defined]
                if self._paused:
                    # The peer does not read what we answer: stop processing its
                    # requests (not only reading them) until the transport drains.
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
        self._flush()

    def _on_csm(self, event: CsmReceived) -> None:
        if event.first:
            if self._csm_call is not None and self._csm_call.active():
                self._csm_call.cancel()
            self._csm_call = None
            self._send_waiting()

    def _send_waiting(self) -> None:
        waiting, self._waiting_for_csm = self._waiting_for_csm, []
        for message, d in waiting:
            self._send_request(message, d)
        csm_waiters, self._csm_waiters = self._csm_waiters, []
        for w in csm_waiters:
            w.callback(None)

    def _on_response(self, message: Message) -> None:
        d = self._pending.pop(message.token, None)
        if d is None:
            observation = self._observing.get(message.token)
            if observation is not None:
                observation.response_received(
                    Response(message.code, message.payload, options=message.options)
                )
                return
            self.log.debug(
                "Ignoring a response with unknown token {token} from {peer}",
                token=message.token.hex(),
                peer=self.peer,
            )
            return
        d.callback(Response(message.code, message.payload, options=message.options))
        self._maybe_finish_release()

    def _on_pong(self, event: PongReceived) -> None:
        entry = self._pings.pop(event.token, None)
        if entry is None and self._pings:
            entry = self._pings.pop(next(iter(self._pings)))
        if entry is None:
            self.log.debug("Ignoring an unexpected Pong from {peer}", peer=self.peer)
            return
        d, sent = entry
        d.callback(self._reactor.seconds() - sent)

    def _on_custody_ping(self, event: PingReceived) -> None:
        if self.connection.state is State.CLOSED:
            return  # we aborted while dispatching an earlier event of the same input
        # Custody: answer once every request received before the Ping is answered; the
        # requests that arrive after it do not hold it back.
        if not self._unanswered:
            self.connection.send_pong(event.token, custody=True)
        elif len(self._custody_waits) >= self.limits.max_custody_pings:
            # Bounded: beyond the limit a Pong goes at once, without Custody (it then
            # promises nothing about the requests before it; RFC 8323 section 5.4.1).
            self._log_limit_once(
                "custody",
                "{peer} has {count} Custody Pings waiting; answering more without Custody",
                count=len(self._custody_waits),
            )
            self.connection.send_pong(event.token)
        else:
            self._custody_waits.append((self._inbound_received, event.token))

    def _on_release(self, event: ReleaseReceived) -> None:
        self.close_reason = "the peer released the connection" + (
            f": {event.diagnostic}" if event.diagnostic else ""
        )
        self.log.info(
            "Peer {peer} sent Release ({diagnostic})", peer=self.peer, diagnostic=event.diagnostic
        )
        self._arm_release_timer()
        self._maybe_finish_release()

    def _on_abort(self, event: AbortReceived) -> None:
        self.close_reason = f"the peer aborted the connection: {event.diagnostic}"
        self.log.info(
            "Peer {peer} sent Abort: {diagnostic}", peer=self.peer, diagnostic=event.diagnostic
        )
        self._close_transport()

    def _on_violation(self, event: ConnectionAborted) -> None:
        self.close_reason = f"aborted by us: {event.diagnostic}"
        self.log.info(
            "Aborting connection from {peer}: {diagnostic}",
            peer=self.peer,
            diagnostic=event.diagnostic,
        )
        self._close_transport()

    # -- requests we answer ---------------------------------------------------------------

    def make_request(self, message: Message) -> Request:
        """A :class:`Request` for ``message`` as received on this connection.

        Raises :class:`UnicodeDecodeError` when a Uri-Host, Uri-Path or Uri-Query value
        is not UTF-8.
        """
        return Request.received(message, self.peer, self.default_host, self.secure, self.tls, self)

    def _on_request(self, message: Message) -> None:
        if self.connection.state is _CLOSED:
            return  # we aborted while dispatching an earlier event of the same input
        if self.site is None:
            self._respond(message, NO_SERVER_RESPONSE)
            return
        items = message.options.items
        if items and items[-1][0] >= _BLOCK2:  # Block1, Size1 may be there
            blockwise = self.blockwise
            answer, complete = blockwise.receive_request(message, self._reactor.seconds())
            if self._upload_call is None and blockwise.uploads_in_progress:
                self._watch_uploads()
            if answer is not None:
                if answer.code == _SERVICE_UNAVAILABLE:
                    self._log_upload_refusal()
                self._send_response_message(message, answer)
                return
            assert complete is not None
        else:
            complete = message
        try:
            request = Request.received(
                complete, self.peer, self.default_host, self.secure, self.tls, self
            )
        except UnicodeDecodeError as error:
            # Uri-Host, Uri-Path and Uri-Query are strings (RFC 7252 section 3.2); a
            # value that is not UTF-8 is a non-conforming critical option (4.02).
            diagnostic = f"a Uri-Host, Uri-Path or Uri-Query value is not UTF-8: {error}"
            self._respond(message, Response(Code.BAD_OPTION, diagnostic.encode()))
            return
        if len(self._unanswered) >= self.limits.max_inbound_requests:
            self._log_limit_once(
                "inbound",
                "{peer} has {count} requests in progress; answering 4.29 to more",
                count=len(self._unanswered),
            )
            retry = Options([(OptionNumber.MAX_AGE, self.limits.retry_after)])
            self._respond(
                message,
                Response(Code.TOO_MANY_REQUESTS, b"too many requests in progress", options=retry),
            )
            return
        self._inbound_received += 1
        result = self.site.handle(request)
        if isinstance(result, Response):
            self._respond(complete, result)
            return
        number = self._inbound_received
        self._unanswered[number] = complete
        result.addBoth(self._deferred_response, complete, number)

    # -- partial Block1 uploads: expiry on the clock, refusals logged once per episode -----

    def _watch_uploads(self) -> None:
        """Arm this connection's one upload timer for the first upload to expire."""
        deadline = self.blockwise.next_expiry()
        if deadline is not None and not self._lost and not self._closing:
            delay = max(deadline - self._reactor.seconds(), _MIN_TIMER_DELAY)
            self._upload_call = self._reactor.callLater(delay, self._uploads_timed_out)

    def _uploads_timed_out(self) -> None:
        # Whatever else the peer sent meanwhile (Pings, other requests), an upload that got
        # no block for the upload timeout is dropped; a later block gets 4.08 (RFC 7959
        # section 2.9.2).
        self._upload_call = None
        dropped = self.blockwise.expire(self._reactor.seconds())
        if dropped:
            self.log.debug(
                "Dropped {count} partial uploads from {peer}: no block for {timeout:g} s",
                count=dropped,
                peer=self.peer,
                timeout=self.blockwise.upload_lifetime,
            )
        self._watch_uploads()

    def _log_upload_refusal(self) -> None:
        refusal = self.blockwise.last_refusal
        if refusal is None or not refusal.first:
            return
        if refusal.bound == "server":
            self.log.warn(
                "Answering 5.03 to Block1 uploads: the partial uploads of all connections "
                "hold {held} bytes, the server's budget is {limit} bytes (logged again once "
                "they fall to half of it)",
                held=refusal.held,
                limit=refusal.limit,
            )
        elif refusal.bound == "connection":
            self.log.warn(
                "Answering 5.03 to Block1 uploads from {peer}: its partial uploads hold "
                "{held} bytes, a connection's budget is {limit} bytes",
                peer=self.peer,
                held=refusal.held,
                limit=refusal.limit,
            )
        else:
            self.log.warn(
                "Answering 5.03 to Block1 uploads from {peer}: {held} uploads in progress "
                "already, the most one connection may have",
                peer=self.peer,
                held=refusal.held,
            )

    def _deferred_response(self, result: Response | Failure, request: Message, number: int) -> None:
        if self._unanswered.pop(number, None) is None:
            return  # answered 5.03 when the Release's time ran out
        result = self._response_or_error(result)
        if not self._lost and self.connection.state is not State.CLOSED:
            self._respond(request, result)
            self._release_custody()
            self._flush()
        self._maybe_finish_release()

    def _response_or_error(self, result: Response | Failure) -> Response:
        if isinstance(result, Failure):
            if not result.check(CancelledError):
                self.log.failure("Unexpected failure answering a request", result)
            return Response(Code.INTERNAL_SERVER_ERROR, b"internal server error")
        return result

    def _release_custody(self) -> None:
        waits = self._custody_waits
        if not waits:
            return
        # The oldest request that may be unanswered: numbers only grow, so this pointer
        # passes each request once, whatever the number of answers and Pings.
        unanswered = self._unanswered
        oldest = self._custody_oldest
        newest = self._inbound_received
        while oldest <= newest and oldest not in unanswered:
            oldest += 1
        self._custody_oldest = oldest
        send_pong = self.connection.send_pong
        while waits and waits[0][0] < oldest:
            send_pong(waits.popleft()[1], custody=True)

    def _respond(self, request: Message, response: Response) -> None:
        """Send ``response`` to ``request``, cut into a Block2 block if it must be."""
        self._send_response_message(
            request, Message(response.code, request.token, response.options, response.payload)
        )

    def _send_response_message(self, request: Message, message: Message) -> None:
        connection = self.connection
        if connection.state is _CLOSED:
            return  # aborted (by us or a resource) before this answer was ready
        items = request.options.items
        if len(message.payload) < connection.peer.max_message_size and not (
            items
            and items[-1][0] >= _BLOCK2  # Block2 (23) and Block1 (27) come late: cheap test
            and (OptionNumber.BLOCK1 in request.options or OptionNumber.BLOCK2 in request.options)
        ):
            # The common case: no block-wise exchange asked for; send it whole if it fits
            # (a payload above the peer's limit cannot: do not encode it to find out).
            try:
                connection.send(message)
                if len(message.payload) > EARLY_WRITE:
                    self._flush()  # a large answer: let the transport say if it is full
                return
            except MessageTooLarge:
                pass
        message = self.blockwise.prepare_response(
            request,
            message,
            peer_max_message_size=connection.peer.max_message_size,
            peer_bert=connection.peer.bert,
            encoded_size=connection.encoded_size,
        )
        try:
            connection.send(message)
            if len(message.payload) > EARLY_WRITE:
                self._flush()
        except MessageTooLarge as error:
            self.log.warn("Response to {peer} too large: {error}", peer=self.peer, error=str(error))
            diagnostic = f"response of {error.size} bytes exceeds your Max-Message-Size"
            try:
                connection.send(
                    Message(Code.INTERNAL_SERVER_ERROR, message.token, payload=diagnostic.encode())
                )
            except MessageTooLarge:
                self.abort("Max-Message-Size too small for any response")

    # -- observations (RFC 7641, RFC 8323 section 7) ------------------------------------

    @property
    def observation_count(self) -> int:
        """Observations registered on this connection."""
        return len(self._observations)

    def add_observation(self, resource: ObservableResource, request: Request) -> bool:
        """Register ``request`` as an observer of ``resource``; false when declined."""
        if self._lost:
            return False  # an async render finished after the connection went away
        token = request.token
        existing = self._observations.get(token)
        if existing is not None:
            existing.resource.remove_observer(self, token)
        elif len(self._observations) >= self.max_observations:
            self._log_limit_once(
                "observations",
                "Declining further observations from {peer}: {count} already",
                count=len(self._observations),
            )
            return False
        observation = resource.add_observer(self, request.message)
        if observation is None:
            self._observations.pop(token, None)
            return False
        self._observations[token] = observation
        return True

    def remove_observation(self, resource: ObservableResource, token: bytes) -> None:
        """Deregister the observation with ``token`` (RFC 8323 section 7.4)."""
        observation = self._observations.pop(token, None)
        if observation is not None:
            observation.resource.remove_observer(self, token)

    def notify(self, observation: Observer) -> None:
        """Send ``observation`` a fresh notification, or mark it stale while we are paused."""
        if self._lost or self._observations.get(observation.token) is not observation:
            return
        if self._paused or observation.rendering:
            observation.stale = True
            return
        observation.stale = False
        observation.rendering = True
        assert self.site is not None
        try:
            request = observation.new_request()
        except UnicodeDecodeError:  # it decoded when it registered; cannot happen
            self.remove_observation(observation.resource, observation.token)
            return
        result = self.site.render_resource(observation.resource, request)
        if isinstance(result, Response):
            self._send_notification(observation, result)
        else:
            result.addBoth(self._deferred_notification, observation)

    def _deferred_notification(self, result: Response | Failure, observation: Observer) -> None:
        self._send_notification(observation, self._response_or_error(result))

    def _send_notification(self, observation: Observer, response: Response) -> None:
        observation.rendering = False
        if self._lost or self._observations.get(observation.token) is not observation:
            return
        if response.code.is_successful:
            mark_notification(response, observation.resource)
        else:
            # An error response ends the observation (RFC 7641 section 3.2).
            self.remove_observation(observation.resource, observation.token)
        self._respond(observation.message, response)
        self._flush()
        if observation.stale:
            self.notify(observation)

    def _drop_observations(self) -> None:
        observations, self._observations = self._observations, {}
        for observation in observations.values():
            observation.resource.remove_observer(self, observation.token)

    # -- flow control ---------------------------------------------------------------------

    def pause(self) -> None:
        """The transport's buffer is full (the peer reads slowly, or not at all).

        Requests already read wait unprocessed, reading stops, notifications are held,
        and the write timeout starts: a peer that reads nothing for
        ``limits.write_timeout`` seconds is aborted.
        """
        if self._paused:
            return
        self._paused = True
        self._stop_reading()
        timeout = self.limits.write_timeout
        if timeout is not None and self._write_call is None and not self._lost:
            self._write_call = self._reactor.callLater(timeout, self._write_timed_out)

    def resume(self) -> None:
        """The transport drained: go on with the input and send the latest state of
        every stale observation."""
        self._paused = False
        if self._write_call is not None:
            if self._write_call.active():
                self._write_call.cancel()
            self._write_call = None
        if self.input_backlog:
            self._hold_input()  # processed in the next turn, then reading goes on
        else:
            self._read_again()
        for observation in list(self._observations.values()):
            if observation.stale:
                self.notify(observation)

    def _write_timed_out(self) -> None:
        self._write_call = None
        if self._lost or not self._paused:
            return
        timeout = self.limits.write_timeout
        self.log.info(
            "Aborting {peer}: it read nothing of our output for {timeout:g} s",
            peer=self.peer,
            timeout=timeout,
        )
        self.abort(f"you read nothing of our output for {timeout:g} s")


class ChannelOwner:
    """The application's side of a connection, for protocols that own a :class:`Channel`
    (``CoapProtocol`` over TCP and TLS, the WebSocket protocols): requests, Ping,
    Release and Abort, each delegated to the channel."""

    channel: Channel

    def request(
        self,
        method: Code,
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a request on this connection; see :meth:`Channel.request`."""
        return self.channel.request(method, options, payload, timeout=timeout)

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """Send a CoAP Ping; fires with the round-trip time (RFC 8323 section 5.4)."""
        return self.channel.ping(timeout=timeout)

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Release the connection in an orderly way (RFC 8323 section 5.5)."""
        return self.channel.release(diagnostic)

    def abort(self, diagnostic: str) -> None:
        """Abort the connection (RFC 8323 section 5.6)."""
        self.channel.abort(diagnostic)

    # -- flow control: the owner is its transport's streaming producer ------------------

    transport: Any
    #: Whether pausing may stop reading from the transport now (not during a TLS
    #: handshake: Twisted's TLS layer pauses its producer while writes wait for it).
    _reading_pausable = True
    _reading_paused = False

    def pauseProducing(self) -> None:
        """The transport's write buffer is over its high-water mark (Twisted's
        ``bufferSize``): the peer reads too slowly.  The channel stops processing its
        requests and reading from it, and holds notifications."""
        self.channel.pause()

    def resumeProducing(self) -> None:
        """The peer caught up: process and read again, send the latest notifications."""
        self.channel.resume()

    def _set_reading(self, reading: bool) -> None:
        """The channel turns reading from the transport on and off (flow control)."""
        transport = self.transport
        if transport is None:
            return
        if reading:
            if self._reading_paused:
                self._reading_paused = False
                transport.resumeProducing()
        elif self._reading_pausable and not self._reading_paused:
            self._reading_paused = True
            transport.pauseProducing()

    def stopProducing(self) -> None:
        """The transport is going away; the protocol's connection-lost path cleans up."""
