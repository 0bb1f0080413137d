"""A device that calls home: :class:`CallHome`, a Twisted ``Service``.

A device behind NAT cannot be reached by a back end, but it can reach the back end: it
opens a connection and keeps it, and since either end of a CoAP-over-TCP connection may
send requests (RFC 8323 section 3.3), the back end reaches the device's resources over
that connection.  :class:`CallHome` does what the device needs for that::

    from coaptcp.callhome import CallHome

    device = CallHome("coap+tcp://backend.example/rd?ep=node1", Site(root))
    device.setServiceParent(application)

- it connects (``coap+tcp``, ``coaps+tcp`` with a client certificate or a PSK so that
  the back end knows who calls, ``coap+ws``, ``coaps+ws``) and serves ``site`` on the
  connection;
- it registers with the back end's resource directory (``POST /rd?ep=node1&lt=..`` with
  its links in link-format, RFC 9176 section 5.3) and updates the registration before
  its lifetime ends (an empty ``POST`` to the location, section 5.3.1), registering anew
  when the directory has forgotten it (4.04) or keeps refusing updates;
- it keeps the connection alive with Pings when the back end is silent (RFC 8323
  section 5.4), and drops it when no Pong comes;
- after any loss it calls home again after a jittered exponential back-off
  (:class:`~coaptcp.callhome.backoff.Backoff`), registers again and registers again the
  observations it holds on the back end (:meth:`CallHome.observe`);
- ``stopService`` removes the registration (``DELETE``, section 5.3.2) and releases the
  connection (RFC 8323 section 5.5).

Applications follow it with :meth:`CallHome.when_registered` and
:meth:`CallHome.when_disconnected`, or by overriding :meth:`CallHome.registered` and
:meth:`CallHome.disconnected`.
"""

from __future__ import annotations

import dataclasses
import random as _random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from coaptcp.callhome.backoff import DEFAULT_BACKOFF, Backoff
from coaptcp.callhome.observations import DEFAULT_MAX_OBSERVATIONS, BackendObservation
from coaptcp.callhome.registrar import CallHomeState, Registrar, failure_reason
from coaptcp.callhome.registration import (
    CallHomeError,
    Directory,
    NotRegistered,
    Registration,
)
from coaptcp.channel.reactor import default_reactor
from coaptcp.client.client import Client
from coaptcp.client.connectors import ConnectOptions, Connector, TlsOptions
from coaptcp.core.codes import Code
from coaptcp.core.options import EMPTY_OPTIONS, Options, OptionValue
from coaptcp.core.uri import CoapUri
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site

__all__ = [
    "DEFAULT_DEREGISTER_TIMEOUT",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "CallHome",
    "CallHomeState",
]

#: Seconds of silence from the back end after which a Ping checks the connection (RFC
#: 8323 section 5.4); also what keeps a NAT's mapping of the connection alive.
DEFAULT_KEEPALIVE = 30.0
#: Seconds to wait for the Pong before the connection counts as lost.
DEFAULT_PING_TIMEOUT = 10.0
#: Seconds a registration or update (connecting included) may take before it counts as
#: failed.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Seconds ``stopService`` waits for the directory to answer the removal.
DEFAULT_DEREGISTER_TIMEOUT = 5.0

_DEFAULT: Any = object()


