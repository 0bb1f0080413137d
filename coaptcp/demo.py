"""The demo site ``twistd -n coaptcp`` serves when no ``--resource`` is given.

A few resources to try a client against: text, JSON, a body larger than the base
Max-Message-Size of 1152 bytes, and a resource that accepts PUT and POST.
"""

from __future__ import annotations

import platform
import time

from .core.codes import Code
from .resource import Request, Resource, Response

__all__ = ["HelloResource", "InfoResource", "LargeResource", "StoreResource", "make_demo_site"]


class HelloResource(Resource):
    """``GET /hello``: a short greeting in text/plain."""

    link_attributes = {"rt": "demo.hello", "ct": 0, "title": "Greeting"}

    def render_GET(self, request: Request) -> Response:
        return Response.text("Hello, world!")


class InfoResource(Resource):
    """``GET /info``: JSON about this server and the request."""

    link_attributes = {"rt": "demo.info", "ct": 50, "title": "Server information"}

    def __init__(self) -> None:
        super().__init__()
        self.started = time.time()

    def render_GET(self, request: Request) -> Response:
        from . import __version__

        return Response.json(
            {
                "server": f"coaptcp {__version__}",
                "python": platform.python_version(),
                "uptime_s": round(time.time() - self.started, 3),
                "secure": request.secure,
                "host": request.host,
                "tls": request.tls.as_dict() if request.tls is not None else None,
            }
        )


class LargeResource(Resource):
    """``GET /large``: 4,000 bytes of text, more than the base Max-Message-Size."""

    link_attributes = {"rt": "demo.large", "ct": 0, "sz": 4000, "title": "A larger body"}

    body = b"".join(b"%04d coaptcp demo line, 40 bytes long!!\n" % i for i in range(100))

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.body, content_format=0)


class StoreResource(Resource):
    """``/store``: GET what was last PUT or POSTed; DELETE clears it."""

    link_attributes = {"rt": "demo.store", "title": "Read and write me"}

    def __init__(self) -> None:
        super().__init__()
        self.value = b""
        self.content_format: int | None = 0

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.value, content_format=self.content_format)

    def render_PUT(self, request: Request) -> Response:
        self.value = request.payload
        self.content_format = request.content_format
        return Response(Code.CHANGED)

    def render_POST(self, request: Request) -> Response:
        self.value = request.payload
        self.content_format = request.content_format
        return Response(Code.CHANGED, b"stored %d bytes" % len(request.payload))

    def render_DELETE(self, request: Request) -> Response:
        self.value = b""
        return Response(Code.DELETED)


class DemoRoot(Resource):
    """``GET /``: a line saying what this is."""

    def render_GET(self, request: Request) -> Response:
        return Response.text("coaptcp demo server; see /.well-known/core")


def make_demo_site() -> Resource:
    """Build a fresh demo resource tree."""
    root = DemoRoot()
    root.putChild("hello", HelloResource())
    root.putChild("info", InfoResource())
    root.putChild("large", LargeResource())
    root.putChild("store", StoreResource())
    return root
