"""Observing resources as a client (RFC 7641, as updated for reliable transports by RFC 8323
section 7).

:class:`Observation` is what :meth:`coaptcp.client.Client.observe` returns: an async
iterator of notifications (or a callback), a :meth:`~Observation.cancel`, and, on request,
a new registration on a new connection when the connection is lost.  Each registration is a
:class:`~coaptcp.channel.observing.ChannelObservation` on one connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.observing import DEFAULT_DEREGISTER_TIMEOUT, ChannelObservation
from coaptcp.core.blocks import Block, BlockError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from coaptcp.server.request import Response

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_REREGISTER_ATTEMPTS",
    "Observation",
]

#: Notifications an :class:`Observation` keeps for a reader that falls behind; beyond
#: this the oldest are dropped (each notification is the resource's whole current state,
#: RFC 7641 section 1.2, so the newest is what matters).
DEFAULT_QUEUE_SIZE = 64
#: Attempts to register again after the connection was lost (with ``reregister``).
DEFAULT_REREGISTER_ATTEMPTS = 3
#: Seconds before each further attempt (the first one is immediate).
_RETRY_DELAYS = (0.0, 1.0, 2.0, 4.0, 8.0)


_END = object()


class Observation:
    """An observation made by :meth:`coaptcp.client.client.Client.observe` (RFC 7641).

    Iterate over it (``async for response in observation``) to get each notification,
    the first response included; or give ``callback`` and each is passed to it instead.
    The iteration ends when the observation ends: cancelled, or ended by the server (a
    response without Observe, or an error response, which is delivered first).  A lost
    connection ends it with :class:`~coaptcp.channel.channel.ConnectionClosedError` (raised by the
    iteration, and by :meth:`when_ended`), unless ``reregister`` is set: then the same GET
    is registered again on a new connection and notifications go on.

    A notification that carries Block2 with more blocks to come is completed with GET
    requests for the following blocks before it is delivered (RFC 7959 section 3.4).

    :ivar notifications: how many responses were delivered.
    :ivar registrations: how many times the GET was registered (1 + re-registrations).
    :ivar end_reason: why it ended, in words (``None`` while it runs).
    :ivar dropped: notifications dropped because the reader fell ``queue_size`` behind.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        register: Callable[[Observation], Deferred[ChannelObservation]],
        *,
        complete: Callable[[Response], Deferred[Response]] | None = None,
        callback: Callable[[Response], object] | None = None,
        reregister: bool = False,
        reregister_attempts: int = DEFAULT_REREGISTER_ATTEMPTS,
        timeout: float | None = None,
        timeout_error: Callable[[], BaseException] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        deregister_timeout: float | None = DEFAULT_DEREGISTER_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.callback = callback
        self.reregister = reregister
        self.reregister_attempts = reregister_attempts
        self.timeout = timeout
        self.deregister_timeout = deregister_timeout
        self.notifications = 0
        self.registrations = 0
        self.dropped = 0
        self.end_reason: str | None = None
        self._register = register
        self._complete = complete
        self._timeout_error = timeout_error
        self._queue: deque[Response] = deque()
        self._queue_size = queue_size
        self._waiters: list[Deferred[Any]] = []
        self._end_waiters: list[Deferred[None]] = []
        self._ended = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._deregistration_done = False
        self._deregistration_waiters: list[Deferred[None]] = []
        self._current: ChannelObservation | None = None
        self._registering: Deferred[ChannelObservation] | None = None
        self._retry_call: Any = None
        self._timeout_call: Any = None
        self._failures = 0
        self._chain: Deferred[None] = succeed(None)
        self._start()

    # -- the application's side -----------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Whether the observation is over (no more notifications will come)."""
        return self._ended

    @property
    def channel_observation(self) -> ChannelObservation | None:
        """The observation on the current connection, if registered."""
        return self._current

    def cancel(self) -> Deferred[None]:
        """Stop observing: deregister (GET with Observe=1 and the same token, RFC 8323
        section 7.4); fires once the server answered (or the deregistration timed out).

        The iteration ends at once; notifications still queued are discarded.
        """
        if not self._cancelled:
            self._cancelled = True
            self._queue.clear()
            self._stop_timers()
            current, self._current = self._current, None
            if self._registering is not None:
                self._registering.cancel()
            self._end(None, "cancelled")
            if current is None:
                self._deregistered(None)
            else:
                current.cancel(self.deregister_timeout).addBoth(self._deregistered)
        if self._deregistration_done:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._deregistration_waiters.append(d)
        return d

    def _deregistered(self, _: object) -> None:
        self._deregistration_done = True
        waiters, self._deregistration_waiters = self._deregistration_waiters, []
        for d in waiters:
            d.callback(None)

    def when_ended(self) -> Deferred[None]:
        """Fires when the observation ends; fails with the error that ended it."""
        if self._ended:
            if self._error is not None:
                from twisted.internet.defer import fail

                return fail(self._error)
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._end_waiters.append(d)
        return d

    def __aiter__(self) -> Observation:
        return self

    async def __anext__(self) -> Response:
        """The next notification (waits for it)."""
        if self._queue:
            return self._queue.popleft()
        if self._ended:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        waiter: Deferred[Any] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        item = await waiter
        if item is _END:
            raise StopAsyncIteration
        response: Response = item
        return response

    # -- registering ------------------------------------------------------------------------

    def _start(self) -> None:
        self._retry_call = None
        if self._ended:
            return
        if self.timeout is not None:
            self._timeout_call = self.reactor.callLater(self.timeout, self._timed_out)
        registering = self._register(self)
        self._registering = registering
        registering.addCallbacks(self._registered, self._register_failed)

    def _registered(self, observation: ChannelObservation) -> None:
        self._registering = None
        self.registrations += 1
        if self._ended:
            observation.cancel(self.deregister_timeout)
            return
        self._current = observation

    def _register_failed(self, failure: Failure) -> None:
        self._registering = None
        if self._ended or failure.check(CancelledError):
            return
        error = failure.value
        self._connection_ended(error if error is not None else Exception(str(failure)))

    def _timed_out(self) -> None:
        self._timeout_call = None
        error = (
            self._timeout_error() if self._timeout_error is not None
            else TimeoutError("no response to the observation")
        )
        self._end(error, str(error))
        current, self._current = self._current, None
        if self._registering is not None:
            registering, self._registering = self._registering, None
            registering.cancel()
        if current is not None:
            current.cancel(self.deregister_timeout)

    # -- from the channel -------------------------------------------------------------------

    def notification(self, response: Response) -> None:
        """A response of the observation arrived (the registration passes this to the
        :class:`ChannelObservation`)."""
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self._failures = 0
        complete = self._complete
        if complete is not None and _more_blocks(response):
            self._chain.addCallback(lambda _: complete(response))
            self._chain.addCallbacks(self._deliver, self._completion_failed)
        else:
            self._chain.addCallback(lambda _: self._deliver(response))
        self._chain.addErrback(self._step_failed)

    def channel_ended(self, error: BaseException | None) -> None:
        """The observation on the connection ended (the registration passes this)."""
        self._chain.addCallback(lambda _: self._channel_ended(error))
        self._chain.addErrback(self._step_failed)

    def _step_failed(self, failure: Failure) -> None:
        self.log.failure("Unexpected error handling an observation", failure)

    def _channel_ended(self, error: BaseException | None) -> None:
        if self._ended:
            return
        current, self._current = self._current, None
        if error is None:
            reason = current.end_reason if current is not None else None
            self._end(None, reason or "the server ended the observation")
            return
        self._connection_ended(error)

    def _connection_ended(self, error: BaseException) -> None:
        self._current = None
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        if (
            self.reregister
            and self.registrations  # a first registration that failed is not retried
            and not self._cancelled
            and self._failures < self.reregister_attempts
        ):
            delay = _RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS) - 1)]
            self._failures += 1
            self.log.info(
                "Observation lost ({error}); registering again in {delay:g} s",
                error=str(error),
                delay=delay,
            )
            self._retry_call = self.reactor.callLater(delay, self._start)
            return
        self._end(error, str(error))

    def _completion_failed(self, failure: Failure) -> None:
        self.log.warn(
            "Dropping a notification whose remaining blocks could not be fetched: {error}",
            error=failure.getErrorMessage(),
        )

    # -- delivering -------------------------------------------------------------------------

    def _deliver(self, response: Response) -> None:
        if self._ended:
            return
        self.notifications += 1
        if self.callback is not None:
            try:
                self.callback(response)
            except Exception:
                self.log.failure("Observation callback failed")
            return
        if self._waiters:
            self._waiters.pop(0).callback(response)
            return
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(response)

    def _stop_timers(self) -> None:
        for call in (self._retry_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        self._retry_call = self._timeout_call = None

    def _end(self, error: BaseException | None, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self.end_reason = reason
        self._stop_timers()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if error is None:
                waiter.callback(_END)
            else:
                waiter.errback(Failure(error))
        end_waiters, self._end_waiters = self._end_waiters, []
        for d in end_waiters:
            if error is None:
                d.callback(None)
            else:
                d.errback(Failure(error))


def _more_blocks(response: Response) -> bool:
    """Whether ``response`` is block 0 of a larger body (Block2 with M=1)."""
    raw = response.options.block2
    if raw is None:
        return False
    try:
        return Block.decode(raw).more
    except BlockError:
        return False
