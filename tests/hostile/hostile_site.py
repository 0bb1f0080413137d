"""A ``--resource`` for the hostile tests: the demo site plus ``/slow``, a render that takes
30 s (an async resource a peer can keep busy)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource
from coaptcp.tap.demo import make_demo_site


class Slow(Resource):
    """GET answers after 30 s."""

    def render_GET(self, request: Request) -> Deferred[Response]:
        from twisted.internet import reactor

        d: Deferred[Response] = Deferred()
        reactor.callLater(30, d.callback, Response.text("slow"))  # type: ignore[attr-defined]
        return d


def make_root() -> Resource:
    root = make_demo_site()
    root.putChild("slow", Slow())
    return root
