"""Our CoAP-over-WebSockets client as a separate process, for the loopback tests.

Usage::

    python ws_client_peer.py URI request METHOD PATH [PAYLOAD [CONTENT_FORMAT]] [--ca PEM]
    python ws_client_peer.py URI pipeline COUNT PATH [--ca PEM]
    python ws_client_peer.py URI ping [--ca PEM]

Connects with :func:`coaptcp.transport.websocket.protocol.connect_websocket`, prints one JSON line
(the
response, or the round trip), then releases the connection.  A failure to connect prints
``{"error": ...}`` and exits with status 3.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from coaptcp import Code, Options
from coaptcp.transport.websocket.protocol import WebSocketConnectError, connect_websocket


def describe(response: Any) -> dict[str, Any]:
    return {
        "code": response.code.dotted,
        "payload": response.payload.decode("utf-8", errors="replace"),
        "payload_length": len(response.payload),
        "options": [[number, value.hex()] for number, value in response.options],
    }


def path_options(path: str, content_format: int | None = None) -> Options:
    return Options.build(
        uri_path=[p for p in path.strip("/").split("/") if p], content_format=content_format
    )


async def main(reactor: Any, argv: list[str]) -> None:
    trust_root = None
    if "--ca" in argv:
        at = argv.index("--ca")
        from twisted.internet.ssl import Certificate

        with open(argv[at + 1], "rb") as pem:
            trust_root = Certificate.loadPEM(pem.read())
        del argv[at : at + 2]
    uri, command, *args = argv
    try:
        protocol = await connect_websocket(reactor, uri, trust_root=trust_root, timeout=10)
    except WebSocketConnectError as error:
        print(json.dumps({"error": error.reason}), flush=True)
        raise SystemExit(3) from None
    report: dict[str, Any]
    if command == "request":
        method, path, *rest = args
        payload = rest[0].encode() if rest else b""
        content_format = int(rest[1]) if len(rest) > 1 else None
        response = await protocol.request(
            Code[method], path_options(path, content_format), payload, timeout=10
        )
        report = describe(response)
    elif command == "pipeline":
        count, path = int(args[0]), args[1]
        responses = await gatherResults(
            [protocol.request(Code.GET, path_options(path), timeout=10) for _ in range(count)]
        )
        report = {"codes": [r.code.dotted for r in responses],
                  "payloads": sorted({r.payload.decode() for r in responses})}
    elif command == "ping":
        report = {"rtt": await protocol.ping(timeout=10)}
    else:
        raise SystemExit(f"unknown command {command!r}")
    report["peer_max_message_size"] = protocol.channel.connection.peer.max_message_size
    report["secure"] = protocol.channel.secure
    print(json.dumps(report), flush=True)
    await protocol.release()


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
