"""A back end for the call-home interop tests, served by ``twistd coaptcp --resource
callhome_backend.root``: a resource-directory stand-in at ``/rd`` that notes who
registered (the query, and the TLS peer's PSK identity or certificate subject) and, at
once, GETs ``/hello`` from the device over the device's own connection (RFC 8323 section
3.3); ``GET /seen`` lists all that as JSON."""

from __future__ import annotations

from typing import Any

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource


class Directory(Resource):
    """``POST /rd?ep=...``: 2.01 with Location-Path rd/N."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render_POST(self, request: Request) -> Response:
        tls = request.tls
        entry: dict[str, Any] = {
            "query": list(request.query),
            "psk_identity": tls.psk_identity.decode() if tls and tls.psk_identity else None,
            "subject": tls.peer_subject if tls else None,
            "hello": None,
        }
        self.seen.append(entry)

        def answered(response: Response) -> None:
            entry["hello"] = response.payload.decode()

        asked = request.channel.request(Code.GET, Options.build(uri_path=["hello"]))
        asked.addCallbacks(answered, lambda failure: entry.update(hello=str(failure.value)))
        key = str(len(self.seen))
        return Response(Code.CREATED, options=Options([(OptionNumber.LOCATION_PATH, "rd"),
                                                       (OptionNumber.LOCATION_PATH, key)]))

    def getChild(self, name: str, request: Request) -> Resource | None:
        return Registration()


class Registration(Resource):
    """``/rd/N``: updates and removal succeed."""

    isLeaf = True

    def render_POST(self, request: Request) -> Response:
        return Response(Code.CHANGED)

    def render_DELETE(self, request: Request) -> Response:
        return Response(Code.DELETED)


class Seen(Resource):
    def __init__(self, directory: Directory) -> None:
        super().__init__()
        self.directory = directory

    def render_GET(self, request: Request) -> Response:
        return Response.json(self.directory.seen)


def root() -> Resource:
    top = Resource()
    directory = Directory()
    top.putChild("rd", directory)
    top.putChild("seen", Seen(directory))
    return top
