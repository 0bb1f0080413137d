"""The resource directory at scale, in memory: what a registration costs, and a lookup.

    python benchmarks/directory_scale.py [--registrations N] [--lookups M] [--query Q]

Registers N endpoints (three links each, as a small sensor registers) through the
``Site``, as requests from N addresses, then runs M lookups of ``/rd-lookup/res?Q``.
Prints the memory the registrations hold (``tracemalloc``: Python's own allocations, so
deterministic) and rates (wall-clock: noisy on a shared machine).  For instruction counts
run it under callgrind twice with different N (or M) and divide the differences::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/directory_scale.py --registrations 5000 --quiet
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.directory import DirectoryLimits, install_directory
from coaptcp.server import Request, Resource, Response, Site

LINKS = (b'</sensors/temp>;rt=temperature;if=sensor;obs,'
         b'</sensors/hum>;rt=humidity;if=sensor,</fw>;rt=firmware')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=100)
    parser.add_argument("--query", default="ep=node5000",
                        help="the resource lookup's query, '&'-separated")
    parser.add_argument("--quiet", action="store_true", help="print nothing (for callgrind)")
    parser.add_argument("--changing", action="store_true",
                        help="a registration changes between lookups (no cached answers)")
    parser.add_argument("--no-memory", action="store_true",
                        help="no tracemalloc (it slows the registrations down)")
    args = parser.parse_args()
    count = args.registrations
    root = Resource()
    limits = DirectoryLimits(max_registrations=max(count, 1),
                             max_total_links=max(3 * count, 1))
    directory = install_directory(root, reactor=MemoryReactorClock(), limits=limits)
    site = Site(root)
    register = Options.build(uri_path=["rd"], content_format=40)
    requests = [
        Request(Code.POST, b"t", register.add(15, f"ep=node{i}"), LINKS,
                peer=IPv4Address("UDP", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 5683))
        for i in range(count)
    ]
    if not args.no_memory:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for request in requests:
        answer = site.handle(request)
        assert isinstance(answer, Response) and answer.code == Code.CREATED, answer
    registering = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0] - before
    del requests
    assert len(directory) == count
    lookup = Options.build(uri_path=["rd-lookup", "res"],
                           uri_query=[q for q in args.query.split("&") if q])
    started = time.perf_counter()
    size = 0
    for _ in range(args.lookups):
        if args.changing:
            directory.version += 1  # what any registration, update or removal does
        answer = site.handle(Request(Code.GET, b"t", lookup, b"",
                                     peer=IPv4Address("UDP", "192.0.2.1", 5683)))
        assert isinstance(answer, Response) and answer.code == Code.CONTENT, answer
        size = len(answer.payload)
    looking = time.perf_counter() - started
    with_texts = tracemalloc.get_traced_memory()[0] - before if not args.no_memory else 0
    if not args.no_memory:
        tracemalloc.stop()
    if args.quiet:
        return
    memory = "" if args.no_memory else f"{held / max(count, 1):,.0f} bytes each (tracemalloc), "
    print(f"{count} registrations of 3 links: {memory}{count / registering:,.0f} "
          f"registrations/s")
    if args.lookups:
        cached = "" if args.changing else " (answers cached after the first)"
        print(f"/rd-lookup/res?{args.query}: {size} bytes, "
              f"{args.lookups / looking:,.1f} lookups/s{cached}")
        if not args.no_memory:
            print(f"after the lookups: {with_texts / max(count, 1):,.0f} bytes per "
                  f"registration (the resolved links written once, the cached answers)")


if __name__ == "__main__":
    main()
