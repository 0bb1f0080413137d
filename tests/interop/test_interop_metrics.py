"""``twistd coaptcp --metrics ... --access-log FILE`` after a scripted run of requests.

A real server (a child process) on coap+tcp and coap+ws; our CLI sends 3 GET /hello,
1 PUT /store, 1 GET /nonexistent over coap+tcp and 1 GET /hello over coap+ws (RFC 8323
section 8).  ``GET /metrics`` must then give these counts exactly, and the access log one
JSON line per request with the same fields.  A second server, with coaps+tcp beside
coap+tcp, gets the rare events on raw sockets (a malformed frame, an upload over
``--max-body-size``, a connection that closes during its TLS handshake) and must count
each exactly once, under its reason or limit.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import (
    COMMAND_TIMEOUT,
    Reader,
    RunningPeer,
    cli_path,
    coaptcp_server_argv,
    free_port,
    run,
    run_server,
)
from prometheus_client import parser as prometheus_parser

pytestmark = pytest.mark.interop

PUT_BODY = b"metered"
HELLO = b"Hello, world!"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics_port: int) -> Samples:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=COMMAND_TIMEOUT) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


class Metered:
    def __init__(self, peer: RunningPeer, ws_port: int, metrics_port: int, log: Path):
        self.peer = peer
        self.ws_port = ws_port
        self.metrics_port = metrics_port
        self.access_log = log

    def scrape(self) -> Samples:
        return scrape(self.metrics_port)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    port, ws_port, metrics_port = free_port(), free_port(), free_port()
    log = tmp_path_factory.mktemp("access") / "access.jsonl"
    argv = [
        *coaptcp_server_argv(port),
        "--ws", f"tcp:{ws_port}:interface=127.0.0.1",
        "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
        "--access-log", str(log),
    ]
    with run_server(argv, port) as peer:
        yield Metered(peer, ws_port, metrics_port, log)
    text = peer.log_text()
    assert "Traceback" not in text and "Unhandled" not in text, text


def client(*args: str) -> bytes:
    result = run([cli_path(), *args])
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_scripted_requests_counted_exactly(metered: Metered) -> None:
    base = f"coap+tcp://127.0.0.1:{metered.peer.port}"
    for _ in range(3):
        assert client(f"{base}/hello") == HELLO
    client("-m", "PUT", "-e", PUT_BODY.decode(), f"{base}/store")
    client(f"{base}/nonexistent")
    assert client(f"coap+ws://127.0.0.1:{metered.ws_port}/hello") == HELLO

    # The clients have exited; their connections close on the server soon after.
    deadline = time.monotonic() + COMMAND_TIMEOUT
    samples = metered.scrape()
    while (
        sum(v for k, v in samples.items() if k[0] == "coap_connections_open")
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
        samples = metered.scrape()

    tcp, ws = "coap+tcp", "coap+ws"
    tcp_listener = f"tcp:{metered.peer.port}:interface=127.0.0.1"
    ws_listener = f"tcp:{metered.ws_port}:interface=127.0.0.1"
    requests = {
        key: value for key, value in samples.items() if key[0] == "coap_requests_total"
    }
    assert requests == {
        ("coap_requests_total", labels(transport=tcp, method="GET", code="2.05")): 3.0,
        ("coap_requests_total", labels(transport=tcp, method="PUT", code="2.04")): 1.0,
        ("coap_requests_total", labels(transport=tcp, method="GET", code="4.04")): 1.0,
        ("coap_requests_total", labels(transport=ws, method="GET", code="2.05")): 1.0,
    }
    duration = "coap_request_duration_seconds_count"
    assert samples[(duration, labels(transport=tcp, method="GET"))] == 4.0
    assert samples[(duration, labels(transport=tcp, method="PUT"))] == 1.0
    assert samples[(duration, labels(transport=ws, method="GET"))] == 1.0
    inf = ("coap_request_duration_seconds_bucket", labels(transport=tcp, method="GET", le="+Inf"))
    assert samples[inf] == 4.0
    assert samples[("coap_request_bytes_total", labels(transport=tcp))] == len(PUT_BODY)
    assert samples[("coap_request_bytes_total", labels(transport=ws))] == 0
    assert samples[("coap_response_bytes_total", labels(transport=tcp))] == 3 * len(HELLO)
    assert samples[("coap_response_bytes_total", labels(transport=ws))] == len(HELLO)
    # coap+tcp: the five requests' connections and run_server's readiness probe, each
    # counted by the listener that accepted it.
    for transport, listener, count in (("tcp", tcp_listener, 6.0), ("ws", ws_listener, 1.0)):
        which = labels(transport=transport, listener=listener)
        assert samples[("coap_connections_accepted_total", which)] == count
        assert samples[("coap_connections_closed_total", which)] == count
        assert samples[("coap_connections_open", which)] == 0
    # Nothing went wrong: no Abort, no limit reached, no notification.
    assert not [key for key in samples if key[0] == "coap_aborts_sent_total"]
    assert {
        key: value for key, value in samples.items() if key[0] == "coap_limit_rejections_total"
    } == {("coap_limit_rejections_total", labels(limit="max_upload_bytes")): 0}
    assert samples[("coap_notifications_sent_total", frozenset())] == 0
    assert samples[("coap_uploads_held_bytes", frozenset())] == 0

    lines = [json.loads(line) for line in metered.access_log.read_text().splitlines()]
    assert [
        (line["transport"], line["method"], line["path"], line["code"],
         line["bytes_in"], line["bytes_out"])
        for line in lines
    ] == [
        (tcp, "GET", "hello", "2.05", 0, len(HELLO)),
        (tcp, "GET", "hello", "2.05", 0, len(HELLO)),
        (tcp, "GET", "hello", "2.05", 0, len(HELLO)),
        (tcp, "PUT", "store", "2.04", len(PUT_BODY), 0),
        (tcp, "GET", "nonexistent", "4.04", 0, 0),
        (ws, "GET", "hello", "2.05", 0, len(HELLO)),
    ]
    for line in lines:
        assert line["peer"].startswith("127.0.0.1:")
        assert line["duration"] >= 0
        assert len(bytes.fromhex(line["token"])) <= 8
        assert line["time"] > 0
    # Each request came on a connection of its own, from a port of its own.
    assert len({line["peer"] for line in lines}) == 6


# -- rare events: Aborts, a limit, a TLS handshake ----------------------------------------------


def frame(message: object) -> bytes:
    from coaptcp.core.framing import encode_frame

    return encode_frame(message)  # type: ignore[arg-type]


def raw_exchange(port: int, data: bytes) -> list[Any]:
    """Send our CSM and ``data`` on a new connection; every message until it closes."""
    from coaptcp.core.codes import Code
    from coaptcp.core.message import Message

    with socket.create_connection(("127.0.0.1", port), timeout=COMMAND_TIMEOUT) as raw:
        raw.sendall(frame(Message(Code.CSM)) + data)
        raw.shutdown(socket.SHUT_WR)  # then the server answers and closes
        return Reader(raw).rest()


@pytest.fixture(scope="module")
def eventful(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPeer, int, int]]:
    from coaptcp.testing.certs import write_test_setup

    certs = write_test_setup(tmp_path_factory.mktemp("certs"))
    port, tls_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        *coaptcp_server_argv(port),
        "--tls", f"tcp:{tls_port}:interface=127.0.0.1",
        "--certificate", str(certs["server"]), "--private-key", str(certs["server_key"]),
        "--max-body-size", "1024",
        "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
    ]
    with run_server(argv, port) as peer:
        yield peer, tls_port, metrics_port
    text = peer.log_text()
    assert "Traceback" not in text and "Unhandled" not in text, text


def test_rare_events_counted_exactly(eventful: tuple[RunningPeer, int, int]) -> None:
    from coaptcp.core.blocks import Block
    from coaptcp.core.codes import Code
    from coaptcp.core.message import Message
    from coaptcp.core.options import OptionNumber, Options

    peer, tls_port, metrics_port = eventful
    # A frame with the reserved token length 15 (RFC 8323 section 3.2): an Abort.
    answers = raw_exchange(peer.port, b"\x0f" + b"\x00" * 15)
    assert [m.code for m in answers] == [Code.CSM, Code.ABORT]
    # Two Block1 blocks of 1024 bytes to /store: the second goes past --max-body-size.
    blocks = b"".join(
        frame(Message(
            Code.PUT, b"u",
            Options.build(uri_path=["store"]).add(OptionNumber.BLOCK1,
                                                  Block(num, True, 6).encode()),
            b"x" * 1024,
        ))
        for num in (0, 1)
    )
    answers = raw_exchange(peer.port, blocks)
    assert [m.code for m in answers] == [Code.CSM, Code.CONTINUE, Code.REQUEST_ENTITY_TOO_LARGE]
    # A TCP connection to the coaps+tcp listener that closes before any handshake.
    socket.create_connection(("127.0.0.1", tls_port), timeout=COMMAND_TIMEOUT).close()

    deadline = time.monotonic() + COMMAND_TIMEOUT
    samples = scrape(metrics_port)
    while (
        ("coap_tls_handshake_failures_total", labels(reason="closed")) not in samples
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
        samples = scrape(metrics_port)

    def family(name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {key[1]: value for key, value in samples.items() if key[0] == name}

    assert family("coap_aborts_sent_total") == {labels(reason="malformed"): 1.0}
    assert family("coap_limit_rejections_total") == {
        labels(limit="max_body_size"): 1.0,
        labels(limit="max_upload_bytes"): 0.0,
    }
    assert family("coap_tls_handshake_failures_total") == {labels(reason="closed"): 1.0}
    # Both listeners share one factory: their connections are told apart by listener.
    # coap+tcp: the readiness probe and the two raw connections; coaps+tcp: the one.
    accepted = family("coap_connections_accepted_total")
    assert accepted[labels(transport="tcp", listener=f"tcp:{peer.port}:interface=127.0.0.1")] == 3
    assert accepted[labels(transport="tcp", listener=f"tcp:{tls_port}:interface=127.0.0.1")] == 1
