"""A reverse proxy to the registered endpoints: ``/ep/NAME/...`` reaches the device
registered as NAME over the connection it called in on (RFC 9176 section 5, RFC 8323
section 3.3, RFC 7252 section 5.7.3).

::

    directory = install_directory(root)
    root.putChild("ep", EndpointProxy(directory))

A request for ``/ep/node1/sensors/temp?u=c``, over any transport (TCP, TLS, WebSockets,
UDP), goes to ``/sensors/temp?u=c`` of the device registered as ``node1``, as a new
request on the device's own connection (a new token; the answer goes back with the
downstream token).  It is the reverse proxy's upstream side
(:class:`~coaptcp.proxy.upstream.Upstream`): option rules and Hop-Limit, bounds, and
Observe through the proxy with one upstream observation per resource shared by its
observers and re-sequenced for each downstream side (RFC 7641 section 5, RFC 8323
section 7).

What a client gets when the device is not there:

* 4.04 with a diagnostic: no endpoint of that name was ever registered, or it was
  removed (a DELETE) or expired;
* 5.04 with a diagnostic: its connection ended (a request sent then fails at once, and
  every observation through the proxy ends with 5.04), or it did not answer in time;
* 5.02 with a diagnostic: it registered over UDP, without a connection (only devices
  that registered over TCP, TLS or WebSockets are reachable this way);
* 5.03 with Max-Age: the requests in flight for one endpoint, or in total, or the
  observations reached their bound (logged once per bound).

Bodies go whole on the device's connection (no block-wise transfer on that side: a
reliable transport carries messages up to the peer's Max-Message-Size, RFC 8323
section 5.3.1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.client import RequestTimeout
from coaptcp.client.observe import Observation
from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.proxying import ProxyRefusal, travelling_options
from coaptcp.core.uri import CoapUri
from coaptcp.proxy.upstream import DEFAULT_UPSTREAM_TIMEOUT, Upstream, refusal
from coaptcp.server import Request, Resource, Response

if TYPE_CHECKING:
    from coaptcp.channel.observing import ChannelObservation
    from coaptcp.server import Site

__all__ = [
    "DEFAULT_ENDPOINT_PREFIX",
    "DEFAULT_MAX_GONE",
    "DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT",
    "Directory",
    "EndpointClient",
    "EndpointGone",
    "EndpointLimits",
    "EndpointProxy",
    "EndpointUpstream",
    "PeerConnection",
    "RegisteredEndpoint",
]

#: Where the endpoints are served by default (``twistd coaptcp --rd-proxy-prefix``).
DEFAULT_ENDPOINT_PREFIX = "/ep"
#: Requests in flight to one endpoint at once.
DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT = 16
#: Endpoint names remembered after their registration ended (to tell "gone" from "never").
DEFAULT_MAX_GONE = 1024
_SCHEME = "coap+tcp"
_EVERY_METHOD = ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH")


class EndpointGone(CoapTcpError):
    """The registration a request was for has no connection (any more)."""


class PeerConnection(Protocol):
    """What the proxy uses of a registered device's connection (a
    :class:`~coaptcp.channel.Channel`)."""

    def request(
        self, method: Code, options: Options = ..., payload: bytes = ..., *,
        timeout: float | None = ...,
    ) -> Deferred[Response]:
        """Send a request to the peer (RFC 8323 section 3.3)."""
        ...

    def observe(
        self, options: Options, *, on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
    ) -> ChannelObservation:
        """Observe a resource of the peer (RFC 7641, RFC 8323 section 7)."""
        ...


class RegisteredEndpoint(Protocol):
    """What the proxy uses of a registration (a
    :class:`~coaptcp.directory.Registration`, RFC 9176 section 3.3)."""

    @property
    def endpoint(self) -> str:
        """The endpoint name (``ep``)."""
        ...

    @property
    def key(self) -> str:
        """The unique last segment of its location."""
        ...

    @property
    def base(self) -> str:
        """Its base URI."""
        ...

    @property
    def connection(self) -> Any:
        """The connection it was made over (a :class:`PeerConnection`), or ``None``."""
        ...


class Directory(Protocol):
    """What the proxy uses of a resource directory (a
    :class:`~coaptcp.directory.ResourceDirectory`)."""

    @property
    def reactor(self) -> Any:
        """Its clock."""
        ...

    def find(self, endpoint: str, sector: str | None = None) -> Any:
        """The registration of ``endpoint`` in ``sector``, or ``None``."""
        ...

    def find_all(self, endpoint: str) -> Sequence[Any]:
        """The registrations of ``endpoint`` in every sector."""
        ...

    def find_by_key(self, key: str) -> Any:
        """The registration whose location ends in ``key``, or ``None``."""
        ...

    def add_listener(
        self, on_registered: Callable[[Any], None] | None = None,
        on_gone: Callable[[Any, str], None] | None = None,
    ) -> Callable[[], None]:
        """Hear of each registration made and ended."""
        ...


class EndpointLimits:
    """The bounds of an :class:`EndpointProxy` (each a positive number).

    :param timeout: seconds a device may take to answer (then 5.04).
    :param max_in_flight: requests in flight to all endpoints together.
    :param max_in_flight_per_endpoint: requests in flight to one endpoint.
    :param max_observations: upstream observations at once (shared by their observers).
    :param max_observers: downstream observers of one upstream observation.
    :param max_gone: ended endpoints remembered, to answer 5.04 rather than 4.04.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        max_in_flight: int = 1024,
        max_in_flight_per_endpoint: int = DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
        max_observations: int = 1024,
        max_observers: int | None = None,
        max_gone: int = DEFAULT_MAX_GONE,
    ) -> None:
        for name, value in (("timeout", timeout), ("max_in_flight", max_in_flight),
                            ("max_in_flight_per_endpoint", max_in_flight_per_endpoint),
                            ("max_observations", max_observations), ("max_gone", max_gone)):
            if not value > 0:
                raise ValueError(f"EndpointLimits.{name} must be positive, not {value!r}")
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_endpoint = max_in_flight_per_endpoint
        self.max_observations = max_observations
        self.max_observers = max_observers
        self.max_gone = max_gone


