"""Our side as a client in the interop tests: one connection, some requests, a JSON report.

Usage::

    python coaptcp_peer_client.py PORT request METHOD PATH [PAYLOAD]
    python coaptcp_peer_client.py PORT pipeline COUNT PATH
    python coaptcp_peer_client.py PORT ping

Prints one JSON line: the response (code, payload, options) or the round-trip time, plus
the peer's Max-Message-Size as learnt from its CSM.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import gatherResults

from coaptcp import Code, Options, connect_tcp


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


async def run_command(protocol: Any, command: str, args: list[str]) -> dict[str, Any]:
    """``request METHOD PATH [PAYLOAD [CONTENT_FORMAT]]``, ``pipeline COUNT PATH`` or
    ``ping`` on a connected protocol (ws_client_peer.py runs the same commands)."""
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
    return report


async def main(reactor: Any, port: str, command: str, *args: str) -> None:
    protocol = await connect_tcp(reactor, "127.0.0.1", int(port), timeout=10)
    report = await run_command(protocol, command, list(args))
    print(json.dumps(report), flush=True)
    await protocol.release()


if __name__ == "__main__":
    task.react(lambda reactor: __import__("twisted.internet.defer", fromlist=["x"])
               .Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
