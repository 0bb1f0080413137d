"""The upstream side of the proxy, shared by the forward and the reverse proxy (RFC 7252
section 5.7, RFC 8323 section 8 for the reliable schemes).

An :class:`Upstream` sends a proxied request with its :class:`~coaptcp.client.Client`,
which gives it a new token (and message ID over UDP) and runs block-wise transfer on
the upstream side with that side's sizes.  It answers fresh GETs from its cache and
validates stale ones with their ETag, maps upstream failures to 5.02 Bad Gateway and
timeouts to 5.04 Gateway Timeout (section 5.7.1), bounds the requests in flight per
downstream peer and in total (5.03 with Max-Age), and hands GETs with Observe to its
:class:`~coaptcp.proxy.observe.ObservationTable` (one upstream observation per
resource, RFC 7641 section 5 and RFC 8323 section 7).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.reactor import default_reactor
from coaptcp.client import RequestTimeout
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.proxying import ProxyRefusal
from coaptcp.core.udp.layer import LimitError
from coaptcp.core.uri import CoapUri
from coaptcp.proxy.cache import CacheKey, ResponseCache
from coaptcp.proxy.observe import (
    DEFAULT_MAX_OBSERVATIONS,
    ObservationTable,
    UpstreamClient,
    relayed,
)
from coaptcp.server import Request, Response

if TYPE_CHECKING:
    from coaptcp.server.counts import EventCounts

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_IN_FLIGHT_PER_PEER",
    "DEFAULT_UPSTREAM_TIMEOUT",
    "Locate",
    "Upstream",
    "UpstreamClient",
    "refusal",
]

#: Upstream requests in flight at once, in total and for one downstream peer address.
DEFAULT_MAX_IN_FLIGHT = 1024
DEFAULT_MAX_IN_FLIGHT_PER_PEER = 64
#: Seconds an upstream request may take before the answer is 5.04 (MAX_TRANSMIT_WAIT of
#: RFC 7252 is 93 s; a downstream client rarely waits that long).
DEFAULT_UPSTREAM_TIMEOUT = 30.0
_RETRY_AFTER = 5
_ETAG = OptionNumber.ETAG
#: Methods that may change the resource (RFC 7252 section 5.1, RFC 8132 section 1), and
#: the answers after which a stored response for it is not fresh (RFC 7252 sections
#: 5.9.1.2 and 5.9.1.4; 2.01 Created as well, as a PUT may replace what was there).
_UNSAFE = frozenset({Code.POST, Code.PUT, Code.DELETE, Code.PATCH, Code.IPATCH})
_CHANGED = frozenset({Code.CREATED, Code.DELETED, Code.CHANGED})

#: Where a request goes: the upstream URI now, or a Deferred for it (after resolving a
#: name and checking the address); failing with :class:`ProxyRefusal` refuses it.
Locate = Callable[[], "CoapUri | Deferred[CoapUri]"]


def refusal(code: Code, diagnostic: str) -> Response:
    """A response the proxy gives itself: ``code`` with a diagnostic payload."""
    return Response(code, diagnostic.encode("utf-8"))


class Upstream:
    """Sends proxied requests on, with bounds, a cache and shared observations.

    :param client: the client that makes the upstream requests (one pool of upstream
        connections for every downstream peer).
    :param cache: fresh responses to GET; ``None`` for no caching.
    :param max_observations: upstream observations at once (each fans out to up to
        ``max_observers`` downstream observers).
    """

    log = Logger()
    #: Counts upstream requests, their latency and errors, and the limits reached, when
    #: the server exports metrics (:mod:`coaptcp.server.counts`); ``None`` otherwise.
    counts: EventCounts | None = None

    def __init__(
        self,
        client: UpstreamClient,
        *,
        reactor: Any = None,
        cache: ResponseCache | None = None,
        timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_per_peer: int = DEFAULT_MAX_IN_FLIGHT_PER_PEER,
        max_observations: int = DEFAULT_MAX_OBSERVATIONS,
        max_observers: int | None = None,
    ) -> None:
        self.client = client
        self.reactor = default_reactor(reactor)
        self.cache = cache
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_peer = max_in_flight_per_peer
        self.in_flight = 0
        self.observations = ObservationTable(
            client,
            self.reactor,
            timeout=timeout,
            max_observations=max_observations,
            max_observers=max_observers,
            busy=self.busy,
            failed=self.failed,
        )
        self._per_peer: dict[Hashable, int] = {}
        self._limits_logged: set[str] = set()

    def forward(
        self, request: Request, uri: str, locate: Locate, options: Options
    ) -> Response | Deferred[Response]:
        """Answer ``request`` from upstream: ``uri`` names the resource (the cache key),
        ``locate`` says where to send it, ``options`` are the options that travel."""
        key = ResponseCache.key(uri, options)
        if request.method == Code.GET and request.channel is not None:
            observe = request.options.observe
            if observe is not None:
                handled = self.observations.handle(request, key, uri, locate, options, observe)
                if handled is not None:
                    return handled
        cached = request.method == Code.GET and self.cache is not None
        if cached:
            assert self.cache is not None
            found = self.cache.lookup(key, self.reactor.seconds())
            if found.fresh is not None:
                return _answer_validation(found.fresh, request.options.etag)
            etag = found.etag
            if etag is not None and etag not in options.etag:
                options = options.add(_ETAG, etag)
        peer = _peer_key(request)
        busy = self._admit(peer)
        if busy is not None:
            return busy
        answer: Deferred[Any] = maybeDeferred(locate)
        answer.addCallback(self._send, request, options)
        answer.addErrback(self.failed, uri)
        if cached:
            answer.addCallback(self._keep, key, request.options.etag)
        elif self.cache is not None and request.method in _UNSAFE:
            answer.addCallback(self._changed, uri)
        answer.addBoth(self._done, peer)
        return answer

    # -- bounds ---------------------------------------------------------------------------

    def _admit(self, peer: Hashable) -> Response | None:
        held = self._per_peer.get(peer, 0)
        if self.in_flight >= self.max_in_flight:
            return self.busy("proxy requests in flight", f"{self.in_flight} in flight")
        if held >= self.max_in_flight_per_peer:
            return self.busy("proxy requests in flight per peer", f"{held} from {peer}")
        self.in_flight += 1
        self._per_peer[peer] = held + 1
        return None

    def busy(self, limit: str, detail: str) -> Response:
        """5.03 with Max-Age for a reached ``limit``, logged once per limit."""
        if self.counts is not None:
            self.counts.limit_reached("proxy_" + limit.removeprefix("proxy ").replace(" ", "_"))
        if limit not in self._limits_logged:
            self._limits_logged.add(limit)
            self.log.warn("Proxy limit reached: {limit} ({detail})", limit=limit, detail=detail)
        return Response(
            Code.SERVICE_UNAVAILABLE,
            f"{limit}: limit reached; retry later".encode(),
            options=Options([(OptionNumber.MAX_AGE, _RETRY_AFTER)]),
        )

    def _done(self, result: Response, peer: Hashable) -> Response:
        self.in_flight -= 1
        left = self._per_peer[peer] - 1
        if left:
            self._per_peer[peer] = left
        else:
            del self._per_peer[peer]
        return result

    # -- upstream -------------------------------------------------------------------------

    def _send(self, target: CoapUri, request: Request, options: Options) -> Deferred[Response]:
        sent: Deferred[Response] = self.client.request(
            request.method, target, request.payload, options=options, timeout=self.timeout
        )
        counts = self.counts
        if counts is not None:
            counts.upstream_requests += 1
            sent.addCallback(self._timed, counts, self.reactor.seconds())
        return sent.addCallback(relayed)

    def _timed(self, response: Any, counts: EventCounts, sent_at: float) -> Any:
        counts.upstream_answered(self.reactor.seconds() - sent_at)
        return response

    def failed(self, failure: Failure, uri: str) -> Response:
        """The downstream answer when the upstream side of ``uri`` failed."""
        error = failure.value
        counts = self.counts
        if isinstance(error, ProxyRefusal):
            if counts is not None:
                counts.upstream_failed("refused")
            return refusal(error.code, error.diagnostic)
        if failure.check(RequestTimeout):
            if counts is not None:
                counts.upstream_failed("timeout")
            return refusal(Code.GATEWAY_TIMEOUT, f"no answer from {uri} in time")
        if counts is not None:
            counts.upstream_failed("overloaded" if isinstance(error, LimitError) else "bad_gateway")
        if isinstance(error, LimitError):
            # Our own upstream client is full (its queue behind NSTART, its requests in
            # total): the proxy is overloaded, not the origin, so 5.03 with Max-Age says
            # when to come back (RFC 7252 section 5.9.3.4) where 5.02 would blame the origin.
            return self.busy(f"upstream {error.limit}", str(error))
        self.log.info("Upstream request to {uri} failed: {error}", uri=uri,
                      error=failure.getErrorMessage())
        return refusal(Code.BAD_GATEWAY, f"upstream {uri}: {failure.getErrorMessage()}")

    def _keep(self, response: Response, key: CacheKey, etags: tuple[bytes, ...]) -> Response:
        assert self.cache is not None
        now = self.reactor.seconds()
        if response.code == Code.VALID:
            stored = self.cache.revalidate(key, response, now)
            if stored is not None:  # our validation: the stored response is fresh again
                return _answer_validation(stored, etags)
            return response  # the downstream client's own validation
        self.cache.put(key, response, now)
        return response

    def _changed(self, response: Response, uri: str) -> Response:
        """An unsafe request for ``uri`` succeeded: what is stored for it is not fresh."""
        if response.code in _CHANGED:
            assert self.cache is not None
            self.cache.invalidate(uri, self.reactor.seconds())
        return response


def _answer_validation(response: Response, etags: tuple[bytes, ...]) -> Response:
    """``response``, or 2.03 Valid when the client asked with its ETag (RFC 7252 5.10.6.2)."""
    stored = response.options.etag
    if etags and stored and stored[0] in etags:
        options = Options([(_ETAG, stored[0])])
        max_age = response.options.max_age
        if max_age is not None:
            options = options.add(OptionNumber.MAX_AGE, max_age)
        return Response(Code.VALID, b"", options=options)
    return response


def _peer_key(request: Request) -> Hashable:
    peer = request.peer
    return getattr(peer, "host", None) or id(request.channel)
