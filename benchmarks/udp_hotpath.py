"""Instructions per request of the CoAP-over-UDP server path, for callgrind (no sockets).

    python benchmarks/udp_hotpath.py [--requests N] [--peers N] [--profile | --callgrind]

A :class:`~coaptcp.transport.udp.CoapDatagramProtocol` serving the demo Site gets CON
``GET /hello`` datagrams through ``datagramReceived`` from ``--peers`` client addresses
(fresh message IDs, so each one is served and its reply kept for deduplication, RFC 7252
section 4.5) and writes each piggybacked ACK to a transport that only counts them.  The
``--callgrind`` runs itself twice under ``valgrind --tool=callgrind`` (with ``--requests``
and with none) and prints the difference divided by ``--requests``: instructions per
request, the figure in benchmarks/README.md.  Without ``--server-only`` it prints
requests per second (best of 3); compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import subprocess
import sys
import time
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.framing import MessageType, encode_datagram
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.udp import CoapDatagramProtocol


class CountingTransport:
    """Takes datagrams and counts them (what the protocol calls of a UDP port)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, datagram: bytes, addr: Any = None) -> None:
        self.written += 1

    def getHost(self) -> Any:
        return None


def datagrams(count: int, peers: int) -> list[tuple[bytes, tuple[str, int]]]:
    options = Options.build(uri_path=["hello"])
    return [
        (
            encode_datagram(
                MessageType.CON, n & 0xFFFF, Message(Code.GET, n.to_bytes(4, "big"), options)
            ),
            ("127.0.0.1", 40000 + n % peers),
        )
        for n in range(count)
    ]


def bench(total: int, peers: int) -> float:
    clock = MemoryReactorClock()
    protocol = CoapDatagramProtocol(Site(make_demo_site()), reactor=clock)
    transport = CountingTransport()
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    batch = datagrams(total, peers)
    started = time.perf_counter()
    for data, peer in batch:
        clock.advance(0.0001)
        protocol.datagramReceived(data, peer)
    elapsed = time.perf_counter() - started
    assert transport.written == total, transport.written
    return total / elapsed if elapsed else 0.0


def instructions(requests: int, peers: int) -> int:
    """Instructions callgrind counts for one ``--server-only`` run of this script."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--server-only",
        "--requests", str(requests), "--peers", str(peers),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit("no instruction count in callgrind's output:\n" + done.stderr)
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--peers", type=int, default=16)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--callgrind", action="store_true", help="print instructions per request (valgrind)"
    )
    parser.add_argument(
        "--server-only", action="store_true", help="one run, print nothing (for callgrind)"
    )
    args = parser.parse_args()
    if args.requests < 0 or args.peers < 1:
        parser.error("--requests must be >= 0 and --peers >= 1")
    if args.server_only:
        bench(args.requests, args.peers)
        return
    if args.callgrind:
        if args.requests < 1:
            parser.error("--callgrind needs --requests >= 1")
        total = instructions(args.requests, args.peers) - instructions(0, args.peers)
        print(
            f"udp server: {total / args.requests:,.0f} instructions per request "
            f"(callgrind, {args.requests} requests, {args.peers} peers)"
        )
        return
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(bench, args.requests, args.peers)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    rate = max(bench(args.requests, args.peers) for _ in range(3))
    print(f"udp server: {rate:,.0f} requests/s (in memory, {args.peers} peers, best of 3)")


if __name__ == "__main__":
    main()
