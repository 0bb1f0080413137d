"""Observe through the proxy: one upstream observation per resource, however many
downstream observers (RFC 7641 section 5, RFC 8323 section 7).

The first downstream GET with Observe=0 for an upstream resource makes a
:class:`ProxiedObservation`, which observes the resource upstream with the proxy's
:class:`~coaptcp.client.Client`.  Every further observer of the same resource (the same
upstream URI and cache-key options) is registered on it and shares that upstream
observation.  A :class:`ProxiedObservation` is an
:class:`~coaptcp.server.observe.ObservableResource`, so the downstream side is the
server's own Observe machinery: each notification from upstream is sent to every
downstream observer with the proxied observation's own Observe sequence (so
notifications that arrived over UDP are re-sequenced for a reliable transport, RFC 8323
section 7), and a slow reader gets the latest state when it catches up.

An error from upstream ends every downstream observation with that error; a lost
upstream (no first answer in time, a failed re-registration) ends them with 5.04 or
5.02.  When no notification comes within the Max-Age of the last one (and a few seconds
more), the proxy registers upstream again (RFC 7641 section 3.3.1); a device that has
gone then shows as 5.04 downstream rather than as silence.  When the last downstream
observer leaves, the upstream observation is cancelled
(GET with Observe=1 on reliable transports, RFC 8323 section 7.4; a Reset over UDP,
RFC 7641 section 3.6).  Upstream observations are bounded in number (5.03 beyond), and
the downstream observers of one by ``max_observers`` (beyond, a GET is answered without
being registered, as RFC 7641 section 4.1 allows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.core.options import OptionNumber, Options
from coaptcp.server import Request, Response
from coaptcp.server.observe import (
    DEFAULT_MAX_OBSERVERS,
    ObservableResource,
    ObservationRegistry,
    Observer,
    ObserverConnection,
    observe_request,
)
from coaptcp.server.resource import Resource, Site

if TYPE_CHECKING:
    from coaptcp.client import Observation
    from coaptcp.core.codes import Code
    from coaptcp.core.message import Message
    from coaptcp.core.uri import CoapUri
    from coaptcp.proxy.cache import CacheKey

__all__ = [
    "DEFAULT_MAX_OBSERVATIONS",
    "REREGISTER_GRACE",
    "ObservationTable",
    "ProxiedObservation",
    "UpstreamClient",
    "relayed",
]

#: Upstream observations the proxy keeps at once.
DEFAULT_MAX_OBSERVATIONS = 1024
#: Seconds past a notification's Max-Age before the proxy registers upstream again.
REREGISTER_GRACE = 5
#: Response options that belong to one side of the proxy (RFC 7959 section 2.10,
#: RFC 7641 section 2: the Observe sequence is the proxy's own downstream).
_HOP_BY_HOP = (
    OptionNumber.BLOCK1,
    OptionNumber.BLOCK2,
    OptionNumber.SIZE1,
    OptionNumber.SIZE2,
    OptionNumber.OBSERVE,
)


class UpstreamClient(Protocol):
    """What :class:`~coaptcp.proxy.upstream.Upstream` and the observations use of their
    client: a :class:`~coaptcp.client.Client`, or
    :class:`~coaptcp.proxy.endpoints.EndpointClient` for registered devices."""

    def request(
        self, method: Code, uri: CoapUri, payload: bytes = ..., *, options: Options,
        timeout: float | None = ...,
    ) -> Deferred[Response]:
        """Send a request to ``uri``; fires with its response (RFC 7252 section 5.7.2)."""
        ...

    def observe(
        self, uri: CoapUri, *, options: Options, callback: Callable[[Response], object],
        reregister: bool = ..., timeout: float | None = ...,
    ) -> Observation:
        """Observe the resource at ``uri`` (RFC 7641)."""
        ...


def relayed(upstream: Response) -> Response:
    """The downstream response for an upstream one: the same code, payload and
    end-to-end options (block-wise options and Observe belong to the upstream side)."""
    options = upstream.options
    for number in _HOP_BY_HOP:
        if number in options:
            options = options.remove(number)
    return Response(upstream.code, upstream.payload, options=options)


class ProxiedObservation(ObservableResource):
    """One upstream observation and its downstream observers (see the module)."""

    log = Logger()

    def __init__(
        self, table: ObservationTable, key: CacheKey, uri: str, locate: Callable[[], Any],
        options: Options,
    ) -> None:
        super().__init__()
        self.table = table
        self.key = key
        self.uri = uri
        #: Whether upstream registered us (the first response carried Observe).
        self.observing = False
        #: Whether the upstream observation is over.
        self.ended = False
        #: The latest response from upstream, as sent downstream.
        self.latest: Response | None = None
        #: How many notifications came from upstream (the first response included).
        self.received = 0
        self.upstream: Observation | None = None
        #: How many times the resource was registered upstream again after a silence.
        self.reregistrations = 0
        self._first: list[Deferred[None]] = []
        self._pending = 0
        self._full_logged = False
        self._options = options
        self._target: CoapUri | None = None
        self._generation = 0
        self._fresh_until: Any = None
        located: Deferred[Any] = maybeDeferred(locate)
        located.addCallback(self._observe)
        located.addErrback(self._lost, 0)

    # -- upstream -------------------------------------------------------------------------

    def _observe(self, target: CoapUri) -> None:
        if self.ended:
            return
        self._target = target
        self._generation += 1
        generation = self._generation
        table = self.table
        self.upstream = table.client.observe(
            target, options=self._options, reregister=True, timeout=table.timeout,
            callback=lambda response: self._notified(response, generation),
        )
        self.upstream.when_ended().addCallbacks(
            self._upstream_ended, self._lost, callbackArgs=(generation,),
            errbackArgs=(generation,),
        )

    def _notified(self, response: Response, generation: int) -> None:
        if generation != self._generation or self.ended:
            return
        self.received += 1
        self.latest = relayed(response)
        observing = response.code.is_successful and response.options.observe is not None
        if self.received == 1:
            self.observing = observing
            if observing:
                self._keep_fresh(response)
            self._first_known()
            return
        if not self.observing:
            return
        if not observing:
            # Upstream ends the observation with this response (RFC 7641 3.2, 3.3.2).
            self._end()
            if response.code.is_successful:
                self._release_observers()
                return
        else:
            self._keep_fresh(response)
        self.notify()

    def _keep_fresh(self, response: Response) -> None:
        """Register again if no notification comes within the Max-Age of this one (RFC
        7641 section 3.3.1: upstream may have lost us, or gone without a word)."""
        if self._fresh_until is not None and self._fresh_until.active():
            self._fresh_until.cancel()
        max_age = response.options.max_age
        delay = (60 if max_age is None else max_age) + REREGISTER_GRACE
        self._fresh_until = self.table.reactor.callLater(delay, self._register_again)

    def _register_again(self) -> None:
        self._fresh_until = None
        if self.ended or self._target is None:
            return
        self.reregistrations += 1
        stale = self.upstream
        self._observe(self._target)  # a new generation: the old one is ignored from now
        if stale is not None and not stale.ended:
            stale.cancel()

    def _upstream_ended(self, _: object, generation: int) -> None:
        """The upstream observation ended without an error: cancelled by us, or ended by
        upstream (an error response, or a response without Observe)."""
        if generation != self._generation:
            return
        self._end()
        latest = self.latest
        if latest is not None and not latest.code.is_successful:
            self.notify()  # the error ends each downstream observation (RFC 7641 3.2)
        else:
            self._release_observers()

    def _lost(self, failure: Failure, generation: int) -> None:
        if generation != self._generation or (self.ended and self.latest is not None):
            return
        self._end()
        self.latest = self.table.failed(failure, self.uri)
        self._first_known()
        self.notify()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.table.forget(self)
        if self._fresh_until is not None and self._fresh_until.active():
            self._fresh_until.cancel()
        self._fresh_until = None

    def _first_known(self) -> None:
        waiting, self._first = self._first, []
        for waiter in waiting:
            waiter.callback(None)

    def _release_observers(self) -> None:
        """Deregister every downstream observer without a final notification; each will
        register again once its Max-Age has passed (RFC 7641 section 3.3.1)."""
        for observation in self.observations():
            registry = observation.channel
            if isinstance(registry, ObservationRegistry):
                registry.remove_observation(self, observation.token)
            self.remove_observer(observation.channel, observation.token)

    # -- downstream -----------------------------------------------------------------------

    def render(self, request: Request) -> Response:
        """The latest state from upstream (every notification re-renders this)."""
        latest = self.latest
        assert latest is not None
        return Response(latest.code, latest.payload, options=latest.options)

    def handle_observe(
        self, site: Site, request: Request, observe: int
    ) -> Response | Deferred[Response]:
        """Register (Observe=0) once the upstream state is known, or deregister (1)."""
        if observe == 1:
            self.remove_observer_of(request)
            return self.render(request)
        self._pending += 1
        waiting: Deferred[None] = Deferred()
        if self.latest is not None:
            waiting.callback(None)
        else:
            self._first.append(waiting)

        def known(_: None) -> Response | Deferred[Response]:
            if self.observing and not self.ended:
                return observe_request(site, self, request, 0)
            return self.render(request)

        answer: Deferred[Any] = waiting.addCallback(known)
        return answer.addBoth(self._registered)

    def remove_observer_of(self, request: Request) -> None:
        """Deregister the observer that registered with ``request``'s token."""
        registry = request.channel
        if isinstance(registry, ObservationRegistry):
            registry.remove_observation(self, request.token)

    def _registered(self, result: Any) -> Any:
        self._pending -= 1
        self._idle()
        return result

    def add_observer(self, channel: ObserverConnection, message: Message) -> Observer | None:
        """Register a downstream observer, up to the table's ``max_observers``."""
        if self.observer_count >= self.table.max_observers:
            if not self._full_logged:
                self._full_logged = True
                self.log.warn("Not registering further observers of {uri} through the "
                              "proxy: {count} already", uri=self.uri, count=self.observer_count)
            return None
        return super().add_observer(channel, message)

    def observer_removed(self, observation: Observer) -> None:
        """The upstream observation is cancelled when its last observer has gone."""
        self._idle()

    def _idle(self) -> None:
        if self.observer_count or self._pending or self.ended:
            return
        self._end()
        if self.upstream is not None and not self.upstream.ended:
            self.upstream.cancel()


