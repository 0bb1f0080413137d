"""Cost of the sans-I/O UDP endpoint (coaptcp.core.udp.messaging), without sockets.

- requests/s through ``datagram_received`` + ``send_response`` (a CON GET answered
  piggybacked, as a server does for most requests), one process, no I/O;
- memory per deduplication entry (its reply kept) and per peer, with tracemalloc;
- memory of the deduplication cache full at its default bound.

Run: ``python benchmarks/udp_core.py``.  Figures for docs/hardening.md.
"""

from __future__ import annotations

import time
import tracemalloc

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.config import UdpLimits
from coaptcp.core.udp.events import UdpRequestReceived
from coaptcp.core.udp.framing import MessageType, encode_datagram
from coaptcp.core.udp.messaging import UdpEndpoint

REQUEST = Message(Code.GET, b"\x01\x02\x03\x04", Options([(11, "hello")]))
RESPONSE_OPTIONS = Options([(12, 0)])
PAYLOAD = b"Hello, world!"


def requests(count: int, peers: int) -> list[tuple[bytes, tuple[str, int]]]:
    return [
        (encode_datagram(MessageType.CON, n & 0xFFFF, REQUEST), ("10.0.0.1", n % peers))
        for n in range(count)
    ]


def serve(endpoint: UdpEndpoint, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
    now = 0.0
    for data, peer in batch:
        now += 0.0001
        for event in endpoint.datagram_received(data, peer, now):
            if isinstance(event, UdpRequestReceived):
                token = event.request.message.token
                response = Message(Code.CONTENT, token, RESPONSE_OPTIONS, PAYLOAD)
                endpoint.send_response(event.request, response, now)
        endpoint.datagrams_to_send()


def throughput() -> None:
    for peers in (1, 1000):
        batch = requests(60_000, peers)
        best = 0.0
        for _ in range(3):
            endpoint = UdpEndpoint(empty_ack_delay=1.0)
            start = time.perf_counter()
            serve(endpoint, batch)
            best = max(best, len(batch) / (time.perf_counter() - start))
        print(f"piggybacked CON GET, {peers} peers: {best:,.0f} requests/s (best of 3)")


def memory() -> None:
    limits = UdpLimits(max_dedup_entries_per_peer=65_536)
    for peers, count in ((1, 20_000), (20_000, 20_000)):
        endpoint = UdpEndpoint(limits=limits)
        batch = requests(count, peers)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        serve(endpoint, batch)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(
            f"{count} answered requests from {peers} peers: {after - before:,} bytes, "
            f"{(after - before) / count:,.0f} per dedup entry "
            f"({endpoint.dedup_entries} entries, {endpoint.peers} peers)"
        )
    endpoint = UdpEndpoint()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    serve(endpoint, requests(UdpLimits().max_dedup_entries * 2, 1000))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"dedup cache at its default bound ({endpoint.dedup_entries} entries, "
        f"{endpoint.layer.dedup.reply_bytes:,} reply bytes): {after - before:,} bytes"
    )


if __name__ == "__main__":
    throughput()
    memory()
