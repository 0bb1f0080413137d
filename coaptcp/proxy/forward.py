"""The forward proxy: requests with Proxy-Uri or Proxy-Scheme, sent on by a Client
(RFC 7252 section 5.7, RFC 8323 section 8 for the reliable schemes).

A :class:`ForwardProxy` answers the proxy requests a :class:`~coaptcp.server.Site`
hands it.  It works out the upstream URI and options (:mod:`coaptcp.core.proxying`),
checks the destination against its :class:`~coaptcp.proxy.policy.ProxyPolicy` after
resolving the name (5.05 with a diagnostic, and nothing sent, when it is not allowed),
answers fresh GETs from its cache, and otherwise sends the request with its
:class:`~coaptcp.client.Client`, which gives it a new token (and message ID over UDP)
and runs block-wise transfer on the upstream side with that side's sizes.  Upstream
failures map to 5.02 Bad Gateway and timeouts to 5.04 Gateway Timeout (section 5.7.1).
Requests in flight are bounded per downstream peer and in total (5.03 with Max-Age).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.reactor import default_reactor
from coaptcp.client import Client, RequestTimeout
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.proxying import ForwardedRequest, ProxyRefusal, forward_request
from coaptcp.core.uri import SCHEMES, CoapUri, UriError, parse_uri
from coaptcp.proxy.cache import ResponseCache
from coaptcp.proxy.policy import ProxyPolicy, resolve_host
from coaptcp.server import Request, Response

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_IN_FLIGHT_PER_PEER",
    "DEFAULT_UPSTREAM_TIMEOUT",
    "ForwardProxy",
]

#: Upstream requests in flight at once, in total and for one downstream peer address.
DEFAULT_MAX_IN_FLIGHT = 1024
DEFAULT_MAX_IN_FLIGHT_PER_PEER = 64
#: Seconds an upstream request may take before the answer is 5.04 (MAX_TRANSMIT_WAIT of
#: RFC 7252 is 93 s; a downstream client rarely waits that long).
DEFAULT_UPSTREAM_TIMEOUT = 30.0
_RETRY_AFTER = 5
#: Response options that belong to one side of the proxy (RFC 7959 section 2.10).
_HOP_BY_HOP = (
    OptionNumber.BLOCK1,
    OptionNumber.BLOCK2,
    OptionNumber.SIZE1,
    OptionNumber.SIZE2,
    OptionNumber.OBSERVE,
)


def _refusal(code: Code, diagnostic: str) -> Response:
    return Response(code, diagnostic.encode("utf-8"))


class ForwardProxy:
    """Sends proxy requests on to the destinations ``policy`` allows.

    :param client: the client that makes the upstream requests (one pool of upstream
        connections for every downstream peer).
    :param policy: the destinations allowed.
    :param cache: fresh responses to GET; ``None`` for no caching.
    """

    log = Logger()

    def __init__(
        self,
        client: Client,
        policy: ProxyPolicy,
        *,
        reactor: Any = None,
        cache: ResponseCache | None = None,
        timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_per_peer: int = DEFAULT_MAX_IN_FLIGHT_PER_PEER,
    ) -> None:
        self.client = client
        self.policy = policy
        self.reactor = default_reactor(reactor)
        self.cache = cache
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_peer = max_in_flight_per_peer
        self.in_flight = 0
        self._per_peer: dict[Hashable, int] = {}
        self._limits_logged: set[str] = set()

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer ``request``, which carries Proxy-Uri or Proxy-Scheme."""
        try:
            forwarded = forward_request(request.options)
            scheme = forwarded.uri.split(":", 1)[0].lower()
            if scheme not in SCHEMES:
                return _refusal(Code.PROXYING_NOT_SUPPORTED, f"scheme {scheme!r} is not supported")
            target = parse_uri(forwarded.uri)
        except ProxyRefusal as refusal:
            return _refusal(refusal.code, refusal.diagnostic)
        except UriError as error:
            return _refusal(Code.BAD_OPTION, f"bad Proxy-Uri: {error}")
        key = None
        if request.method == Code.GET and self.cache is not None:
            key = self.cache.key(forwarded.uri, forwarded.options)
            cached = self.cache.get(key, self.reactor.seconds())
            if cached is not None:
                return cached
        peer = _peer_key(request)
        busy = self._admit(peer)
        if busy is not None:
            return busy
        resolving = resolve_host(self.reactor, target.host, target.port)
        answer: Deferred[Any] = resolving.addCallback(self._send, request, target, forwarded)
        answer.addErrback(self._failed, forwarded.uri)
        if key is not None:
            answer.addCallback(self._keep, key)
        answer.addBoth(self._done, peer)
        return answer

    # -- bounds ---------------------------------------------------------------------------

    def _admit(self, peer: Hashable) -> Response | None:
        held = self._per_peer.get(peer, 0)
        if self.in_flight >= self.max_in_flight:
            return self._busy("proxy requests in flight", f"{self.in_flight} in flight")
        if held >= self.max_in_flight_per_peer:
            return self._busy("proxy requests in flight per peer", f"{held} from {peer}")
        self.in_flight += 1
        self._per_peer[peer] = held + 1
        return None

    def _busy(self, limit: str, detail: str) -> Response:
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

    def _send(
        self,
        addresses: Sequence[str],
        request: Request,
        target: CoapUri,
        forwarded: ForwardedRequest,
    ) -> Response | Deferred[Response]:
        allowed = [address for address in addresses if self.policy.allows(address)]
        if not allowed:
            where = ", ".join(addresses) or "no address"
            return _refusal(
                Code.PROXYING_NOT_SUPPORTED,
                f"forwarding to {target.host} ({where}) is not allowed; this proxy forwards "
                f"to {self.policy.describe()}",
            )
        address = allowed[0]
        options = forwarded.options
        if address != target.host:  # connect to the checked address, name the host
            options = options.replace(OptionNumber.URI_HOST, target.host)
        literal = f"[{address}]" if ":" in address else address
        uri = f"{target.scheme}://{literal}:{target.port}" + _resource(forwarded.uri)
        sent: Deferred[Response] = self.client.request(
            request.method, uri, request.payload, options=options, timeout=self.timeout
        )
        return sent.addCallback(_relayed)

    def _failed(self, failure: Failure, uri: str) -> Response:
        if failure.check(RequestTimeout):
            return _refusal(Code.GATEWAY_TIMEOUT, f"no answer from {uri} in time")
        self.log.info("Upstream request to {uri} failed: {error}", uri=uri,
                      error=failure.getErrorMessage())
        return _refusal(Code.BAD_GATEWAY, f"upstream {uri}: {failure.getErrorMessage()}")

    def _keep(self, response: Response, key: Any) -> Response:
        assert self.cache is not None
        self.cache.put(key, response, self.reactor.seconds())
        return response


def _relayed(upstream: Response) -> Response:
    """The downstream response for an upstream one: the same code, payload and
    end-to-end options (block-wise options belong to the upstream side)."""
    options = upstream.options
    for number in _HOP_BY_HOP:
        if number in options:
            options = options.remove(number)
    return Response(upstream.code, upstream.payload, options=options)


def _resource(uri: str) -> str:
    """The path and query of an absolute URI (what follows its authority)."""
    rest = uri.split("://", 1)[1]
    slash = rest.find("/")
    query = rest.find("?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    resource = rest[cut:]
    return resource if resource.startswith("/") else "/" + resource


def _peer_key(request: Request) -> Hashable:
    peer = request.peer
    return getattr(peer, "host", None) or id(request.channel)