class ObservationTable:
    """The proxy's upstream observations, by upstream resource (see the module)."""

    def __init__(
        self,
        client: UpstreamClient,
        reactor: Any,
        *,
        timeout: float,
        max_observations: int,
        max_observers: int | None,
        busy: Callable[[str, str], Response],
        failed: Callable[[Failure, str], Response],
    ) -> None:
        self.client = client
        self.reactor = reactor
        self.timeout = timeout
        self.max_observations = max_observations
        self.max_observers = DEFAULT_MAX_OBSERVERS if max_observers is None else max_observers
        self.busy = busy
        self.failed = failed
        self._site = Site(Resource(), well_known_core=False)
        self._observations: dict[CacheKey, ProxiedObservation] = {}

    def __len__(self) -> int:
        return len(self._observations)

    def get(self, key: CacheKey) -> ProxiedObservation | None:
        """The upstream observation of ``key``, if there is one."""
        return self._observations.get(key)

    def handle(
        self,
        request: Request,
        key: CacheKey,
        uri: str,
        locate: Callable[[], Any],
        options: Options,
        observe: int,
    ) -> Response | Deferred[Response] | None:
        """Register or deregister ``request`` (a GET with Observe); ``None`` when it is to
        be forwarded as a plain GET (a deregistration of nothing we observe)."""
        observation = self._observations.get(key)
        if observe != 0:
            if observation is None or observation.latest is None:
                return None
            return observation.handle_observe(self._site, request, 1)
        if observation is None:
            if len(self._observations) >= self.max_observations:
                return self.busy("proxied observations", f"{len(self._observations)} upstream")
            observation = ProxiedObservation(self, key, uri, locate, options)
            if not observation.ended:
                self._observations[key] = observation
        return observation.handle_observe(self._site, request, 0)

    def forget(self, observation: ProxiedObservation) -> None:
        """``observation`` ended: the next observer of its resource starts a new one."""
        if self._observations.get(observation.key) is observation:
            del self._observations[observation.key]
