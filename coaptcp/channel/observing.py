"""One observation on one connection, as the client side of a Channel holds it (RFC 7641, as
updated for reliable transports by RFC 8323 section 7).

:class:`ChannelObservation` keeps its token for every notification and hands each 2.xx
response carrying Observe to the caller whatever the Observe value (the value is ignored on
reliable transports, section 7.1, and may be empty, so nothing is reordered or dropped by
sequence number); it ends on a response without Observe or an error response, and cancels
with a GET carrying Observe=1 and the same token (section 7.4).  The user-facing
:class:`~coaptcp.client.Observation` builds on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.core.options import OptionNumber, Options

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from coaptcp.server.request import Response

__all__ = [
    "DEFAULT_DEREGISTER_TIMEOUT",
    "ChannelObservation",
    "ObservationChannel",
    "ObservationState",
    "is_notification",
]

#: Seconds to wait for the answer to a deregistration (GET with Observe=1) before the
#: token is freed anyway.
DEFAULT_DEREGISTER_TIMEOUT = 5.0


def is_notification(response: Response) -> bool:
    """Whether ``response`` keeps an observation going: a 2.xx response with an Observe
    option, whatever its value (RFC 7641 section 3.2; RFC 8323 section 7.1)."""
    return response.code.is_successful and OptionNumber.OBSERVE in response.options


class ObservationState(enum.Enum):
    """Where a :class:`ChannelObservation` stands."""

    REGISTERING = "registering"  # GET Observe=0 sent, no response yet
    ACTIVE = "active"  # notifications arrive
    CANCELLING = "cancelling"  # GET Observe=1 sent, waiting for its answer
    ENDED = "ended"  # the token is free


class ObservationChannel(Protocol):
    """What a :class:`ChannelObservation` needs from its connection (a
    :class:`~coaptcp.channel.Channel`)."""

    def send_observe(self, observation: ChannelObservation, value: int) -> None:
        """Send the observation's GET with Observe=``value`` (0 registers, 1 cancels);
        raises :class:`RequestNotSent` or :class:`ConnectionClosedError`."""

    def forget_observation(self, observation: ChannelObservation) -> None:
        """Free the observation's token."""


class ChannelObservation:
    """One observation held on one connection; made by
    :meth:`~coaptcp.channel.Channel.observe`.

    :ivar token: the token of the registration, reused by the deregistration.
    :ivar options: the registration's options (without Observe).
    :ivar notifications: the responses delivered so far.
    :ivar end_reason: why it ended, in words (``None`` while it runs).
    """

    log = Logger()

    def __init__(
        self,
        channel: ObservationChannel,
        token: bytes,
        options: Options,
        on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
        reactor: IReactorTime,
    ) -> None:
        self.channel = channel
        self.token = token
        self.options = options.remove(OptionNumber.OBSERVE)
        self.state = ObservationState.REGISTERING
        self.notifications = 0
        self.end_reason: str | None = None
        self._on_notification = on_notification
        self._on_end: Callable[[BaseException | None], None] | None = on_end
        self._reactor = reactor
        self._cancel_waiters: list[Deferred[Response | None]] = []
        self._timer: Any = None

    # -- from the channel -----------------------------------------------------------------

    def response_received(self, response: Response) -> None:
        """A response with our token arrived (the Channel calls this)."""
        if self.state is ObservationState.CANCELLING:
            if is_notification(response):
                return  # sent before the server saw our deregistration: not wanted now
            self._freed(response)
            return
        if self.state is ObservationState.ENDED:
            return
        if is_notification(response):
            self.state = ObservationState.ACTIVE
            self._deliver(response)
            return
        # No Observe, or an error: the observation ends here (RFC 7641 sections 3.2, 4.1).
        if response.code.is_successful:
            self.end_reason = "the server ended the observation (a response without Observe)"
        else:
            self.end_reason = f"the server ended the observation with {response.code}"
        self.state = ObservationState.ENDED
        self.channel.forget_observation(self)
        self._deliver(response)
        self._ended(None)

    def connection_lost(self, error: ConnectionClosedError) -> None:
        """The connection is gone: so is the observation (RFC 8323 section 7.4)."""
        if self.state is ObservationState.ENDED:
            return
        if self.state is ObservationState.CANCELLING:
            self._freed(None)
            return
        self.state = ObservationState.ENDED
        self.end_reason = f"connection lost: {error.reason}"
        self._ended(error)

    # -- from the application -------------------------------------------------------------

    def cancel(
        self, timeout: float | None = DEFAULT_DEREGISTER_TIMEOUT
    ) -> Deferred[Response | None]:
        """Deregister with a GET carrying Observe=1 and our token (RFC 8323 section 7.4).

        No notification is delivered after this call.  The returned Deferred fires with
        the answer to the deregistration once it arrives (the token is then free), or with
        ``None`` after ``timeout`` seconds, or when the connection closes first.

        A registration that never got an answer is not waited for: the deregistration
        follows it on the same ordered stream (so a server that registers it late
        deregisters it at once), and the token is freed at once, as for a request whose
        timeout expired; late answers to it are ignored.
        """
        if self.state is ObservationState.ENDED:
            return succeed(None)
        d: Deferred[Response | None] = Deferred()
        self._cancel_waiters.append(d)
        if self.state is ObservationState.CANCELLING:
            return d
        unanswered = self.state is ObservationState.REGISTERING
        self.state = ObservationState.CANCELLING
        self.end_reason = "cancelled"
        self._ended(None)
        try:
            self.channel.send_observe(self, 1)
        except (RequestNotSent, ConnectionClosedError) as error:
            self.log.info("Could not deregister: {error}", error=str(error))
            self._freed(None)
            return d
        if unanswered:
            self._freed(None)
            return d
        if timeout is not None:
            self._timer = self._reactor.callLater(timeout, self._deregister_timed_out)
        return d

    # -- internals ------------------------------------------------------------------------

    def _deregister_timed_out(self) -> None:
        self._timer = None
        self.log.info(
            "No answer to the deregistration of token {token}; freeing it",
            token=self.token.hex(),
        )
        self._freed(None)

    def _freed(self, answer: Response | None) -> None:
        self.state = ObservationState.ENDED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.channel.forget_observation(self)
        waiters, self._cancel_waiters = self._cancel_waiters, []
        for d in waiters:
            d.callback(answer)

    def _deliver(self, response: Response) -> None:
        self.notifications += 1
        try:
            self._on_notification(response)
        except Exception:
            self.log.failure("Observation callback failed")

    def _ended(self, error: BaseException | None) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            try:
                on_end(error)
            except Exception:
                self.log.failure("Observation end callback failed")
