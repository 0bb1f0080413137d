"""A root for ``twistd coaptcp --resource interop_observed_site.make_root`` in interop tests.

The demo site plus ``GET /observers``: JSON with how many observers the demo clock at
``/time`` has right now, so a test can see a real peer's observation come and go.
"""

from __future__ import annotations

from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource
from coaptcp.tap.demo import make_demo_site


class ObserverCount(Resource):
    """``GET /observers``: ``{"time": N}``."""

    def __init__(self, clock: ObservableResource) -> None:
        super().__init__()
        self.clock = clock

    def render_GET(self, request: Request) -> Response:
        return Response.json({"time": self.clock.observer_count})


def make_root() -> Resource:
    root = make_demo_site()
    clock = root.children["time"]
    assert isinstance(clock, ObservableResource)
    root.putChild("observers", ObserverCount(clock))
    return root
