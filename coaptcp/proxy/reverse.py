"""The reverse proxy: a path of the resource tree that stands for a base URI on any
scheme coaptcp speaks (RFC 7252 section 5.7.3).

``root.putChild("plant", ReverseProxy("coap://[fd00::17]/", upstream))`` makes a request
for ``/plant/valve/3?x=1`` go to ``coap://[fd00::17]/valve/3?x=1``: the path segments
below the mount point follow the base URI's path, and the query follows its query.  The
client sees an ordinary resource: it sends no Proxy-Uri, and the responses come back with
the options of the origin (Location-Path of a 2.01 included, which names a path on the
origin; relative to the base as RFC 7252 section 5.7.3 leaves to the proxy's
configuration).  Everything else is the forward proxy's upstream side: a new token,
option rules (5.02 for an unrecognised unsafe option, Hop-Limit and 5.08), block-wise on
each side, the cache, 5.02/5.04 on failure, and Observe through the proxy with one
upstream observation per resource.

The destinations are the operator's own configuration, so no destination policy applies.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from coaptcp.core.proxying import ProxyRefusal, travelling_options
from coaptcp.core.uri import CoapUri, parse_uri
from coaptcp.proxy.upstream import Upstream, refusal
from coaptcp.server import Request, Resource, Response

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.server import Site

__all__ = ["ReverseProxy"]

_EVERY_METHOD = ("GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH")


class ReverseProxy(Resource):
    """A subtree answered by the resources under ``base`` (see the module).

    :param base: the base URI, e.g. ``coap://[fd00::17]/`` or ``coap+tcp://plc/api``.
    :param upstream: the upstream side (client, bounds, cache, observations).
    """

    isLeaf = True
    forwards_answers = True  # the origin had the Accept (RFC 7252 section 5.10.4)
    observable = True

    def __init__(self, base: str | CoapUri, upstream: Upstream) -> None:
        super().__init__()
        self.base = parse_uri(base) if isinstance(base, str) else base
        path = self.base.path
        self._base_path = path[:-1] if path and path[-1] == "" else path
        self.upstream = upstream

    def target(self, request: Request) -> CoapUri:
        """The upstream URI of ``request``: the base, then what follows the mount point."""
        return dataclasses.replace(
            self.base,
            path=self._base_path + tuple(request.postpath),
            query=self.base.query + tuple(request.query),
        )

    def render(self, request: Request) -> Response | Deferred[Response]:
        """Send ``request`` to the origin (every method: the origin decides)."""
        try:
            options = travelling_options(request.options)
        except ProxyRefusal as refused:
            return refusal(refused.code, refused.diagnostic)
        target = self.target(request)
        return self.upstream.forward(request, str(target), lambda: target, options)

    def handle_observe(
        self, site: Site, request: Request, observe: int
    ) -> Response | Deferred[Response]:
        """Observe through the proxy: the upstream side shares one upstream observation
        among the observers of each resource (RFC 7641 section 5)."""
        return self.render(request)

    def allowed_methods(self) -> list[str]:
        """Every method: the origin answers 4.05 itself where it must."""
        return list(_EVERY_METHOD)