def _positive(name: str, value: float | None, optional: bool) -> None:
    if value is None and optional:
        return
    if value is None or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class CallHome(Registrar, Service):
    """A device's connection to its back end, registered in the back end's resource
    directory and kept up (see the module's description).

    :param uri: the directory's registration resource and the registration's
        parameters: ``coap+tcp://backend/rd?ep=NAME`` (RFC 9176 section 5.3; see
        :class:`~coaptcp.callhome.registration.Directory`).
    :param site: what the device serves to the back end over the connection (a
        :class:`~coaptcp.server.resource.Site` or a root
        :class:`~coaptcp.server.resource.Resource`); ``None`` answers 5.01.
    :param reactor: the reactor for the connection and every timer; the global one if
        ``None``.
    :param lifetime: the registration's lifetime in seconds (``lt``) unless the URI
        gives one; 90000 without either (RFC 9176 section 5).
    :param links: the registration's payload in link-format (RFC 6690); by default the
        links of ``site``'s resources, as its ``/.well-known/core`` lists them, read at
        each registration.
    :param tls: TLS settings for ``coaps+tcp`` and ``coaps+ws``: the CAs that vouch for
        the back end, and the device's certificate or PSK (RFC 8323 section 9).
    :param connect_options: what every connection attempt is given (``tls`` and the
        site replace theirs); :class:`~coaptcp.client.connectors.ConnectOptions`
        defaults if ``None``.
    :param connectors: connectors to use instead of the defaults, by scheme (tests pass
        in-memory ones).
    :param keepalive: seconds of silence from the back end before a Ping (``None``: no
        Pings, RFC 8323 section 5.4).
    :param ping_timeout: seconds to wait for that Pong before the connection is dropped.
    :param request_timeout: seconds a registration, an update or a request made with
        :meth:`request` may take.
    :param deregister_timeout: seconds ``stopService`` waits for the removal's answer.
    :param backoff: the delays between attempts after failures.
    :param random: gives numbers in ``[0, 1)`` for the jitter (``random.random`` of a
        private generator by default).
    :param max_observations: back-end observations :meth:`observe` may hold.
    :ivar state: a :class:`CallHomeState`.
    :ivar registration: the :class:`~coaptcp.callhome.registration.Registration` held,
        or ``None``.
    :ivar failures: consecutive failures since the last lasting registration (what the
        next back-off delay grows with).
    :ivar registrations_made: registrations the directory accepted (statistics).
    :ivar connections_lost: registered connections that were lost (statistics).
    :ivar last_error: why the last attempt failed, or ``None``.
    """

    def __init__(
        self,
        uri: str | CoapUri,
        site: Site | Resource | None = None,
        *,
        reactor: Any = None,
        lifetime: int | None = None,
        links: str | None = None,
        tls: TlsOptions | None = None,
        connect_options: ConnectOptions | None = None,
        connectors: Mapping[str, Connector] | None = None,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        deregister_timeout: float = DEFAULT_DEREGISTER_TIMEOUT,
        backoff: Backoff = DEFAULT_BACKOFF,
        random: Callable[[], float] | None = None,
        max_observations: int = DEFAULT_MAX_OBSERVATIONS,
    ) -> None:
        self.directory = Directory.from_uri(uri, lifetime)
        _positive("keepalive", keepalive, optional=True)
        _positive("ping_timeout", ping_timeout, optional=False)
        _positive("request_timeout", request_timeout, optional=True)
        _positive("deregister_timeout", deregister_timeout, optional=False)
        if max_observations < 0:
            raise ValueError("max_observations cannot be negative")
        if isinstance(site, Resource):
            site = Site(site)
        self.site = site
        self.links = links
        self.reactor = default_reactor(reactor)
        options = connect_options if connect_options is not None else ConnectOptions()
        if tls is not None:
            options = dataclasses.replace(options, tls=tls)
        self.connect_options = dataclasses.replace(options, site=site)
        self.keepalive = keepalive
        self.ping_timeout = ping_timeout
        self.request_timeout = request_timeout
        self.deregister_timeout = deregister_timeout
        self.backoff = backoff
        self.max_observations = max_observations
        self.state = CallHomeState.STOPPED
        self.registration: Registration | None = None
        self.failures = 0
        self.registrations_made = 0
        self.connections_lost = 0
        self.last_error: str | None = None
        self._connectors = dict(connectors) if connectors else None
        self._random = random if random is not None else _random.Random().random
        self._client: Client | None = None
        self._session: Any = None  # the connection the registration was made over
        self._session_started = 0.0
        self._call: Any = None  # the one timer: the next attempt, or the next update
        self._operation: Deferred[Response] | None = None
        self._generation = 0  # bumped by stopService: what was under way is stale
        self._observations: list[BackendObservation] = []
        self._registered_waiters: list[Deferred[Registration]] = []
        self._disconnected_waiters: list[Deferred[str]] = []


    def when_registered(self) -> Deferred[Registration]:
        """Fires with the :class:`~coaptcp.callhome.registration.Registration` once
        registered: at once when it is, else at the next registration."""
        if self.registration is not None and self.state is CallHomeState.REGISTERED:
            return succeed(self.registration)
        d: Deferred[Registration] = Deferred(self._registered_waiters.remove)
        self._registered_waiters.append(d)
        return d

    def when_disconnected(self) -> Deferred[str]:
        """Fires with the reason when the next registered connection ends."""
        d: Deferred[str] = Deferred(self._disconnected_waiters.remove)
        self._disconnected_waiters.append(d)
        return d

    @property
    def connection(self) -> Any:
        """The registered connection (a
        :class:`~coaptcp.client.connectors.ClientConnection`), or ``None``."""
        return self._session if self.state is CallHomeState.REGISTERED else None

    @property
    def retry_at(self) -> float | None:
        """When the next attempt is due (reactor seconds), while backing off."""
        if self.state is not CallHomeState.WAITING or self._call is None:
            return None
        when: float = self._call.getTime()
        return when

    # -- talking to the back end ----------------------------------------------------------

    def request(
        self,
        method: str | int,
        path: str,
        payload: bytes = b"",
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        timeout: float | None = _DEFAULT,
    ) -> Deferred[Response]:
        """Send a request to the back end over the registered connection.

        ``path`` is a path on the back end (``/config?v=2``) or a URI of the same
        endpoint.  Fails with :class:`~coaptcp.callhome.registration.NotRegistered` when
        not registered, and as :meth:`coaptcp.client.Client.request` does otherwise.
        """
        client = self._client
        if client is None or self.state is not CallHomeState.REGISTERED:
            return fail(NotRegistered(f"not registered with {self.directory.origin}"))
        try:
            target = self.directory.resolve(path)
        except ValueError as error:
            return fail(error)
        if timeout is _DEFAULT:
            timeout = self.request_timeout
        return client.request(method, target, payload, options=options, timeout=timeout)

    def ping(self) -> Deferred[float]:
        """Ping the back end over the registered connection (RFC 8323 section 5.4); fires
        with the round-trip time in seconds."""
        client = self._client
        if client is None or self.state is not CallHomeState.REGISTERED:
            return fail(NotRegistered(f"not registered with {self.directory.origin}"))
        return client.ping(self.directory.origin, timeout=self.ping_timeout)

    def observe(
        self,
        path: str,
        callback: Callable[[Response], object],
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
    ) -> BackendObservation:
        """Observe a back-end resource (RFC 7641) on every registered connection.

        ``callback`` gets each notification.  The GET is registered at once when
        registered, else at the next registration, and again on every new connection
        (see :class:`~coaptcp.callhome.observations.BackendObservation`).  Raises
        ``ValueError`` for a path elsewhere and
        :class:`~coaptcp.callhome.registration.CallHomeError` beyond
        ``max_observations``.
        """
        if len(self._observations) >= self.max_observations:
            raise CallHomeError(
                f"already {len(self._observations)} observations of the back end "
                "(max_observations)"
            )
        target = self.directory.resolve(path)
        given = options if isinstance(options, Options) else Options(options)
        observation = BackendObservation(
            target, given, callback, self._observations.remove, self.request_timeout
        )
        self._observations.append(observation)
        if self._client is not None and self.state is CallHomeState.REGISTERED:
            observation.start(self._client)
        return observation

    @property
    def observations(self) -> list[BackendObservation]:
        """The back-end observations held (not ended)."""
        return list(self._observations)

    # -- the service ----------------------------------------------------------------------

    def startService(self) -> None:
        """Call home now (RFC 8323 section 3.3, RFC 9176 section 5.3)."""
        super().startService()
        self._client = Client(
            self.reactor,
            connectors=self._connectors,
            connect_options=self.connect_options,
            idle_timeout=None,  # the connection is the device's reachability: never idle
            keepalive=self.keepalive,
            ping_timeout=self.ping_timeout,
            timeout=self.request_timeout,
        )
        self.failures = 0
        self.log.info("Calling home to {uri}", uri=str(self.directory.uri))
        self._connect()

    def stopService(self) -> Deferred[None]:
        """Remove the registration (DELETE to its location, RFC 9176 section 5.3.2) if
        registered, then release the connection (RFC 8323 section 5.5); fires when it
        has closed.  Nothing is retried any more."""
        super().stopService()
        self._generation += 1
        self._cancel_timer()
        operation, self._operation = self._operation, None
        if operation is not None:
            operation.cancel()
        for observation in self._observations:
            observation.detach()
        client, self._client = self._client, None
        registration = self._end_session("call home stopped")
        self.state = CallHomeState.STOPPED
        done: Deferred[Any] = succeed(None)
        if client is None:
            return done
        if registration is not None and client.connection_for(self.directory.origin):
            done = client.request(
                Code.DELETE,
                self.directory.location_uri(registration.location),
                timeout=self.deregister_timeout,
            )
            done.addCallbacks(self._deregistered, self._deregister_failed,
                              callbackArgs=(registration,), errbackArgs=(registration,))
        done.addCallback(lambda _: client.close())
        return done

    def _deregistered(self, response: Response, registration: Registration) -> None:
        self.log.info("Removed the registration {location}: {code}",
                      location=registration.path, code=response.code.dotted)

    def _deregister_failed(self, failure: Failure, registration: Registration) -> None:
        self.log.info("Could not remove the registration {location}: {error}",
                      location=registration.path, error=failure_reason(failure))
