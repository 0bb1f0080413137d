"""The demo site ``twistd -n coaptcp`` serves when no ``--resource`` is given.

A few resources to try a client against: text, JSON, a body larger than the base
Max-Message-Size of 1152 bytes, a resource that accepts PUT and POST, an observable clock
(RFC 7641) and a 1 MiB body for block-wise transfer (RFC 7959, BERT: RFC 8323 section 6).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import time
from typing import Any

from twisted.internet.task import LoopingCall

from coaptcp.core.codes import Code
from coaptcp.server.observe import ObservableResource, Observer
from coaptcp.server.resource import Request, Resource, Response

__all__ = [
    "BigResource",
    "ClockResource",
    "HelloResource",
    "InfoResource",
    "LargeResource",
    "StoreResource",
    "make_demo_site",
]


class HelloResource(Resource):
    """``GET /hello``: a short greeting in text/plain."""

    link_attributes = {"rt": "demo.hello", "ct": 0, "title": "Greeting"}

    def render_GET(self, request: Request) -> Response:
        return Response.text("Hello, world!")


def _address_text(address: Any) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6) of a peer address; ``None`` if it has no port."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class InfoResource(Resource):
    """``GET /info``: JSON about this server and the request: ``peer`` is the client's
    address as the server sees it (the real client's behind ``haproxy:`` endpoints),
    ``pid`` the process that answered (one of the ``--workers``)."""

    link_attributes = {"rt": "demo.info", "ct": 50, "title": "Server information"}

    def __init__(self) -> None:
        super().__init__()
        self.started = time.time()

    def render_GET(self, request: Request) -> Response:
        from coaptcp.core.version import __version__

        return Response.json(
            {
                "server": f"coaptcp {__version__}",
                "python": platform.python_version(),
                "uptime_s": round(time.time() - self.started, 3),
                "secure": request.secure,
                "host": request.host,
                "tls": request.tls.as_dict() if request.tls is not None else None,
                "peer": _address_text(request.peer),
                "pid": os.getpid(),
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


class ClockResource(ObservableResource):
    """``GET /time``: the current UTC time; observable, a notification every second.

    The clock only ticks while somebody observes it.
    """

    link_attributes = {"rt": "demo.clock", "ct": 0, "title": "Observable clock"}
    max_age = 1

    def __init__(self, reactor: Any = None, interval: float = 1.0) -> None:
        super().__init__()
        self._ticker = LoopingCall(self.notify)
        if reactor is not None:
            self._ticker.clock = reactor
        self.interval = interval

    def render_GET(self, request: Request) -> Response:
        now = time.gmtime(self._ticker.clock.seconds())
        return Response.text(time.strftime("%Y-%m-%dT%H:%M:%SZ", now))

    def observer_added(self, observation: Observer) -> None:
        if not self._ticker.running:
            self._ticker.start(self.interval, now=False)

    def observer_removed(self, observation: Observer) -> None:
        if self.observer_count == 0 and self._ticker.running:
            self._ticker.stop()


class BigResource(Resource):
    """``GET /big``: 1 MiB of deterministic bytes, served block-wise (RFC 7959, BERT).

    Byte ``i`` of the body is ``i * 7 % 251``; ``/big`` with query ``sha256`` gives its
    digest, so a client can check what it reassembled.
    """

    link_attributes = {"rt": "demo.big", "ct": 42, "sz": 1 << 20, "title": "1 MiB body"}

    size = 1 << 20

    @functools.cached_property
    def body(self) -> bytes:
        """The body, built on first use (importing the demo stays cheap)."""
        return bytes(i * 7 % 251 for i in range(self.size))

    def render_GET(self, request: Request) -> Response:
        if "sha256" in request.query:
            return Response.text(hashlib.sha256(self.body).hexdigest())
        return Response(Code.CONTENT, self.body, content_format=42)


class DemoRoot(Resource):
    """``GET /``: a line saying what this is."""

    def render_GET(self, request: Request) -> Response:
        return Response.text("coaptcp demo server; see /.well-known/core")


def make_demo_site(reactor: Any = None) -> Resource:
    """Build a fresh demo resource tree (``reactor`` drives the clock; global if None)."""
    root = DemoRoot()
    root.putChild("time", ClockResource(reactor))
    root.putChild("big", BigResource())
    root.putChild("hello", HelloResource())
    root.putChild("info", InfoResource())
    root.putChild("large", LargeResource())
    root.putChild("store", StoreResource())
    return root
