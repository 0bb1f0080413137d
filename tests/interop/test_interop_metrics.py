"""``twistd coaptcp --metrics ... --access-log FILE`` after a scripted run of requests.

A real server (a child process) on coap+tcp and coap+ws; our CLI sends 3 GET /hello,
1 PUT /store, 1 GET /nonexistent over coap+tcp and 1 GET /hello over coap+ws (RFC 8323
section 8).  ``GET /metrics`` must then give these counts exactly, and the access log one
JSON line per request with the same fields.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import (
    COMMAND_TIMEOUT,
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


class Metered:
    def __init__(self, peer: RunningPeer, ws_port: int, metrics_port: int, log: Path):
        self.peer = peer
        self.ws_port = ws_port
        self.metrics_port = metrics_port
        self.access_log = log

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=COMMAND_TIMEOUT) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/plain")
            text = answer.read().decode()
        samples = {}
        for family in prometheus_parser.text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples


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
        samples[("coap_connections_open", labels(transport="tcp"))]
        or samples[("coap_connections_open", labels(transport="ws"))]
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
        samples = metered.scrape()

    tcp, ws = "coap+tcp", "coap+ws"
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
    # coap+tcp: the five requests' connections and run_server's readiness probe.
    for transport, count in (("tcp", 6.0), ("ws", 1.0)):
        assert samples[("coap_connections_accepted_total", labels(transport=transport))] == count
        assert samples[("coap_connections_closed_total", labels(transport=transport))] == count
        assert samples[("coap_connections_open", labels(transport=transport))] == 0
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
