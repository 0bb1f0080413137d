"""The resource tree the attack campaign serves: the demo site plus ``/slow``.

Served with ``twistd -n coaptcp --resource attack_site.make_site`` (``benchmarks/attacks``
on ``PYTHONPATH``; ``run.py`` does this).  ``GET /slow?ms=N`` answers 2.05 ``slow`` after N
milliseconds (default 1,000, at most 120,000) from a reactor timer: a request that stays
in progress without costing CPU, as a real asynchronous resource would (issue 12 items 4
and 8: Custody Pings behind slow requests, a FIN with an async request in flight).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from coaptcp.server.resource import Request, Resource, Response
from coaptcp.tap.demo import make_demo_site

__all__ = ["SlowResource", "make_site"]

MAX_DELAY_MS = 120_000


class SlowResource(Resource):
    """``GET /slow?ms=N``: 2.05 after N ms (a Deferred fired by a reactor timer)."""

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self._reactor = reactor

    def render_GET(self, request: Request) -> Deferred[Response]:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        delay_ms = 1000
        for arg in request.query:
            name, _, value = arg.partition("=")
            if name == "ms" and value.isdigit():
                delay_ms = min(int(value), MAX_DELAY_MS)
        calls: list[Any] = []

        def cancel(_: Deferred[Response]) -> None:
            if calls and calls[0].active():
                calls[0].cancel()

        d: Deferred[Response] = Deferred(cancel)
        calls.append(self._reactor.callLater(delay_ms / 1000, d.callback, Response.text("slow")))
        return d


def make_site() -> Resource:
    """The demo tree with ``/slow`` added."""
    root = make_demo_site()
    root.putChild("slow", SlowResource())
    return root
