"""A test back end for the browser-as-a-server end-to-end test (``--resource
browser_backend.root``): a resource directory, plus two resources that reach a registered
endpoint through the directory's connected-peer API (RFC 9176 registrations, RFC 8323
section 3.3 requests over the endpoint's own connection):

- ``GET /via/NAME/PATH...`` asks endpoint NAME for PATH and answers with its response;
- ``GET /watch/NAME/PATH...`` starts observing PATH of NAME (once); ``GET /seen`` gives the
  payloads of the notifications received so far, comma-separated.

``test_browser_server.py`` uses it; ``test_browser_ep.py`` uses ``--rd``'s ``/ep/NAME``.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from coaptcp import Code, Resource, Response
from coaptcp.directory import ResourceDirectory, install_directory
from coaptcp.server.request import Request

__all__ = ["root"]

MAX_SEEN = 1000  # notifications kept


class Via(Resource):
    """``/via/NAME/PATH``: the endpoint's answer to GET PATH."""

    isLeaf = True

    def __init__(self, directory: ResourceDirectory) -> None:
        super().__init__()
        self.directory = directory

    def render_GET(self, request: Request) -> Response | Deferred[Response]:
        if not request.postpath:
            return Response(Code.BAD_REQUEST, b"/via/NAME/PATH")
        registration = self.directory.find(request.postpath[0])
        if registration is None or registration.connection is None:
            return Response(Code.NOT_FOUND, b"not registered over a connection")
        d = registration.request(Code.GET, request.postpath[1:], timeout=10)
        return d.addCallback(lambda answer: Response(
            answer.code, answer.payload, content_format=answer.options.content_format))


class Watch(Resource):
    """``/watch/NAME/PATH``: observe it; the notifications are kept for ``/seen``."""

    isLeaf = True

    def __init__(self, directory: ResourceDirectory, seen: list[str]) -> None:
        super().__init__()
        self.directory = directory
        self.seen = seen

    def render_GET(self, request: Request) -> Response:
        registration = self.directory.find(request.postpath[0]) if request.postpath else None
        if registration is None or registration.connection is None:
            return Response(Code.NOT_FOUND, b"not registered over a connection")

        def noted(answer: Response) -> None:
            if len(self.seen) < MAX_SEEN:
                self.seen.append(answer.payload.decode())

        registration.observe(request.postpath[1:], on_notification=noted,
                             on_end=lambda reason: None)
        return Response.text("observing")


class Seen(Resource):
    """``/seen``: the notification payloads so far."""

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def render_GET(self, request: Request) -> Response:
        return Response.text(",".join(self.seen))


def root() -> Resource:
    """The tree: a directory at /rd and /rd-lookup, and /via, /watch, /seen."""
    tree = Resource()
    directory = install_directory(tree)
    seen: list[str] = []
    tree.putChild("via", Via(directory))
    tree.putChild("watch", Watch(directory, seen))
    tree.putChild("seen", Seen(seen))
    return tree
