"""Our Client library (by URI, pooled) against a real peer; prints one JSON report line.

Usage::

    python coaptcp_uri_client.py request METHOD URI [PAYLOAD]
    python coaptcp_uri_client.py pipeline COUNT URI [URI ...]
    python coaptcp_uri_client.py ping URI
    python coaptcp_uri_client.py dead-peer URI

``pipeline`` sends COUNT GETs per URI at once and reports how many connections the client
opened.  ``dead-peer`` makes one request, prints ``{"step": "connected"}``, waits for a line
on stdin (the test stops the server meanwhile), then sends a request that can only end
by the keepalive Ping going unanswered, and reports how it failed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from coaptcp_peer_client import describe
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread

from coaptcp.client.client import Client


async def main(reactor: Any, command: str, *args: str) -> None:
    report: dict[str, Any]
    if command == "dead-peer":
        client = Client(reactor, keepalive=0.5, ping_timeout=0.5, timeout=20)
        first = await client.request("GET", args[0])
        print(json.dumps({"step": "connected", "code": first.code.dotted}), flush=True)
        await deferToThread(sys.stdin.readline)
        try:
            await client.request("GET", args[0])
        except Exception as error:  # the report says what it was
            report = {"error": type(error).__name__, "message": str(error)}
        else:
            report = {"error": None}
        report["connections_made"] = client.connections_made
        print(json.dumps(report), flush=True)
        return
    client = Client(reactor, timeout=10)
    if command == "request":
        method, uri, *rest = args
        payload = rest[0].encode() if rest else b""
        report = describe(await client.request(method, uri, payload))
    elif command == "pipeline":
        count, uris = int(args[0]), args[1:]
        responses = await gatherResults(
            [client.request("GET", uri) for uri in uris for _ in range(count)]
        )
        report = {"codes": sorted({r.code.dotted for r in responses}),
                  "payload_lengths": sorted({len(r.payload) for r in responses}),
                  "responses": len(responses)}
    elif command == "ping":
        report = {"rtt": await client.ping(args[0])}
    else:
        raise SystemExit(f"unknown command {command!r}")
    report["connections_made"] = client.connections_made
    await client.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
