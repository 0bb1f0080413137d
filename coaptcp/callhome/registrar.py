"""The registration's life on one back end: what :class:`~coaptcp.callhome.CallHome` does
between calls (RFC 9176 section 5.3, RFC 8323 sections 3.3 and 5.4).

:class:`Registrar` registers (``POST`` to the directory with the device's links), keeps
the registration (an update before its lifetime ends, section 5.3.1; registering anew on
4.04 or when updates keep failing), notices the loss of the registered connection and
calls home again after the back-off.  It has one timer at a time (the next attempt or
the next update) and one request under way at a time; ``stopService`` makes whatever is
under way stale (a generation number) so that nothing it started acts any more.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.callhome.registration import (
    LINK_FORMAT,
    Directory,
    Registration,
    RegistrationRefused,
    links_of,
    refresh_delay,
    refusal,
    registration_location,
)
from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.callhome.backoff import Backoff
    from coaptcp.callhome.observations import BackendObservation
    from coaptcp.client.client import Client
    from coaptcp.server.request import Response
    from coaptcp.server.resource import Site

__all__ = ["CallHomeState", "Registrar", "failure_reason"]

_LINK_FORMAT_OPTIONS = Options([(OptionNumber.CONTENT_FORMAT, LINK_FORMAT)])


class CallHomeState(enum.Enum):
    """Where a :class:`CallHome` is."""

    STOPPED = "stopped"
    #: connecting and registering
    CONNECTING = "connecting"
    #: registered over an open connection
    REGISTERED = "registered"
    #: backing off before calling home again
    WAITING = "waiting"


def failure_reason(failure: Failure) -> str:
    """Why something failed, in one line (for the log and ``last_error``)."""
    message = failure.getErrorMessage().rstrip(".")
    return message or getattr(failure.type, "__name__", "unknown error")


class Registrar:
    """The registration state machine of :class:`~coaptcp.callhome.CallHome` (a mixin:
    the attributes below are set by its constructor)."""

    log = Logger()

    directory: Directory
    site: Site | None
    links: str | None
    reactor: Any
    request_timeout: float | None
    backoff: Backoff
    state: CallHomeState
    registration: Registration | None
    failures: int
    registrations_made: int
    connections_lost: int
    last_error: str | None
    _random: Callable[[], float]
    _client: Client | None
    _session: Any
    _session_started: float
    _call: Any
    _operation: Deferred[Response] | None
    _generation: int
    _observations: list[BackendObservation]
    _registered_waiters: list[Deferred[Registration]]
    _disconnected_waiters: list[Deferred[str]]
    _update_failures = 0

    # -- hooks ----------------------------------------------------------------------------

    def registered(self, registration: Registration) -> None:
        """Called each time the directory accepts a registration (not an update); the
        back end can reach the device from now on.  Override it; the default does
        nothing."""

    def disconnected(self, reason: str) -> None:
        """Called when a registered connection ends (lost, dropped for want of a Pong,
        released by either side, or ``stopService``), with the reason in words.
        Override it; the default does nothing."""

    # -- registering ----------------------------------------------------------------------

    def _connect(self) -> None:
        """Register (RFC 9176 section 5.3); the client connects first if it must."""
        self._call = None
        client = self._client
        if client is None:
            return
        self.state = CallHomeState.CONNECTING
        links = self.links if self.links is not None else links_of(self.site)
        generation = self._generation
        d = client.request(Code.POST, self.directory.uri, links.encode("utf-8"),
                           options=_LINK_FORMAT_OPTIONS, timeout=self.request_timeout)
        self._operation = d
        d.addCallbacks(self._register_answered, self._register_failed,
                       callbackArgs=(generation,), errbackArgs=(generation,))

    def _register_answered(self, response: Response, generation: int) -> None:
        if generation != self._generation:
            return
        self._operation = None
        try:
            location = registration_location(response)
        except RegistrationRefused as refused:
            self.log.warn("The directory at {directory} refused the registration: {error}",
                          directory=self.directory.origin, error=str(refused))
            self._registration_failed(str(refused), refused.retry_after)
            return
        client = self._client
        assert client is not None
        connection = client.connection_for(self.directory.origin)
        if connection is None:
            self._registration_failed("the connection closed after the registration")
            return
        now = self.reactor.seconds()
        if connection is not self._session:
            self._end_session("replaced by a new connection")
            self._session = connection
            self._session_started = now
            closed = connection.channel.when_closed()
            closed.addCallback(self._closed, connection, generation)
        lifetime = self.directory.lifetime
        registration = Registration(self.directory.endpoint, location, lifetime, now, now,
                                    connection)
        self.registration = registration
        self._update_failures = 0
        self.registrations_made += 1
        self.state = CallHomeState.REGISTERED
        self.last_error = None
        self.log.info("Registered {endpoint} at {location} of {directory}",
                      endpoint=self.directory.endpoint or "(named by TLS identity)",
                      location=registration.path, directory=self.directory.origin)
        self._schedule(refresh_delay(lifetime), self._refresh)
        self._start_observations(client)
        waiters, self._registered_waiters = self._registered_waiters, []
        for waiter in waiters:
            waiter.callback(registration)
        self._run_hook(self.registered, registration)

    def _register_failed(self, failure: Failure, generation: int) -> None:
        if generation != self._generation:
            return
        self._operation = None
        if self._session is not None and failure.check(ConnectionClosedError):
            return  # the registered connection went: _closed calls home again
        self._registration_failed(failure_reason(failure))

    def _registration_failed(self, reason: str, at_least: int | None = None) -> None:
        """The registration did not succeed: let go of the connection (the back end
        holds it for nothing) and try again after the back-off."""
        self.last_error = reason
        self._end_session(reason)
        client = self._client
        if client is not None:
            connection = client.connection_for(self.directory.origin)
            if connection is not None:
                connection.release("not registered")
        self._retry_later(reason, at_least)

    def _retry_later(self, reason: str, at_least: int | None = None) -> None:
        delay = self.backoff.delay(self.failures, self._random)
        if at_least is not None:
            delay = max(delay, min(float(at_least), self.backoff.max_delay))
        self.failures += 1
        self.state = CallHomeState.WAITING
        self.log.info("Calling home to {directory} again in {delay:.1f} s ({reason})",
                      directory=self.directory.origin, delay=delay, reason=reason)
        self._schedule(delay, self._connect)

    def _closed(self, _: object, connection: Any, generation: int) -> None:
        """The registered connection closed: call home again after the back-off."""
        if generation != self._generation or connection is not self._session:
            return
        reason = connection.channel.close_reason or "connection closed"
        self.connections_lost += 1
        if self.reactor.seconds() - self._session_started >= self.backoff.reset_after:
            self.failures = 0  # it lasted: this is a first failure again
        self._cancel_timer()
        self._end_session(reason)
        self.log.info("Lost the connection to {directory}: {reason}",
                      directory=self.directory.origin, reason=reason)
        self._retry_later(reason)

    def _end_session(self, reason: str) -> Registration | None:
        """Forget the registered connection, if any, and tell who waits."""
        registration, self.registration = self.registration, None
        connection, self._session = self._session, None
        if connection is None:
            return None
        waiters, self._disconnected_waiters = self._disconnected_waiters, []
        for waiter in waiters:
            waiter.callback(reason)
        self._run_hook(self.disconnected, reason)
        return registration

    # -- updating the registration --------------------------------------------------------

    def _refresh(self) -> None:
        """Update the registration before its lifetime ends (RFC 9176 section 5.3.1)."""
        self._call = None
        client, registration = self._client, self.registration
        if client is None or registration is None:
            return
        generation = self._generation
        d = client.request(Code.POST, self.directory.location_uri(registration.location),
                           timeout=self.request_timeout)
        self._operation = d
        d.addCallbacks(self._refresh_answered, self._refresh_failed,
                       callbackArgs=(generation, registration),
                       errbackArgs=(generation, registration))

    def _refresh_answered(self, response: Response, generation: int,
                          registration: Registration) -> None:
        if generation != self._generation or registration is not self.registration:
            return
        self._operation = None
        if response.code == Code.CHANGED:
            registration.refreshed_at = self.reactor.seconds()
            registration.updates += 1
            self._update_failures = 0
            self.log.debug("Updated the registration {location}", location=registration.path)
            self._schedule(refresh_delay(registration.lifetime), self._refresh)
            if self._client is not None:
                self._start_observations(self._client)
        elif response.code == Code.NOT_FOUND:
            self.log.info("The directory forgot the registration {location}; registering anew",
                          location=registration.path)
            self._connect()
        else:
            refused = refusal(response)
            self._refresh_retry(registration, str(refused), refused.retry_after)

    def _refresh_failed(self, failure: Failure, generation: int,
                        registration: Registration) -> None:
        if generation != self._generation or registration is not self.registration:
            return
        self._operation = None
        if failure.check(ConnectionClosedError):
            return  # _closed calls home again
        self._refresh_retry(registration, failure_reason(failure))

    def _refresh_retry(self, registration: Registration, reason: str,
                       at_least: int | None = None) -> None:
        """An update failed: try it again after the back-off if that comes before the
        registration expires; else register anew at once, on the same connection (the
        directory may still take registrations when its updates fail; a refusal then
        lets go of the connection and backs off)."""
        delay = self.backoff.delay(self._update_failures, self._random)
        if at_least is not None:
            delay = max(delay, min(float(at_least), self.backoff.max_delay))
        self._update_failures += 1
        self.last_error = reason
        if self.reactor.seconds() + delay < registration.expires_at:
            self.log.info("Updating {location} failed ({reason}); again in {delay:.1f} s",
                          location=registration.path, reason=reason, delay=delay)
            self._schedule(delay, self._refresh)
        else:
            self.log.info("Updating {location} failed ({reason}) and it expires before "
                          "the next try: registering anew",
                          location=registration.path, reason=reason)
            self._update_failures = 0
            self._cancel_timer()
            self._connect()

    # -- internals ------------------------------------------------------------------------

    def _start_observations(self, client: Client) -> None:
        for observation in list(self._observations):
            observation.start(client)

    def _schedule(self, delay: float, call: Callable[[], None]) -> None:
        self._cancel_timer()
        self._call = self.reactor.callLater(delay, call)

    def _cancel_timer(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _run_hook(self, hook: Callable[[Any], object], value: Any) -> None:
        try:
            hook(value)
        except Exception:
            self.log.failure("A call-home hook failed: {hook}",
                             hook=getattr(hook, "__name__", hook))
