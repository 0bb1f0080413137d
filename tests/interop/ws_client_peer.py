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

from coaptcp_peer_client import run_command
from twisted.internet import task
from twisted.internet.defer import Deferred

from coaptcp.transport.websocket.protocol import WebSocketConnectError, connect_websocket


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
    report = await run_command(protocol, command, args)
    report["secure"] = protocol.channel.secure
    print(json.dumps(report), flush=True)
    await protocol.release()


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
