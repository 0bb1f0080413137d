"""Our CoAP-over-WebSockets client as a separate process, for the loopback tests.

Usage::

    python ws_client_peer.py URI request METHOD PATH [PAYLOAD [CONTENT_FORMAT]] [OPTIONS]
    python ws_client_peer.py URI pipeline COUNT PATH [OPTIONS]
    python ws_client_peer.py URI ping [OPTIONS]

URI is ``coap+ws://host[:port]`` or ``coaps+ws://...``; OPTIONS are ``--ca PEM`` (the CA
to trust for coaps+ws) and ``--path PATH`` (the handshake's path instead of
``/.well-known/coap``).  Connects with
:func:`coaptcp.transport.websocket.client.connect_websocket`, prints one JSON line (the
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

from coaptcp.core.uri import parse_uri
from coaptcp.transport.websocket.client import WebSocketConnectError, connect_websocket
from coaptcp.transport.websocket.common import WELL_KNOWN_COAP


async def main(reactor: Any, argv: list[str]) -> None:
    trust_root = None
    if "--ca" in argv:
        at = argv.index("--ca")
        from twisted.internet.ssl import Certificate

        with open(argv[at + 1], "rb") as pem:
            trust_root = Certificate.loadPEM(pem.read())
        del argv[at : at + 2]
    path = WELL_KNOWN_COAP
    if "--path" in argv:
        at = argv.index("--path")
        path = argv[at + 1]
        del argv[at : at + 2]
    text, command, *args = argv
    uri = parse_uri(text)
    try:
        protocol = await connect_websocket(
            reactor, uri.host, uri.port, secure=uri.secure, path=path, trust_root=trust_root,
            timeout=10,
        )
    except WebSocketConnectError as error:
        print(json.dumps({"error": error.reason}), flush=True)
        raise SystemExit(3) from None
    report = await run_command(protocol, command, args)
    report["secure"] = protocol.channel.secure
    print(json.dumps(report), flush=True)
    await protocol.release()


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
