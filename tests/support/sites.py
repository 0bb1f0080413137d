"""Resources whose answers the test releases, and sites that serve them beside the demo,
for the in-memory tests of the server, the channel and the client (no sockets, no sleeps,
no real clock).  Everything else they share is public: ``coaptcp.testing``."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from coaptcp.core.codes import Code
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import make_demo_site


class Slow(Resource):
    """GET returns a Deferred the test fires later (``waiting`` holds them in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[Response]] = []

    def render_GET(self, request: Request) -> Deferred[Response]:
        d: Deferred[Response] = Deferred()
        self.waiting.append(d)
        return d


def slow_site() -> tuple[Site, Slow]:
    """The demo site with a :class:`Slow` resource at ``/slow``."""
    root = make_demo_site()
    slow = Slow()
    root.putChild("slow", slow)
    return Site(root), slow


class Held(Resource):
    """GET answers only when the test calls :meth:`answer`, with the request's query."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[Request, Deferred[Response]]] = []

    def render_GET(self, request: Request) -> Deferred[Response]:
        d: Deferred[Response] = Deferred()
        self.waiting.append((request, d))
        return d

    def answer(self, index: int) -> None:
        request, d = self.waiting.pop(index)
        d.callback(Response.text("&".join(request.query)))


class Seen(Resource):
    """GET answers at once and records the request's options."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> Response:
        self.requests.append(request)
        return Response.text("seen")

    def render_POST(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(Code.CHANGED, request.payload)
