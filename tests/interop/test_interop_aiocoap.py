"""Interop with aiocoap 0.4.17 over coap+tcp on loopback, in both directions."""

from __future__ import annotations

import json

import pytest
from peers import RunningPeer, aiocoap_client, coaptcp_client

from coaptcp.tap.demo import LargeResource

pytestmark = pytest.mark.interop

AIOCOAP_BIG = bytes(range(32, 127)) * 42 + b"!" * 10


def uri(peer: RunningPeer, path: str) -> str:
    return f"coap+tcp://127.0.0.1:{peer.port}{path}"


# -- aiocoap's client against our server ----------------------------------------------------


def test_aiocoap_client_get(coaptcp_server: RunningPeer) -> None:
    result = aiocoap_client(uri(coaptcp_server, "/hello"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"Hello, world!"


def test_aiocoap_client_get_json(coaptcp_server: RunningPeer) -> None:
    result = aiocoap_client("--no-pretty-print", uri(coaptcp_server, "/info"))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["server"].startswith("coaptcp ")
    assert info["secure"] is False


def test_aiocoap_client_response_larger_than_1152(coaptcp_server: RunningPeer) -> None:
    result = aiocoap_client(uri(coaptcp_server, "/large"))
    assert result.returncode == 0, result.stderr
    # aiocoap-client adds a newline after output that lacks one.
    assert result.stdout.rstrip(b"\n") == LargeResource.body.rstrip(b"\n")


def test_aiocoap_client_put_post_get(coaptcp_server: RunningPeer) -> None:
    put = aiocoap_client("-m", "PUT", "--payload", "from aiocoap", uri(coaptcp_server, "/store"))
    assert put.returncode == 0, put.stderr
    get = aiocoap_client(uri(coaptcp_server, "/store"))
    assert get.stdout.strip() == b"from aiocoap"
    post = aiocoap_client("-m", "POST", "--payload", "x" * 1000, uri(coaptcp_server, "/store"))
    assert post.returncode == 0, post.stderr
    assert post.stdout.strip() == b"stored 1000 bytes"


def test_aiocoap_client_block1_upload(coaptcp_server: RunningPeer) -> None:
    # aiocoap sends bodies over 1,024 bytes with Block1, SZX 7 (BERT) even before it knows
    # the peer takes BERT (INTEROP-NOTES 5); the server reassembles them (RFC 7959 2.5).
    body = "".join(chr(48 + i % 43) for i in range(5000))
    post = aiocoap_client("-m", "POST", "--payload", body, uri(coaptcp_server, "/store"))
    assert post.returncode == 0, post.stderr
    assert post.stdout.strip() == b"stored 5000 bytes"
    get = aiocoap_client(uri(coaptcp_server, "/store"))
    assert get.stdout.strip() == body.encode()


# -- our client against aiocoap's server ----------------------------------------------------


def test_our_client_get_from_aiocoap(aiocoap_server: RunningPeer) -> None:
    report = coaptcp_client(aiocoap_server.port, "request", "GET", "/hello")
    assert report["code"] == "2.05"
    assert report["payload"] == "hello from aiocoap"


BLOCK2 = 23


def block2_of(report: dict[str, object]) -> int | None:
    options = report["options"]
    assert isinstance(options, list)
    values = [int(value, 16) if value else 0 for number, value in options if number == BLOCK2]
    return values[0] if values else None


def test_our_client_large_response_from_aiocoap(aiocoap_server: RunningPeer) -> None:
    # Our CSM announces Block-Wise-Transfer and a Max-Message-Size above 1,152 (BERT), so
    # aiocoap sends the 4,000 bytes in one message instead of 1,024-byte blocks.
    report = coaptcp_client(aiocoap_server.port, "request", "GET", "/big")
    assert report["code"] == "2.05"
    assert report["payload"] == AIOCOAP_BIG.decode()
    assert block2_of(report) is None


def test_our_client_sends_large_put_to_aiocoap(aiocoap_server: RunningPeer) -> None:
    # 3,200 bytes: more than the base 1,152, so it goes out after aiocoap's CSM raised the
    # limit; aiocoap echoes it back whole.
    body = "payload " * 400
    put = coaptcp_client(aiocoap_server.port, "request", "PUT", "/echo", body)
    assert put["code"] == "2.04"
    assert put["payload"] == body
    assert block2_of(put) is None


def test_our_client_post_to_aiocoap(aiocoap_server: RunningPeer) -> None:
    post = coaptcp_client(aiocoap_server.port, "request", "POST", "/echo", "short")
    assert (post["code"], post["payload"]) == ("2.04", "short")
    assert block2_of(post) is None


def test_our_client_pipelines_requests_to_aiocoap(aiocoap_server: RunningPeer) -> None:
    report = coaptcp_client(aiocoap_server.port, "pipeline", "50", "/hello")
    assert report["codes"] == ["2.05"] * 50
    assert report["payloads"] == ["hello from aiocoap"]


def test_our_client_pings_aiocoap(aiocoap_server: RunningPeer) -> None:
    report = coaptcp_client(aiocoap_server.port, "ping")
    assert isinstance(report["rtt"], float)
    assert 0 <= report["rtt"] < 10
