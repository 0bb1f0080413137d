"""Targets for ``--resource`` in the tap tests."""

from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource


class RootClass(Resource):
    def render_GET(self, request: Request) -> Response:
        return Response.text("root class")


ROOT = RootClass()


def make_root() -> Resource:
    root = RootClass()
    root.putChild("made", RootClass())
    return root


NOT_A_RESOURCE = 42


def returns_wrong() -> object:
    return "a string"


def explodes() -> Resource:
    raise RuntimeError("factory exploded")
