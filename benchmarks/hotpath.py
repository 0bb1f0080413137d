"""In-memory micro-benchmarks of the server hot path and the codec (no sockets).

    python benchmarks/hotpath.py [--requests N] [--batch N] [--profile]

``server``: a CoapProtocol on a StringTransport answers pipelined ``GET /hello`` requests
fed in chunks of ``--batch`` (default 16: what each read carries at 16 connections x 16 in
flight, measured by counting reads under loadgen), as a busy connection delivers them:
decode, dispatch through the Site, encode, write.  ``codec``: encode_frame and
StreamDecoder alone.  Each prints operations per second; compare runs on the same
machine only.  ``--profile`` prints the top of a
cProfile of the server run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from twisted.internet.testing import MemoryReactorClock, StringTransport

from coaptcp.core import Code, Message, Options, StreamDecoder, encode_frame
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory

BATCH = 16


def requests_chunk(start: int, batch: int = BATCH) -> bytes:
    options = Options.build(uri_path=["hello"])
    return b"".join(
        encode_frame(Message(Code.GET, (start + i).to_bytes(4, "big"), options))
        for i in range(batch)
    )


def make_site(metrics: bool = False, access_log: str | None = None) -> Site:
    """The demo site, metered as ``--metrics`` and ``--access-log`` make it."""
    if not metrics and access_log is None:
        return Site(make_demo_site())
    from coaptcp.tap.metrics import make_site as metered

    options = {"metrics": "tcp:0" if metrics else None, "access-log": access_log}
    return metered(make_demo_site(), None, options)


def bench_server(
    total: int, batch: int = BATCH, metrics: bool = False, access_log: str | None = None
) -> float:
    factory = CoapFactory(make_site(metrics, access_log), reactor=MemoryReactorClock())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(encode_frame(Message(Code.CSM)))
    chunks = [requests_chunk(i * batch, batch) for i in range(16)]
    rounds = total // batch
    started = time.perf_counter()
    for n in range(rounds):
        protocol.dataReceived(chunks[n % 16])
        if n % 16 == 15:
            transport.clear()
    elapsed = time.perf_counter() - started
    return rounds * batch / elapsed


def bench_codec(total: int) -> tuple[float, float]:
    message = Message(
        Code.CONTENT, b"\x01\x02\x03\x04", Options.build(content_format=0), b"Hello, world!"
    )
    started = time.perf_counter()
    for _ in range(total):
        encode_frame(message)
    encode_rate = total / (time.perf_counter() - started)
    data = encode_frame(message) * BATCH
    decoder = StreamDecoder(1 << 20)
    started = time.perf_counter()
    for _ in range(total // BATCH):
        decoder.feed(data)
        while decoder.next_message() is not None:
            pass
    decode_rate = (total // BATCH) * BATCH / (time.perf_counter() - started)
    return encode_rate, decode_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=BATCH, help="requests per read")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--server-only", action="store_true", help="run only the server benchmark, print nothing"
    )
    parser.add_argument("--metrics", action="store_true", help="as twistd coaptcp --metrics")
    parser.add_argument("--access-log", metavar="FILE", help="as twistd coaptcp --access-log")
    args = parser.parse_args()
    if args.server_only:  # for instruction counting: valgrind --tool=callgrind ...
        bench_server(args.requests, args.batch, args.metrics, args.access_log)
        return
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(bench_server, args.requests, args.batch, args.metrics, args.access_log)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    rate = max(
        bench_server(args.requests, args.batch, args.metrics, args.access_log)
        for _ in range(3)
    )
    encode_rate, decode_rate = bench_codec(args.requests)
    print(
        f"server: {rate:,.0f} requests/s "
        f"(in memory, one connection, {args.batch} per read, best of 3)"
    )
    print(f"codec:  {encode_rate:,.0f} encodes/s, {decode_rate:,.0f} decodes/s")


if __name__ == "__main__":
    main()
