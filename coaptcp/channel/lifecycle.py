"""The life cycle of a :class:`~coaptcp.channel.Channel`: from the CSM to the close.

RFC 8323 section 5.3 makes the CSM mandatory (we abort a peer that sends none within
``limits.csm_timeout``); section 5.5 closes in an orderly way with a Release (or a FIN on
TCP): the requests already received are answered first, within ``release_timeout``, and
what is still rendering then gets 5.03; section 5.6 aborts.  A close that does not
complete within ``close_timeout`` drops the transport.  The :class:`~coaptcp.channel.
watchdog.Watchdog` releases an idle connection and Pings a silent one (section 5.4); this
mixin is what it watches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from coaptcp.channel.base import ChannelBase, transport_gone
from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.watchdog import cancel_calls
from coaptcp.core.codes import Code
from coaptcp.core.connection import State
from coaptcp.server.request import Response

if TYPE_CHECKING:
    from coaptcp.core.events import AbortReceived, ConnectionAborted, ReleaseReceived

__all__ = ["Lifecycle"]


class Lifecycle(ChannelBase):
    """The CSM timer, Release, Abort, the close and the loss of the transport (RFC 8323
    sections 5.3-5.6); the connection the watchdog watches
    (:class:`~coaptcp.channel.watchdog.Watched`)."""

    __slots__ = ()

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
        self._maybe_finish_release()
        self._arm_release_timer()

    # -- timers (section 3.3 CSM, section 5.4 Ping, section 5.5 Release) ------------------

    def _csm_timed_out(self) -> None:
        self._csm_call = None
        if self._lost:
            return
        if not self.connection.peer_csm_received:
            self._dispatch(
                self.connection.abort_for_violation(
                    f"no CSM received within {self.limits.csm_timeout:g} s", "csm_timeout"
                )
            )
        elif not self._closing and not self._watchdog.started:
            self._watchdog.check()  # the CSM timer hands over to the watchdog

    def watchdog_busy(self) -> bool:
        """Whether requests (ours or theirs) or observations (either way) are in flight."""
        return bool(self._pending or self._unanswered or self._observations or self._observing)

    def watchdog_may_ping(self) -> bool:
        """No keepalive Ping after a Release: only the work in flight is finished."""
        connection = self.connection
        return not (connection.release_sent or connection.release_received)

    def watchdog_idle(self, idle: float) -> None:
        """Idle for ``idle`` seconds with nothing in flight: release (section 5.5)."""
        self.log.info("Releasing {peer}: idle for {idle:.0f} s", peer=self.peer, idle=idle)
        self.release(f"idle for {idle:.0f} s")

    def watchdog_no_pong(self, timeout: float) -> None:
        """A keepalive Ping got no Pong: abort (section 5.4)."""
        if not self._lost:
            self.log.info(
                "Closing {peer}: no Pong within {timeout:g} s", peer=self.peer, timeout=timeout
            )
            self.abort(f"no Pong within {timeout:g} s", "keepalive_timeout")

    # -- closing --------------------------------------------------------------------------

    def violation(self, diagnostic: str, reason: str = "protocol") -> None:
        """Abort for a transport-level violation the core cannot see (a text WS frame);
        ``reason`` as :attr:`~coaptcp.core.errors.RemoteProtocolError.reason`."""
        self._dispatch(self.connection.abort_for_violation(diagnostic, reason))

    def connection_lost(self, reason: Failure | None = None) -> None:
        """The transport is gone: fail what is pending, cancel timers."""
        if self._lost:
            return
        self._lost = True
        if self._observations:
            self._drop_observations()  # RFC 8323 section 7.4: they end with the link
        note = self.connection.connection_lost()
        if note:
            self.log.info("Peer {peer} closed the connection: {note}", peer=self.peer, note=note)
        if self.close_reason is None:
            if reason is None or reason.check(ConnectionDone):
                self.close_reason = "connection closed"
            else:
                self.close_reason = f"connection lost: {reason.getErrorMessage()}"
        self._watchdog.stop()
        cancel_calls(
            self._close_call,
            self._release_call,
            self._csm_call,
            self._frame_call,
            self._input_call,
            self._write_call,
            self._upload_call,
        )
        self.blockwise.drop_uploads()  # their bytes go back to the server's budget
        # Let go of the transport's callables (bound methods of the protocol that owns
        # this channel): otherwise the two keep each other alive until a full collection
        # of the cyclic garbage collector, which an idle server may not run for long.
        self._write = self._write_soon = transport_gone
        self._close = self._abort = self._set_reading = transport_gone
        self._held_events = None
        self._ws_queue.clear()
        if (
            self._pending
            or self._waiting_for_csm
            or self._pings
            or self._csm_waiters
            or self._observing
        ):
            self._fail_outgoing(ConnectionClosedError(self.close_reason))
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

    def _close_transport(self) -> None:
        """Close after the queued frames are written; drop the link if that stalls."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._watchdog.stop()
        cancel_calls(self._csm_call, self._frame_call, self._input_call, self._upload_call)
        self._input_call = None
        self.blockwise.drop_uploads()  # no block of theirs will be processed now
        self._flush()
        if not self._close():
            # The close may wait for the peer (output it does not read, a TLS or
            # WebSocket closing handshake): drop the link if it takes too long.
            self._close_call = self._reactor.callLater(self.close_timeout, self._force_close)

    def _force_close(self) -> None:
        if not self._lost:
            self.log.info("Dropping {peer}: the close did not complete", peer=self.peer)
            self._abort()

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
        self._maybe_finish_release()
        self._arm_release_timer()
        return closed

    def abort(self, diagnostic: str, reason: str = "application") -> None:
        """Send Abort and close (RFC 8323 section 5.6).

        ``reason`` says why in one word of a short fixed set, for ``coap_aborts_sent_total``
        (:mod:`coaptcp.metrics`): ``"application"`` (asked for by the code using the
        channel), ``"write_timeout"``, ``"keepalive_timeout"``, ``"connection_limit"``,
        ``"response_too_large"``.
        """
        if self._lost:
            return
        self.close_reason = f"aborted by us: {diagnostic}"
        counts = self.counts
        if counts is not None and self.connection.state is not State.CLOSED:
            counts.abort_sent(reason)
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
        timer, whichever comes first and however many follow; none once closing (the
        work in flight was done at once)."""
        if self._release_call is None and not self._closing and not self._lost:
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

    # -- the peer's signals (section 5.5, 5.6) and our own aborts ------------------------

    def _on_release(self, event: ReleaseReceived) -> None:
        self.close_reason = "the peer released the connection" + (
            f": {event.diagnostic}" if event.diagnostic else ""
        )
        self.log.info(
            "Peer {peer} sent Release ({diagnostic})", peer=self.peer, diagnostic=event.diagnostic
        )
        self._maybe_finish_release()
        self._arm_release_timer()

    def _on_abort(self, event: AbortReceived) -> None:
        self.close_reason = f"the peer aborted the connection: {event.diagnostic}"
        self.log.info(
            "Peer {peer} sent Abort: {diagnostic}", peer=self.peer, diagnostic=event.diagnostic
        )
        self._close_transport()

    def _on_violation(self, event: ConnectionAborted) -> None:
        self.close_reason = f"aborted by us: {event.diagnostic}"
        counts = self.counts
        if counts is not None:
            counts.abort_sent(event.reason)
        self.log.info(
            "Aborting connection from {peer}: {diagnostic}",
            peer=self.peer,
            diagnostic=event.diagnostic,
        )
        self._close_transport()

