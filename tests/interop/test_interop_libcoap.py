"""Interop with libcoap 4.3.1 (Debian's libcoap3-bin) over coap+tcp on loopback.

Both directions: libcoap's ``coap-client-openssl`` against our ``twistd coaptcp``, and our
client against libcoap's ``coap-server-openssl``.
"""

from __future__ import annotations

import pytest
from peers import RunningPeer, coaptcp_client, libcoap_client

from coaptcp.tap.demo import LargeResource

pytestmark = pytest.mark.interop


def uri(peer: RunningPeer, path: str) -> str:
    return f"coap+tcp://127.0.0.1:{peer.port}{path}"


# -- libcoap's client against our server ----------------------------------------------------


def test_libcoap_client_get(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/hello"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, world!"


def test_libcoap_client_discovery(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/.well-known/core"))
    assert result.returncode == 0, result.stderr
    links = result.stdout.decode().split(",")
    assert '</hello>;rt="demo.hello";ct=0;title="Greeting"' in links
    assert any(link.startswith("</large>") and "sz=4000" in link for link in links)


def test_libcoap_client_discovery_query(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/.well-known/core?rt=demo.st*"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("</store>")
    assert "</hello>" not in result.stdout.decode()


def test_libcoap_client_put_then_get(coaptcp_server: RunningPeer) -> None:
    put = libcoap_client("-m", "put", "-e", "written by libcoap", uri(coaptcp_server, "/store"))
    assert put.returncode == 0, put.stderr
    get = libcoap_client(uri(coaptcp_server, "/store"))
    assert get.stdout == b"written by libcoap"


def test_libcoap_client_post_from_file(coaptcp_server: RunningPeer, tmp_path) -> None:
    body = bytes(range(256)) * 3
    source = tmp_path / "body.bin"
    source.write_bytes(body)
    post = libcoap_client("-m", "post", "-f", str(source), uri(coaptcp_server, "/store"))
    assert post.returncode == 0, post.stderr
    assert post.stdout == b"stored 768 bytes"
    get = libcoap_client(uri(coaptcp_server, "/store"))
    assert get.stdout == body


def test_libcoap_client_response_larger_than_1152(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/large"))
    assert result.returncode == 0, result.stderr
    assert len(LargeResource.body) == 4000
    assert result.stdout == LargeResource.body


def test_libcoap_client_not_found(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/no/such/thing"))
    assert b"4.04" in result.stdout + result.stderr


def test_libcoap_client_method_not_allowed(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client("-m", "delete", uri(coaptcp_server, "/hello"))
    assert b"4.05" in result.stdout + result.stderr


# -- our client against libcoap's server ----------------------------------------------------


def test_our_client_get_from_libcoap(libcoap_server: RunningPeer) -> None:
    report = coaptcp_client(libcoap_server.port, "request", "GET", "/")
    assert report["code"] == "2.05"
    assert "libcoap" in str(report["payload"])
    # libcoap advertises its Max-Message-Size in its CSM; we must have learnt it.
    assert report["peer_max_message_size"] == 8388864


def test_our_client_put_large_body_to_libcoap(libcoap_server: RunningPeer) -> None:
    body = "0123456789abcdef" * 250  # 4,000 bytes: more than the base 1,152
    created = coaptcp_client(libcoap_server.port, "request", "PUT", "/interop-large", body)
    assert created["code"] in ("2.01", "2.04")
    fetched = coaptcp_client(libcoap_server.port, "request", "GET", "/interop-large")
    assert fetched["code"] == "2.05"
    assert fetched["payload"] == body


def test_our_client_pipelines_requests_to_libcoap(libcoap_server: RunningPeer) -> None:
    coaptcp_client(libcoap_server.port, "request", "PUT", "/pipelined", "same answer")
    report = coaptcp_client(libcoap_server.port, "pipeline", "50", "/pipelined")
    assert report["codes"] == ["2.05"] * 50
    assert report["payloads"] == ["same answer"]


def test_our_client_pings_libcoap(libcoap_server: RunningPeer) -> None:
    # libcoap answers with an empty-token Pong (INTEROP-NOTES 1); we must still match it.
    report = coaptcp_client(libcoap_server.port, "ping")
    assert isinstance(report["rtt"], float)
    assert 0 <= report["rtt"] < 10


def test_our_client_gets_404_from_libcoap(libcoap_server: RunningPeer) -> None:
    report = coaptcp_client(libcoap_server.port, "request", "GET", "/not-there")
    assert report["code"] == "4.04"
