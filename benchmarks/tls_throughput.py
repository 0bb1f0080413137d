"""Requests per second of our server over coap+tcp and coaps+tcp, same load, on loopback.

``loadgen.c`` speaks plain TCP only, so this runner has its own small closed-loop client:
C connections, each with a batch of B ``GET /hello`` written at once; the client writes
every connection's batch, then reads every batch's responses, and repeats.  The server is
pinned to CPU 0 and the client to CPU 1; the server's CPU use over the measured window is
read from /proc, so the table shows whether the server was the bottleneck (then ~100%)
and what one request costs it in CPU time.

Usage::

    python benchmarks/tls_throughput.py [--conns 1,4] [--batch 16] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from tls_handshake import PSK, context_for, server

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.testing.certs import write_test_setup

CSM = encode_frame(Message(Code.CSM))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:port (from /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process listens on {port}")


class Connection:
    def __init__(self, port: int, context: SSL.Context | None, batch: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel: Any = sock
        if context is not None:
            self.channel = SSL.Connection(context, sock)
            self.channel.set_connect_state()
            self.channel.set_tlsext_host_name(b"localhost")
            self.channel.do_handshake()
        self.decoder = StreamDecoder(1 << 20)
        self.batch = b"".join(
            encode_frame(Message(Code.GET, bytes([i]), Options.build(uri_path=["hello"])))
            for i in range(batch)
        )
        self.size = batch
        self.channel.sendall(CSM)
        self.receive(1)  # the server's CSM

    def receive(self, count: int) -> None:
        got = 0
        while got < count:
            data = self.channel.recv(65536)
            if not data:
                raise RuntimeError("server closed the connection")
            self.decoder.feed(data)
            while (message := self.decoder.next_message()) is not None:
                if message.code == Code.CONTENT or message.code == Code.CSM:
                    got += 1
                else:
                    raise RuntimeError(f"unexpected {message}")


def run(port: int, context: SSL.Context | None, conns: int, batch: int, duration: float,
        pid: int) -> dict[str, float]:
    connections = [Connection(port, context, batch) for _ in range(conns)]
    for _ in range(20):  # warm-up
        for c in connections:
            c.channel.sendall(c.batch)
        for c in connections:
            c.receive(c.size)
    done = 0
    cpu_start, start = cpu_seconds(pid), time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        for c in connections:
            c.channel.sendall(c.batch)
        for c in connections:
            c.receive(c.size)
        done += conns * batch
    cpu = cpu_seconds(pid) - cpu_start
    for c in connections:
        c.channel.close()
    return {"rps": done / elapsed, "server_cpu_pct": 100 * cpu / elapsed,
            "server_us_per_request": 1e6 * cpu / done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", default="1,4")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    arguments = parser.parse_args()
    modes = ["tcp", "tls13-cert", "tls12-cert", "tls13-psk", "tls12-psk"]
    assert PSK
    print(f"{'mode':11} {'conns':>5} {'batch':>5} {'req/s':>8} {'srv CPU':>8} {'srv us/req':>10}")
    with tempfile.TemporaryDirectory(prefix="coaptcp-tls-rps-") as tmp:
        workdir = Path(tmp)
        paths = write_test_setup(workdir / "pki", ["localhost", "127.0.0.1"])
        with server(workdir, paths) as (tcp_port, tls_port):
            pid = server_pid(tcp_port)
            for conns in [int(c) for c in arguments.conns.split(",")]:
                for mode in modes:
                    context = context_for(mode, paths["ca"])
                    port = tcp_port if context is None else tls_port
                    result = run(port, context, conns, arguments.batch, arguments.duration, pid)
                    print(f"{mode:11} {conns:>5} {arguments.batch:>5} {result['rps']:>8.0f} "
                          f"{result['server_cpu_pct']:>7.0f}% "
                          f"{result['server_us_per_request']:>10.1f}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
