"""Our Client library observing and moving large bodies against a real peer; prints one
JSON report line.

Usage::

    python coaptcp_transfer_client.py observe URI COUNT [OBSERVERS_URI]
    python coaptcp_transfer_client.py roundtrip URI SIZE [BLOCK_SIZE]
    python coaptcp_transfer_client.py get URI [BLOCK_SIZE]

``observe`` takes COUNT notifications, cancels (GET Observe=1, same token) and, with
OBSERVERS_URI, asks the server over the same connection how many observers are left.
``roundtrip`` PUTs SIZE deterministic bytes to URI and GETs them back.  Every request
message the client sends is recorded (method, Block1, Block2, payload size), so the test
sees what went on the wire.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred

from coaptcp.client.client import Client
from coaptcp.core.blockwise import Block
from coaptcp.core.options import OptionNumber
from coaptcp.transport.tcp import CoapProtocol

SENT: list[dict[str, Any]] = []


def _block(options: Any, number: int) -> list[Any] | None:
    raw = options.get_uint(number)
    if raw is None:
        return None
    block = Block.decode(raw)
    return [block.num, block.more, block.szx]


_original_request = CoapProtocol.request


def _recording_request(self: CoapProtocol, method: Any, options: Any = None, payload: bytes = b"",
                       **kwargs: Any) -> Any:
    SENT.append({
        "method": method.name,
        "block1": _block(options, OptionNumber.BLOCK1),
        "block2": _block(options, OptionNumber.BLOCK2),
        "size1": options.size1,
        "payload": len(payload),
    })
    return _original_request(self, method, options, payload, **kwargs)


CoapProtocol.request = _recording_request  # type: ignore[method-assign]


def peer_settings(client: Client, uri: str) -> dict[str, Any]:
    connection = client.connection_for(uri)
    if connection is None:
        return {}
    peer = connection.channel.connection.peer
    return {"max_message_size": peer.max_message_size, "bert": peer.bert}


async def observe(client: Client, uri: str, count: int, observers: str | None) -> dict[str, Any]:
    observation = client.observe(uri)
    seen: list[dict[str, Any]] = []
    async for response in observation:
        raw = response.options.get(OptionNumber.OBSERVE)
        seen.append({"code": response.code.dotted,
                     "observe": None if raw is None else raw.hex(),
                     "payload": response.payload.decode("utf-8", "replace")})
        if len(seen) >= count:
            break
    channel_observation = observation.channel_observation
    token = channel_observation.token.hex() if channel_observation else None
    await observation.cancel()
    report: dict[str, Any] = {"notifications": seen, "end_reason": observation.end_reason,
                              "token": token}
    if observers is not None:
        left = await client.request("GET", observers)
        report["observers_after_cancel"] = left.payload.decode()
    connection = client.connection_for(uri)
    report["observing"] = None if connection is None else connection.channel.observing
    report["connections_made"] = client.connections_made
    return report


async def roundtrip(client: Client, uri: str, size: int) -> dict[str, Any]:
    body = hashlib.shake_256(f"interop {size} {uri}".encode()).digest(size)
    progress: list[tuple[int, int | None]] = []
    put = await client.request("PUT", uri, body, progress=lambda d, t: progress.append((d, t)))
    put_messages = list(SENT)
    SENT.clear()
    got = await client.request("GET", uri)
    return {
        "put_code": put.code.dotted,
        "put_progress": len(progress),
        "put_last_progress": list(progress[-1]) if progress else None,
        "put_messages": put_messages,
        "get_code": got.code.dotted,
        "get_messages": list(SENT),
        "same": got.payload == body,
        "length": len(got.payload),
    }


async def get(client: Client, uri: str) -> dict[str, Any]:
    progress: list[tuple[int, int | None]] = []
    response = await client.request("GET", uri, progress=lambda d, t: progress.append((d, t)))
    return {
        "code": response.code.dotted,
        "length": len(response.payload),
        "sha256": hashlib.sha256(response.payload).hexdigest(),
        "progress": len(progress),
        "last_progress": list(progress[-1]) if progress else None,
        "messages": list(SENT),
    }


async def main(reactor: Any, command: str, *args: str) -> None:
    block_size: int | None = None
    if command in ("roundtrip", "get"):
        extra = args[2:] if command == "roundtrip" else args[1:]
        block_size = int(extra[0]) if extra else None
    client = Client(reactor, timeout=20, block_size=block_size)
    report: dict[str, Any]
    if command == "observe":
        report = await observe(client, args[0], int(args[1]), args[2] if len(args) > 2 else None)
    elif command == "roundtrip":
        report = await roundtrip(client, args[0], int(args[1]))
    elif command == "get":
        report = await get(client, args[0])
    else:
        raise SystemExit(f"unknown command {command!r}")
    report["peer"] = peer_settings(client, args[0])
    await client.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
