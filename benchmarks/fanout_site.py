"""The coaptcp side of ``fanout.py``: ``--resource fanout_site.make_root``.

``/obs`` is an observable resource (RFC 7641) whose state a PUT replaces: every PUT calls
``notify()``, and each observer gets a notification carrying the new state.  The demo
site is served beside it (``/hello`` for run.py's readiness check).
"""

from __future__ import annotations

from coaptcp.core.codes import Code
from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource
from coaptcp.tap.demo import make_demo_site

__all__ = ["State", "make_root"]


class State(ObservableResource):
    """GET: the last PUT's payload (text/plain); PUT: replace it and notify everyone."""

    max_observers = 100_000  # the benchmark's 10,000 and more

    def __init__(self) -> None:
        super().__init__()
        self.value = b"0"

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.value)

    def render_PUT(self, request: Request) -> Response:
        self.value = request.payload
        self.notify()
        return Response(Code.CHANGED)


def make_root() -> Resource:
    root = make_demo_site()
    root.putChild("obs", State())
    return root