class EndpointClient:
    """The upstream "client" of :class:`EndpointUpstream`: it sends each request on the
    connection of the registration its target names (the target's host is the
    registration's key, its path and query those of the device's resource)."""

    def __init__(self, directory: Directory, reactor: Any) -> None:
        self.directory = directory
        self.reactor = reactor

    def connection(self, target: CoapUri) -> PeerConnection:
        """The connection of the registration ``target`` names; raises
        :class:`EndpointGone` when it has gone."""
        registration: RegisteredEndpoint | None = self.directory.find_by_key(target.host)
        if registration is None or registration.connection is None:
            raise EndpointGone(f"{target.uri_host or 'the endpoint'} is not connected")
        connection: PeerConnection = registration.connection
        return connection

    def request(
        self, method: Code, target: CoapUri, payload: bytes = b"", *,
        options: Options, timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send the request on the device's connection (RFC 8323 section 3.3)."""
        try:
            connection = self.connection(target)
        except EndpointGone:
            return fail()
        sent = connection.request(Code(method), _with_uri(options, target.path, target.query),
                                  payload, timeout=timeout)
        return sent.addErrback(_timed_out, target)

    def observe(
        self, target: CoapUri, *, options: Options, callback: Callable[[Response], object],
        reregister: bool = False, timeout: float | None = None,
    ) -> Observation:
        """Observe the device's resource on its connection (RFC 8323 section 7).  A lost
        connection ends the observation (there is no other way to the device), whatever
        ``reregister`` says."""

        def register(observation: Observation) -> Deferred[ChannelObservation]:
            try:
                connection = self.connection(target)
                return succeed(connection.observe(
                    _with_uri(options, target.path, target.query),
                    on_notification=observation.notification, on_end=observation.channel_ended,
                ))
            except Exception:
                return fail()

        return Observation(
            self.reactor, register, callback=callback, reregister=False, timeout=timeout,
            timeout_error=lambda: RequestTimeout(
                f"no response from {target.uri_host} within {timeout} s"),
        )


def _with_uri(options: Options, path: Sequence[str], query: Sequence[str]) -> Options:
    """``options`` with ``path`` as its Uri-Path and ``query`` as its Uri-Query."""
    items: list[tuple[int, bytes | str | int]] = [
        (number, value) for number, value in options
        if number not in (OptionNumber.URI_PATH, OptionNumber.URI_QUERY)
    ]
    items.extend((OptionNumber.URI_PATH, segment) for segment in path)
    items.extend((OptionNumber.URI_QUERY, argument) for argument in query)
    return Options(items)


def _timed_out(failure: Failure, target: CoapUri) -> Failure:
    if failure.check(TimeoutError):
        return Failure(RequestTimeout(f"no response from {target.uri_host} in time"))
    return failure


class EndpointUpstream(Upstream):
    """The upstream side of :class:`EndpointProxy`: an
    :class:`~coaptcp.proxy.upstream.Upstream` on an :class:`EndpointClient`, where a
    connection that ended is 5.04 (no answer will come) rather than 5.02."""

    def failed(self, failure: Failure, uri: str) -> Response:
        """5.04 for a device whose connection has gone; the rest as the proxy does."""
        error = failure.value
        if isinstance(error, EndpointGone | ConnectionClosedError):
            return refusal(Code.GATEWAY_TIMEOUT, f"{uri}: the endpoint's connection ended "
                                                 f"({error})")
        return super().failed(failure, uri)


class EndpointProxy(Resource):
    """``/PREFIX/NAME/...``: the resources of the endpoint registered as NAME (see the
    module).

    :param directory: the resource directory whose registrations are reached.
    :param limits: the bounds (:class:`EndpointLimits`).
    """

    isLeaf = True
    forwards_answers = True  # the origin had the Accept (RFC 7252 section 5.10.4)
    observable = True
    log = Logger()

    def __init__(
        self, directory: Directory, limits: EndpointLimits | None = None,
        *, reactor: Any = None,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.limits = limits if limits is not None else EndpointLimits()
        limits = self.limits
        reactor = reactor if reactor is not None else directory.reactor
        self.upstream = EndpointUpstream(
            EndpointClient(directory, reactor),
            reactor=reactor, cache=None, timeout=limits.timeout,
            max_in_flight=limits.max_in_flight,
            max_in_flight_per_peer=limits.max_in_flight,
            max_observations=limits.max_observations, max_observers=limits.max_observers,
        )
        #: Requests in flight, by endpoint name.
        self.in_flight: dict[str, int] = {}
        self._gone: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._stop_listening = directory.add_listener(self._registered, self._ended)

    def close(self) -> None:
        """Stop following the directory."""
        self._stop_listening()

    # -- the directory's news ---------------------------------------------------------

    def _registered(self, registration: RegisteredEndpoint) -> None:
        self._gone.pop(registration.endpoint, None)

    def _ended(self, registration: RegisteredEndpoint, reason: str) -> None:
        if self.directory.find_all(registration.endpoint):
            return  # another sector still holds the name
        self._gone.pop(registration.endpoint, None)
        self._gone[registration.endpoint] = (reason, reason.startswith("its connection"))
        while len(self._gone) > self.limits.max_gone:
            self._gone.popitem(last=False)

    # -- requests -----------------------------------------------------------------------

    def find(self, name: str) -> RegisteredEndpoint:
        """The registration of ``name`` (the one without a sector, or the only one);
        raises :class:`~coaptcp.core.proxying.ProxyRefusal` (4.04, 5.04, 5.02)."""
        registration: RegisteredEndpoint | None = self.directory.find(name)
        if registration is None:
            found = self.directory.find_all(name)
            if len(found) > 1:
                raise ProxyRefusal(Code.NOT_FOUND, f"{name!r} is registered in "
                                                   f"{len(found)} sectors; ambiguous")
            registration = found[0] if found else None
        if registration is None:
            gone = self._gone.get(name)
            if gone is None:
                raise ProxyRefusal(Code.NOT_FOUND, f"no endpoint {name!r} is registered")
            reason, connection_ended = gone
            if connection_ended:
                raise ProxyRefusal(Code.GATEWAY_TIMEOUT, f"endpoint {name!r} is gone: {reason}")
            raise ProxyRefusal(Code.NOT_FOUND, f"endpoint {name!r} is no longer registered: "
                                               f"{reason}")
        if registration.connection is None:
            raise ProxyRefusal(Code.BAD_GATEWAY, f"endpoint {name!r} registered over UDP, "
                               f"without a connection; only endpoints registered over TCP, "
                               f"TLS or WebSockets are reachable here (its base is "
                               f"{registration.base})")
        return registration

    def render(self, request: Request) -> Response | Deferred[Response]:
        """Forward ``request`` to the endpoint its first path segment names."""
        if not request.postpath or not request.postpath[0]:
            return refusal(Code.NOT_FOUND, "name an endpoint: /ep/NAME/PATH")
        name, rest = request.postpath[0], tuple(request.postpath[1:])
        try:
            registration = self.find(name)
            options = travelling_options(request.options)
        except ProxyRefusal as refused:
            return refusal(refused.code, refused.diagnostic)
        held = self.in_flight.get(name, 0)
        if held >= self.limits.max_in_flight_per_endpoint:
            return self.upstream.busy("requests in flight per endpoint", f"{held} to {name}")
        target = CoapUri(_SCHEME, registration.key, 0, rest, tuple(request.query),
                         uri_host=name)
        uri = "/".join(("", *request.prepath, *request.postpath))
        if request.query:
            uri += "?" + "&".join(request.query)
        answer = self.upstream.forward(request, uri, lambda: self._locate(name, target),
                                       options)
        if not isinstance(answer, Deferred):
            return answer
        self.in_flight[name] = held + 1  # until it is answered (at once, or later)
        return answer.addBoth(self._done, name)

    def _locate(self, name: str, target: CoapUri) -> CoapUri:
        """The target once more when the request leaves: the device may have gone."""
        registration = self.find(name)
        if registration.key != target.host:
            return CoapUri(_SCHEME, registration.key, 0, target.path, target.query,
                           uri_host=name)
        return target

    def _done(self, result: Any, name: str) -> Any:
        left = self.in_flight.get(name, 1) - 1
        if left > 0:
            self.in_flight[name] = left
        else:
            self.in_flight.pop(name, None)
        return result

    def handle_observe(
        self, site: Site, request: Request, observe: int
    ) -> Response | Deferred[Response]:
        """Observe through the proxy: one upstream observation per resource."""
        return self.render(request)

    def allowed_methods(self) -> list[str]:
        """Every method: the device answers 4.05 itself where it must."""
        return list(_EVERY_METHOD)
