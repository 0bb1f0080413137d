#!/usr/bin/env python3
"""How connections spread over two Twisted processes listening on one port.

    python3 benchmarks/accept_balance.py [--workers 2] [--connections 64]

Two ways of sharing a listening port between worker processes, each worker a Twisted
reactor that adopts its socket with ``adoptStreamPort`` and answers every new connection
with its pid:

* ``shared``: one socket, inherited by every worker (they all accept from one queue);
* ``reuseport``: one ``SO_REUSEPORT`` socket per worker on the same address (what
  ``twistd coaptcp --workers N`` does; the kernel picks a socket by a hash of the
  connection's addresses).

For each, it opens connections one at a time and closes each (``sequential``), one at a
time and keeps them (``held``), and all at once before reading any answer (``burst``),
and prints how many each worker accepted.  Loopback only.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import sys
import time

HOST = "127.0.0.1"


def worker(sock: socket.socket) -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    class Pid(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"%d\n" % os.getpid())

    reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, Factory.forProtocol(Pid))
    reactor.run()


def listeners(mode: str, workers: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    port = 0
    for _ in range(1 if mode == "shared" else workers):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode == "reuseport":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, port))
        port = sock.getsockname()[1]
        sock.listen(128)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            raise ConnectionError("closed without an answer")
        data += chunk
    return data.strip()


def run(mode: str, workers: int, connections: int) -> dict[str, list[int]]:
    socks = listeners(mode, workers)
    port = socks[0].getsockname()[1]
    children = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                worker(socks[0] if mode == "shared" else socks[i])
            finally:
                os._exit(0)
        children.append(pid)
    try:
        deadline = time.monotonic() + 20
        ready: set[bytes] = set()
        while not ready and time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=1) as probe:
                    ready.add(answer(probe))
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # let the other workers reach their reactor loop too
        results: dict[str, collections.Counter[bytes]] = {}
        counts: collections.Counter[bytes] = collections.Counter()
        for _ in range(connections):
            with socket.create_connection((HOST, port)) as conn:
                counts[answer(conn)] += 1
        results["sequential"] = counts
        counts, held = collections.Counter(), []
        for _ in range(connections):
            conn = socket.create_connection((HOST, port))
            counts[answer(conn)] += 1
            held.append(conn)
        results["held"] = counts
        burst = []
        for _ in range(connections):
            conn = socket.socket()
            conn.connect((HOST, port))
            burst.append(conn)
        results["burst"] = collections.Counter(answer(conn) for conn in burst)
        for conn in held + burst:
            conn.close()
        pids = [str(pid).encode() for pid in children]
        return {name: [c[pid] for pid in pids] for name, c in results.items()}
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not 2 <= args.workers <= 16 or not 1 <= args.connections <= 1000:
        parser.error("--workers 2-16, --connections 1-1000")
    for mode in ("shared", "reuseport"):
        for round_ in range(args.rounds):
            result = run(mode, args.workers, args.connections)
            text = "  ".join(f"{k} {'/'.join(map(str, v))}" for k, v in result.items())
            print(f"{mode:<9} round {round_ + 1}: {text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
