"""The resources ``benchmarks/transfer.py`` serves from ``twistd coaptcp --resource``.

``twist coaptcp --resource transfer_site.make_root --max-body-size N`` (with this
directory on PYTHONPATH) serves:

- ``GET /blob``: ``COAPTCP_BENCH_SIZE`` bytes (default 64 MiB) of a fixed pattern
  (:func:`body`), sent block-wise with BERT (RFC 7959, RFC 8323 section 6);
- ``PUT /sink`` and ``POST /sink``: takes any body (reassembled from Block1 blocks) and
  answers 2.04 with the SHA-256 of what arrived, in hex;
- ``GET /hello``: a short text, for the client to open its connection before timing.
"""

from __future__ import annotations

import functools
import hashlib
import os

from coaptcp.core.codes import Code
from coaptcp.server.resource import Request, Resource, Response

DEFAULT_SIZE = 64 * 1024 * 1024


def body(size: int) -> bytes:
    """The benchmark body: bytes 0-250 repeated (aiocoap_transfer_server.py has the same)."""
    period = bytes(range(251))
    return (period * (size // len(period) + 1))[:size]


class Blob(Resource):
    """``GET /blob``: the body, built once."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    @functools.cached_property
    def body(self) -> bytes:
        return body(self.size)

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.body, content_format=42)


class Sink(Resource):
    """``PUT``/``POST /sink``: 2.04 with the SHA-256 of the body."""

    def render_PUT(self, request: Request) -> Response:
        return Response(Code.CHANGED, hashlib.sha256(request.payload).hexdigest().encode())

    render_POST = render_PUT


class Hello(Resource):
    def render_GET(self, request: Request) -> Response:
        return Response.text("hello")


def make_root() -> Resource:
    """The benchmark's resource tree."""
    root = Resource()
    size = int(os.environ.get("COAPTCP_BENCH_SIZE", DEFAULT_SIZE))
    root.putChild("blob", Blob(size))
    root.putChild("sink", Sink())
    root.putChild("hello", Hello())
    return root
