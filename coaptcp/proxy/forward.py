"""The forward proxy: requests with Proxy-Uri or Proxy-Scheme, sent on by a Client
(RFC 7252 section 5.7, RFC 8323 section 8 for the reliable schemes).

A :class:`ForwardProxy` answers the proxy requests a :class:`~coaptcp.server.Site`
hands it.  It works out the upstream URI and options (:mod:`coaptcp.core.proxying`),
checks the destination against its :class:`~coaptcp.proxy.policy.ProxyPolicy` after
resolving the name (5.05 with a diagnostic, and nothing sent, when it is not allowed),
and has its :class:`~coaptcp.proxy.upstream.Upstream` send it: the cache, the bounds,
the error mapping and Observe through the proxy live there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred

from coaptcp.client import Client
from coaptcp.core.codes import Code
from coaptcp.core.proxying import ProxyRefusal, forward_request
from coaptcp.core.uri import SCHEMES, CoapUri, UriError, parse_uri
from coaptcp.proxy.cache import ResponseCache
from coaptcp.proxy.observe import DEFAULT_MAX_OBSERVATIONS
from coaptcp.proxy.policy import ProxyPolicy
from coaptcp.proxy.upstream import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_PER_PEER,
    DEFAULT_UPSTREAM_TIMEOUT,
    Upstream,
    refusal,
)
from coaptcp.server import Request, Response
from coaptcp.transport.udp.address import resolve_host

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_IN_FLIGHT_PER_PEER",
    "DEFAULT_UPSTREAM_TIMEOUT",
    "ForwardProxy",
    "at_address",
]


def at_address(target: CoapUri, address: str) -> CoapUri:
    """``target`` with the connection going to ``address``; the host it names is still
    sent as Uri-Host (so DNS cannot move a checked request afterwards)."""
    ip = ipaddress.ip_address(address)
    if target.ip == ip:
        return target
    return dataclasses.replace(target, host=ip.compressed, ip=ip)


class ForwardProxy:
    """Sends proxy requests on to the destinations ``policy`` allows.

    :param client: the client that makes the upstream requests (one pool of upstream
        connections for every downstream peer).
    :param policy: the destinations allowed.
    :param cache: fresh responses to GET; ``None`` for no caching.
    :param upstream: the upstream side to use (shared with a reverse proxy); by default
        one made from ``client`` and the other arguments.
    """

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
        max_observations: int = DEFAULT_MAX_OBSERVATIONS,
        max_observers: int | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.policy = policy
        if upstream is None:
            upstream = Upstream(
                client,
                reactor=reactor,
                cache=cache,
                timeout=timeout,
                max_in_flight=max_in_flight,
                max_in_flight_per_peer=max_in_flight_per_peer,
                max_observations=max_observations,
                max_observers=max_observers,
            )
        self.upstream = upstream

    @property
    def in_flight(self) -> int:
        """Upstream requests in flight."""
        return self.upstream.in_flight

    @property
    def cache(self) -> ResponseCache | None:
        """The upstream side's cache."""
        return self.upstream.cache

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer ``request``, which carries Proxy-Uri or Proxy-Scheme."""
        try:
            forwarded = forward_request(request.options)
            scheme = forwarded.uri.split(":", 1)[0].lower()
            if scheme not in SCHEMES:
                return refusal(Code.PROXYING_NOT_SUPPORTED, f"scheme {scheme!r} is not supported")
            target = parse_uri(forwarded.uri)
        except ProxyRefusal as refused:
            return refusal(refused.code, refused.diagnostic)
        except UriError as error:
            return refusal(Code.BAD_OPTION, f"bad Proxy-Uri: {error}")

        def locate() -> Deferred[CoapUri]:
            resolving = resolve_host(self.upstream.reactor, target.host, target.port)
            return resolving.addCallback(self._checked, target)

        return self.upstream.forward(request, forwarded.uri, locate, forwarded.options)

    def _checked(self, addresses: Sequence[str], target: CoapUri) -> CoapUri:
        allowed = [address for address in addresses if self.policy.allows(address)]
        if not allowed:
            where = ", ".join(addresses) or "no address"
            raise ProxyRefusal(
                Code.PROXYING_NOT_SUPPORTED,
                f"forwarding to {target.host} ({where}) is not allowed; this proxy forwards "
                f"to {self.policy.describe()}",
            )
        return at_address(target, allowed[0])
