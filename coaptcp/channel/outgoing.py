"""What a :class:`~coaptcp.channel.Channel` sends and waits for: our requests (RFC 7252
section 5.3 tokens, RFC 8323 section 5.3.1 size limits), Pings (RFC 8323 section 5.4) and
the observations we hold (RFC 7641, RFC 8323 section 7).

Each request gets a fresh 4-byte token and a Deferred that fires with its
:class:`~coaptcp.server.request.Response`; a request too large for the base
Max-Message-Size waits for the peer's CSM.  When the connection goes, every one of them
fails with :class:`~coaptcp.channel.errors.ConnectionClosedError`.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from coaptcp.channel.base import ChannelBase
from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.observing import ChannelObservation
from coaptcp.core.codes import Code
from coaptcp.core.connection import State
from coaptcp.core.errors import LocalProtocolError, MessageTooLarge
from coaptcp.core.events import BASE_MAX_MESSAGE_SIZE, PongReceived
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.server.request import Response

__all__ = ["Outgoing"]


class Outgoing(ChannelBase):
    """Our requests (RFC 7252 section 5.3), Pings (RFC 8323 section 5.4) and
    observations (RFC 8323 section 7), by token, and what answers them."""

    __slots__ = ()

    @property
    def pending_requests(self) -> int:
        """Our requests still waiting for a response."""
        return len(self._pending) + len(self._waiting_for_csm)

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

    # -- what the peer sends back ---------------------------------------------------------

    def _send_waiting(self) -> None:
        """The peer's CSM arrived: send the requests that waited for it."""
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

    def _fail_outgoing(self, error: ConnectionClosedError) -> None:
        """The connection is gone: so is every answer we wait for."""
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
