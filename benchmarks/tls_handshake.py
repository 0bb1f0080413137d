"""Connection setup cost of coaps+tcp against coap+tcp on our server, on loopback.

Starts one ``python -m twisted coaptcp`` with a plain TCP listener and a TLS listener
(certificate and PSK, throwaway credentials), then, from a lean blocking client (pyOpenSSL
on a socket, the contexts coaptcp's own client uses), repeats for each mode:

    connect -> [TLS handshake] -> CSM + GET /hello -> server CSM + 2.05 -> close

and reports the medians and 90th percentiles of the TLS handshake (from TCP connect
until the client's handshake is done), of the first GET's round trip, and of the whole
setup.  A second measurement sends GETs one after another on one open connection: the
per-request cost of TLS once it is set up.

Usage::

    python benchmarks/tls_handshake.py [--count 300] [--warmup 30] [--json FILE]

The server runs pinned to CPU 0 and the client to CPU 1 when there are two CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.testing.certs import write_test_setup
from coaptcp.transport.tls.settings import ClientTLSSettings

REQUEST = encode_frame(Message(Code.CSM)) + encode_frame(
    Message(Code.GET, b"\x01", Options.build(uri_path=["hello"]))
)
GET = encode_frame(Message(Code.GET, b"\x02", Options.build(uri_path=["hello"])))
PSK = (b"bench", b"a benchmark key of 32 bytes....!")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(workdir: Path, paths: dict[str, Path]) -> Iterator[tuple[int, int]]:
    tcp, tls = free_port(), free_port()
    psk_file = workdir / "keys.txt"
    psk_file.write_text(f"{PSK[0].decode()} hex:{PSK[1].hex()}\n")
    argv = [sys.executable, "-m", "twisted", "--log-level=warn", "coaptcp",
            "--tcp", f"tcp:{tcp}:interface=127.0.0.1",
            "--tls", f"tcp:{tls}:interface=127.0.0.1",
            "--certificate", str(paths["server"]), "--private-key", str(paths["server_key"]),
            "--psk-file", str(psk_file)]
    pinned = len(os.sched_getaffinity(0)) >= 2
    if pinned:
        argv = ["taskset", "-c", "0", *argv]
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", tls), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (workdir / "server.log").read_text()
                    raise SystemExit(f"server did not start:\n{log_text}")
                time.sleep(0.05)
        if pinned:
            os.sched_setaffinity(0, {1})
        yield tcp, tls
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def read_messages(receive: Callable[[int], bytes], count: int) -> list[Message]:
    decoder = StreamDecoder(1 << 20)
    messages: list[Message] = []
    while len(messages) < count:
        data = receive(65536)
        if not data:
            raise RuntimeError(f"closed after {messages}")
        decoder.feed(data)
        while (message := decoder.next_message()) is not None:
            messages.append(message)
    return messages


def context_for(mode: str, ca: Path) -> SSL.Context | None:
    if mode == "tcp":
        return None
    psk = PSK if "psk" in mode else None
    context = ClientTLSSettings(ca_file=ca, psk=psk).context
    if "tls12" in mode:
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
    return context


def one_setup(port: int, context: SSL.Context | None) -> tuple[float, float, float]:
    """(handshake, first GET round trip, total) in seconds for one fresh connection."""
    start = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if context is None:
            handshaken = time.perf_counter()
            sock.sendall(REQUEST)
            messages = read_messages(sock.recv, 2)
        else:
            tls = SSL.Connection(context, sock)
            tls.set_connect_state()
            tls.set_tlsext_host_name(b"localhost")
            tls.do_handshake()
            handshaken = time.perf_counter()
            tls.sendall(REQUEST)
            messages = read_messages(tls.recv, 2)
        done = time.perf_counter()
        assert messages[1].code == Code.CONTENT and messages[1].payload == b"Hello, world!"
    finally:
        sock.close()
    return handshaken - start, done - handshaken, done - start


def sequential_gets(port: int, context: SSL.Context | None, count: int) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    channel: Any = sock
    if context is not None:
        channel = SSL.Connection(context, sock)
        channel.set_connect_state()
        channel.set_tlsext_host_name(b"localhost")
        channel.do_handshake()
    channel.sendall(REQUEST)
    read_messages(channel.recv, 2)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        channel.sendall(GET)
        (response,) = read_messages(channel.recv, 1)
        times.append(time.perf_counter() - start)
        assert response.code == Code.CONTENT
    sock.close()
    return times


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--json")
    arguments = parser.parse_args()
    modes = ["tcp", "tls13-cert", "tls12-cert", "tls13-psk", "tls12-psk"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="coaptcp-tls-bench-") as tmp:
        workdir = Path(tmp)
        paths = write_test_setup(workdir / "pki", ["localhost", "127.0.0.1"])
        with server(workdir, paths) as (tcp_port, tls_port):
            for mode in modes:
                context = context_for(mode, paths["ca"])
                port = tcp_port if context is None else tls_port
                for _ in range(arguments.warmup):
                    one_setup(port, context)
                runs = [one_setup(port, context) for _ in range(arguments.count)]
                gets = sequential_gets(port, context, arguments.count * 3)
                results[mode] = {
                    "handshake": summary([r[0] for r in runs]),
                    "first_get": summary([r[1] for r in runs]),
                    "setup_total": summary([r[2] for r in runs]),
                    "get_on_open_connection": summary(gets),
                    "setups_per_s": round(arguments.count / sum(r[2] for r in runs), 1),
                }
    print(f"{'mode':11} {'handshake':>17} {'first GET':>17} {'setup total':>17} "
          f"{'GET, open conn':>17} {'setups/s':>9}")
    print(f"{'':11} {'median / p90 ms':>17} {'median / p90 ms':>17} {'median / p90 ms':>17} "
          f"{'median / p90 ms':>17}")
    for mode, result in results.items():
        cells = [f"{result[k]['median_ms']:.3f} / {result[k]['p90_ms']:.3f}"
                 for k in ("handshake", "first_get", "setup_total", "get_on_open_connection")]
        print(f"{mode:11} " + " ".join(f"{c:>17}" for c in cells)
              + f" {result['setups_per_s']:>9}")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
