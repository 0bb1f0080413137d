"""Our reading and writing of the common WebSocket data frames
(coaptcp.transport.websocket.frames), beside
autobahn (RFC 6455 section 5, RFC 8323 section 4.2).

The fast path must not change a single byte on the wire: every scenario here is played
twice against the server, once with ``coap_fast_path`` on and once with autobahn alone,
with the client's bytes cut into reads in many ways, and the server's answers (and its
closes and aborts) must be the same.  Each scenario also checks what the answer is, so
that two equally broken runs do not pass.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import txaio
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from ws_helpers import WsPeer
from ws_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    coap,
    csm,
    frame,
    get,
    handshake,
    parse_frames,
)

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.core.framing import encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.websocket.common import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
)
from coaptcp.transport.websocket.frames import encode_frames, mask_payload, next_frame
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

# -- coaptcp.transport.websocket.frames on its own -------------------------------------------------


def naive_mask(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 125, 2047, 2048, 2049, 4096, 65536])
def test_mask_payload_is_the_xor_with_the_repeated_key(size: int) -> None:
    payload = random.Random(size).randbytes(size)
    for key in (b"\x00\x00\x00\x00", b"\xff\x01\x80\x7f", b"\x37\xfa\x21\x3d"):
        masked = mask_payload(payload, key)
        assert masked == naive_mask(payload, key)
        assert mask_payload(masked, key) == payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_masked_frames_round_trip(size: int) -> None:
    payloads = [b"\x01" * size, b"\x02\x03"]
    data = encode_frames(payloads, masked=True)
    first = next_frame(data, 0, 1 << 20, True)
    assert first is not None and first[0] == payloads[0]
    second = next_frame(data, first[1], 1 << 20, True)
    assert second == (payloads[1], len(data))
    # Each frame has its own random key (section 5.3): the two 2-byte frames differ.
    twice = encode_frames([b"ab", b"ab"], masked=True)
    assert twice[2:6] != twice[10:14]


def test_next_frame_reads_one_client_frame_and_says_where_the_next_begins() -> None:
    data = frame(b"one") + frame(b"") + frame(b"x" * 300) + frame(b"y" * 70000)
    pos = 0
    payloads = []
    while (found := next_frame(data, pos, 1 << 20, True)) is not None:
        payload, pos = found
        payloads.append(payload)
    assert payloads == [b"one", b"", b"x" * 300, b"y" * 70000]
    assert pos == len(data)


def with_first_byte(data: bytes, value: int) -> bytes:
    return bytes([value]) + data[1:]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("text", frame(b"abc", OP_TEXT)),
        ("ping", frame(b"abc", OP_PING)),
        ("pong", frame(b"abc", OP_PONG)),
        ("close", frame(b"\x03\xe8", OP_CLOSE)),
        ("not final", frame(b"abc", OP_BINARY, fin=False)),
        ("continuation", frame(b"abc", OP_CONTINUATION)),
        ("RSV1", with_first_byte(frame(b"abc"), 0xC2)),
        ("RSV3", with_first_byte(frame(b"abc"), 0x92)),
        ("reserved opcode", with_first_byte(frame(b"abc"), 0x83)),
        ("unmasked", bytes([0x82, 3]) + b"abc"),
        ("16-bit length under 126", bytes([0x82, 0xFE, 0, 5]) + b"\0\0\0\0" + b"x" * 5),
        ("64-bit length under 65536", bytes([0x82, 0xFF]) + struct.pack("!Q", 5) + b"\0" * 9),
        ("64-bit length with the top bit", bytes([0x82, 0xFF]) + b"\x80" + b"\0" * 11),
        ("over the limit", frame(b"z" * 101)),
        ("empty", b""),
        ("one byte", b"\x82"),
    ],
)
def test_next_frame_leaves_everything_unusual_to_autobahn(name: str, data: bytes) -> None:
    assert next_frame(data, 0, 100, True) is None, name


def test_next_frame_waits_for_the_whole_frame() -> None:
    for payload in (b"abc", b"x" * 200, b"y" * 66000):
        data = frame(payload)
        for cut in range(len(data)) if len(payload) < 1000 else (0, 1, 5, 9, 13, 14, len(data) - 1):
            assert next_frame(data[:cut], 0, 1 << 20, True) is None
        assert next_frame(data, 0, 1 << 20, True) == (payload, len(data))


def test_next_frame_for_a_client_reads_unmasked_server_frames_only() -> None:
    server_frames = encode_frames([b"abc", b"d" * 200])
    first = next_frame(server_frames, 0, 1000, False)
    assert first == (b"abc", 5)
    assert next_frame(server_frames, 5, 1000, False) == (b"d" * 200, len(server_frames))
    assert next_frame(frame(b"abc"), 0, 1000, False) is None  # masked: autobahn's to refuse


# -- frames we write are the frames autobahn writes --------------------------------------


def open_peer(clock: MemoryReactorClock, fast: bool, **factory_kwargs: Any) -> WsPeer:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site(clock)), reactor=clock, **factory_kwargs
    )
    peer = WsPeer(factory)
    peer.protocol.coap_fast_path = fast
    assert peer.upgrade(handshake()).status == 101
    peer.frames()  # the CSM
    return peer


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537, 100000])
def test_written_frames_are_byte_identical_to_autobahns(clock, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    ours = open_peer(clock, True)
    assert ours.protocol._fast_out
    before = len(ours.transport.value())
    ours.protocol._send_frames([payload, b"\x00\x45"])
    written = ours.transport.value()[before:]
    theirs = open_peer(clock, False)
    assert not theirs.protocol._fast_out
    before = len(theirs.transport.value())
    theirs.protocol.sendMessage(payload, isBinary=True)
    theirs.protocol.sendMessage(b"\x00\x45", isBinary=True)
    assert written == theirs.transport.value()[before:]
    assert written == encode_frames([payload, b"\x00\x45"])
    frames, rest = parse_frames(written)
    assert rest == b"" and [(f.fin, f.opcode, f.payload) for f in frames] == [
        (True, OP_BINARY, payload),
        (True, OP_BINARY, b"\x00\x45"),
    ]
    # autobahn's traffic counters count our frames as they count its own.
    ours_stats = ours.protocol.trafficStats
    theirs_stats = theirs.protocol.trafficStats
    for name in (
        "outgoingWebSocketMessages",
        "outgoingWebSocketFrames",
        "outgoingOctetsAppLevel",
        "outgoingOctetsWebSocketLevel",
        "outgoingOctetsWireLevel",
    ):
        assert getattr(ours_stats, name) == getattr(theirs_stats, name), name


def test_no_fast_path_with_autobahn_options_it_does_not_reproduce(clock) -> None:
    factory = CoapWebSocketServerFactory(Site(make_demo_site(clock)), reactor=clock)
    factory.setProtocolOptions(autoFragmentSize=2)
    peer = WsPeer(factory)
    peer.upgrade(handshake())
    assert not peer.protocol._fast_in and not peer.protocol._fast_out
    first = peer.frames()
    assert len(first) > 1 and [f.fin for f in first][-2:] == [False, True]  # fragmented CSM
    assert first[1].opcode == OP_CONTINUATION


# -- the same answers whatever the reads: differential runs --------------------------------


@dataclass
class Run:
    """What the server did with one way of cutting the client's bytes into reads."""

    wire: bytes
    events: list[str]  # the transport calls, runs of writes folded into one
    parsed_by_autobahn: int  # frames autobahn parsed (processData calls)
    delivered: int  # CoAP messages the channel received

    @property
    def frames(self) -> list[Frame]:
        frames, rest = parse_frames(self.wire)
        assert rest == b""
        return frames


def play(
    chunks: list[bytes],
    fast: bool,
    *,
    before: Callable[[WsPeer], None] | None = None,
    **factory_kwargs: Any,
) -> Run:
    clock = MemoryReactorClock()
    previous = txaio.config.loop
    txaio.config.loop = clock
    try:
        peer = open_peer(clock, fast, **factory_kwargs)
        peer.send(coap(csm(1 << 20)))
        if before is not None:
            before(peer)
        start = len(peer.transport.value())
        calls_start = len(peer.transport.calls)
        protocol = peer.protocol
        parsed = [0]
        original = protocol.processData

        def counting() -> bool:
            parsed[0] += 1
            result: bool = original()
            return result

        protocol.processData = counting
        delivered = [0]
        receive = protocol.channel.ws_message_received

        def counting_receive(data: bytes) -> None:
            delivered[0] += 1
            receive(data)

        protocol.channel.ws_message_received = counting_receive  # type: ignore[method-assign]
        for chunk in chunks:
            peer.send(chunk)
        clock.advance(0)
        events: list[str] = []
        for call in peer.transport.calls[calls_start:]:
            if not (call == "write" and events and events[-1] == "write"):
                events.append(call)
        return Run(peer.transport.value()[start:], events, parsed[0], delivered[0])
    finally:
        txaio.config.loop = previous


def cuts(data: bytes, seed: int) -> list[list[bytes]]:
    """Whole, byte by byte, and random cuts of ``data``."""
    ways = [[data], [data[i : i + 1] for i in range(len(data))]]
    rng = random.Random(seed)
    for _ in range(6):
        points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
        ways.append([data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)])
    return ways


def differential(data: bytes, seed: int = 0, *, across_cuts: bool = True, **kwargs: Any) -> Run:
    """Every cut of ``data``, fast and not: the same bytes and closes; the whole-read run.

    With ``across_cuts`` every cut must also give what one whole read gives (not so after
    a violation autobahn detects: what it reads of the rest depends on the reads).
    """
    reference = play([data], False, **kwargs)
    whole: Run | None = None
    for way in cuts(data, seed):
        slow = play(way, False, **kwargs)
        run = play(way, True, **kwargs)
        assert run.wire == slow.wire, [len(c) for c in way]
        assert run.events == slow.events, [len(c) for c in way]
        assert run.delivered == slow.delivered
        if across_cuts:
            assert run.wire == reference.wire, [len(c) for c in way]
            assert run.events == reference.events, [len(c) for c in way]
        if len(way) == 1:
            whole = run
    assert whole is not None
    return whole


def requests(*tokens: str, path: str = "hello") -> bytes:
    return b"".join(coap(get(token.encode(), path)) for token in tokens)


def codes(run: Run) -> list[Any]:
    return [f.coap().code if f.opcode == OP_BINARY else f.opcode for f in run.frames]


def test_requests_in_every_cut_get_the_same_answers() -> None:
    long_path = Message(Code.GET, b"L", Options.build(uri_path=["hello"], uri_query=["q" * 200]))
    put = Message(Code.PUT, b"P", Options.build(uri_path=["store"]), b"s" * 65600)
    data = (
        requests("a", "b", "c")
        + coap(long_path)  # a 16-bit length
        + coap(put)  # a 64-bit length
        + requests("d", path="store")
        + requests("e", path="large")
    )
    run = differential(data)
    assert run.parsed_by_autobahn == 0  # all of it read by the fast path
    answers = [f.coap() for f in run.frames]
    assert [m.token for m in answers] == [b"a", b"b", b"c", b"L", b"P", b"d", b"e"]
    assert answers[0].payload == b"Hello, world!"
    assert answers[4].code == Code.CHANGED
    assert answers[5].payload == b"s" * 65600  # written with a 64-bit length
    assert len(answers[6].payload) == 4000  # a 16-bit length
    assert run.events == ["write"]  # all answers of the read in one write


def test_websocket_ping_between_requests_gets_its_pong_in_order() -> None:
    run = differential(requests("a", "b") + frame(b"hi", OP_PING) + requests("c"), seed=1)
    assert codes(run) == [Code.CONTENT, Code.CONTENT, OP_PONG, Code.CONTENT]
    assert run.frames[2].payload == b"hi"
    assert run.parsed_by_autobahn > 0


def test_fragmented_message_between_requests() -> None:
    data = encode_ws_frame(get(b"f", "hello"))
    fragmented = frame(data[:3], OP_BINARY, fin=False) + frame(data[3:], OP_CONTINUATION)
    run = differential(requests("a") + fragmented + requests("b"), seed=2)
    assert [f.coap().token for f in run.frames] == [b"a", b"f", b"b"]


def test_text_message_gets_abort_and_close_1003_and_nothing_after_it() -> None:
    run = differential(requests("a") + frame(b"GET", OP_TEXT) + requests("late"), seed=3)
    assert codes(run) == [Code.CONTENT, Code.ABORT, OP_CLOSE]
    assert run.frames[2].close_code == CLOSE_UNSUPPORTED_DATA
    assert run.events == ["write"]  # no close of the TCP connection yet: the peer's turn


def test_oversized_message_gets_abort_and_close_1009() -> None:
    run = differential(
        requests("a") + frame(b"\x00" * 200) + requests("late"), seed=4, max_message_size=100
    )
    assert codes(run) == [Code.CONTENT, Code.ABORT, OP_CLOSE]
    assert run.frames[2].close_code == CLOSE_MESSAGE_TOO_BIG


def test_message_of_exactly_our_limit_is_read() -> None:
    message = Message(Code.PUT, b"P", Options.build(uri_path=["store"]), b"s" * 200)
    put = coap(message)
    size = len(encode_ws_frame(message))
    run = differential(requests("a") + put, seed=5, max_message_size=size)
    assert codes(run) == [Code.CONTENT, Code.CHANGED]
    assert run.parsed_by_autobahn == 0


def test_unmasked_client_frame_fails_the_connection_as_autobahn_does() -> None:
    unmasked = bytes([0x82, 0]) + b""  # an empty, unmasked binary frame
    run = differential(requests("a") + unmasked + requests("late"), seed=6)
    assert codes(run) == [Code.CONTENT, OP_CLOSE]
    assert run.frames[1].close_code == CLOSE_PROTOCOL_ERROR


def test_rsv_bits_fail_the_connection_as_autobahn_does() -> None:
    rsv = with_first_byte(coap(get(b"r", "hello")), 0xC2)
    run = differential(requests("a") + rsv + requests("late"), seed=7, across_cuts=False)
    assert codes(run) == [Code.CONTENT, OP_CLOSE]
    assert run.frames[1].close_code == CLOSE_PROTOCOL_ERROR


def test_non_minimal_length_fails_the_connection_as_autobahn_does() -> None:
    payload = encode_ws_frame(get(b"n", "hello"))
    head = bytes([0x82, 0xFE]) + len(payload).to_bytes(2, "big") + b"\0\0\0\0"
    run = differential(requests("a") + head + payload + requests("late"), seed=8)
    assert codes(run) == [Code.CONTENT, OP_CLOSE]
    assert run.frames[1].close_code == CLOSE_PROTOCOL_ERROR


def test_empty_binary_message_gets_the_cores_abort() -> None:
    run = differential(requests("a") + frame(b"") + requests("late"), seed=9)
    assert codes(run) == [Code.CONTENT, Code.ABORT, OP_CLOSE]
    assert run.frames[2].close_code == CLOSE_PROTOCOL_ERROR


def test_close_frame_after_requests_flushes_answers_then_replies() -> None:
    close = frame(CLOSE_NORMAL.to_bytes(2, "big") + b"bye", OP_CLOSE)
    run = differential(requests("a", "b") + close + requests("late"), seed=10)
    assert codes(run) == [Code.CONTENT, Code.CONTENT, OP_CLOSE]
    assert run.frames[2].close_code == CLOSE_NORMAL
    assert run.events == ["write", "loseConnection"]  # the server closes TCP after its reply


def test_release_then_more_frames_are_read_by_autobahn_while_closing() -> None:
    release = coap(Message(Code.RELEASE, payload=b"bye"))
    run = differential(requests("a") + release + requests("late") + frame(b"p", OP_PING), seed=11)
    assert codes(run)[0] == Code.CONTENT
    assert run.frames[1].opcode == OP_CLOSE and run.frames[1].close_code == CLOSE_NORMAL
    assert Code.CONTENT not in codes(run)[2:]  # nothing answered once the close is sent
    # What follows our close frame is autobahn's to read, as it was before the fast path.
    assert play([requests("a") + release + requests("late")], True).parsed_by_autobahn > 0


def test_reads_while_the_channel_is_paused_are_held_alike() -> None:
    observe = Message(Code.GET, b"o", Options.build(observe=0, uri_path=["time"]))

    def observe_then_pause(peer: WsPeer) -> None:
        peer.send(coap(observe))
        assert peer.frames()[-1].coap().token == b"o"
        peer.protocol.channel.pause()
        peer.factory.reactor.advance(5)  # notifications now wait for resume()

    # A paused channel (the peer does not read) processes none of the requests it reads:
    # both paths hold them, and answer nothing, not even a notification.
    run = differential(requests("a", "b", "c"), seed=12, before=observe_then_pause)
    assert run.frames == []
    assert run.delivered == 3


def test_the_fast_path_resumes_after_autobahn_finished_a_frame(clock) -> None:
    peer = open_peer(clock, True)
    peer.send(coap(csm()))
    data = requests("a")
    peer.send(data[:3])  # an incomplete frame: autobahn buffers it
    assert peer.protocol.data or peer.protocol.current_frame is not None
    peer.send(data[3:] + requests("b"))
    assert not peer.protocol.data and peer.protocol.current_frame is None
    calls: list[int] = []
    original = peer.protocol.processData
    peer.protocol.processData = lambda: calls.append(1) or original()
    peer.send(requests("c", "d"))
    assert calls == []  # read by the fast path again
    assert [f.coap().token for f in peer.frames()] == [b"a", b"b", b"c", b"d"]


def test_incoming_traffic_is_counted_as_autobahn_counts_it() -> None:
    stats = {}
    for fast in (True, False):
        clock = MemoryReactorClock()
        previous = txaio.config.loop
        txaio.config.loop = clock
        try:
            peer = open_peer(clock, fast)
            peer.send(coap(csm()) + requests("a", "b", "c"))
            s = peer.protocol.trafficStats
            stats[fast] = (
                s.incomingOctetsWireLevel,
                s.incomingOctetsWebSocketLevel,
                s.incomingOctetsAppLevel,
                s.incomingWebSocketFrames,
                s.incomingWebSocketMessages,
                s.outgoingOctetsWireLevel,
                s.outgoingWebSocketMessages,
            )
        finally:
            txaio.config.loop = previous
    assert stats[True] == stats[False]
    assert stats[True][3] == 4


def test_answers_to_a_read_are_written_before_the_abort_of_a_later_frame() -> None:
    # The idle limits are off, so only the peer's frames make the server write.
    run = differential(
        requests("a", "b") + frame(b"\x00" * 10, OP_TEXT),
        seed=13,
        limits=Limits(idle_timeout=None),
    )
    assert codes(run) == [Code.CONTENT, Code.CONTENT, Code.ABORT, OP_CLOSE]


def test_default_limit_allows_the_largest_frame_we_read() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE > 65535  # so 64-bit lengths reach the fast path
    big = os.urandom(8)
    assert next_frame(frame(big), 0, DEFAULT_MAX_MESSAGE_SIZE, True) == (big, 14)


# -- the client side: masked frames out, unmasked frames in --------------------------------


@pytest.mark.parametrize(
    ("client_fast", "server_fast"), [(True, False), (False, True), (True, True)]
)
def test_client_and_server_understand_each_other_with_either_side_fast(
    clock, client_fast: bool, server_fast: bool
) -> None:
    from twisted.internet.address import IPv4Address
    from twisted.test import iosim

    from coaptcp.transport.websocket.client import CoapWebSocketClientFactory

    server_address = IPv4Address("TCP", "127.0.0.1", 8080)
    client_address = IPv4Address("TCP", "127.0.0.1", 50000)
    server_factory = CoapWebSocketServerFactory(make_demo_site(clock), reactor=clock)
    client_factory = CoapWebSocketClientFactory("example.org", 8080, reactor=clock)
    server = server_factory.buildProtocol(client_address)
    client = client_factory.buildProtocol(server_address)
    server.coap_fast_path = server_fast
    client.coap_fast_path = client_fast
    pump = iosim.connect(
        server,
        iosim.FakeTransport(server, True, server_address, client_address),
        client,
        iosim.FakeTransport(client, False, client_address, server_address),
        greet=True,
    )
    pump.flush()
    assert client._fast_out is client_fast and client._fast_mask_out is client_fast
    assert server._fast_in is server_fast and server._fast_masked_in  # client frames: masked
    answers: list[Any] = []
    for body in (b"small", b"m" * 3000, b"l" * 65000):
        client.request(Code.PUT, Options.build(uri_path=["store"]), body).addBoth(answers.append)
        client.request(Code.GET, Options.build(uri_path=["store"])).addBoth(answers.append)
        pump.flush()
    assert [a.code for a in answers] == [Code.CHANGED, Code.CONTENT] * 3
    assert [a.payload for a in answers[1::2]] == [b"small", b"m" * 3000, b"l" * 65000]
    ping = client.ping()
    pump.flush()
    assert ping.called


# -- any bytes: next_frame never raises, and what it reads is a well-formed frame ------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300),
    pos=st.integers(min_value=0, max_value=40),
    masked=st.booleans(),
    limit=st.integers(min_value=0, max_value=200),
)
def test_next_frame_on_any_bytes_returns_none_or_a_frame_it_could_have_written(
    data: bytes, pos: int, masked: bool, limit: int
) -> None:
    found = next_frame(data, pos, limit, masked)
    if found is None:
        return
    payload, end = found
    assert pos < end <= len(data)
    assert len(payload) <= limit
    frame_bytes = data[pos:end]
    unmasked = encode_frames([payload])  # minimal lengths only
    if masked:
        header_length = len(unmasked) - len(payload)
        expected_header = bytearray(unmasked[:header_length])
        expected_header[1] |= 0x80  # the MASK bit
        assert frame_bytes[:header_length] == expected_header
        key = frame_bytes[header_length : header_length + 4]
        assert mask_payload(frame_bytes[header_length + 4 :], key) == payload
    else:
        assert frame_bytes == unmasked


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=8),
    payload=st.binary(max_size=300),
    frame_masked=st.booleans(),
    reader_masked=st.booleans(),
    limit=st.integers(min_value=0, max_value=400),
    flip=st.one_of(
        st.none(), st.tuples(st.integers(min_value=0, max_value=20), st.integers(1, 255))
    ),
    suffix=st.binary(max_size=8),
)
def test_next_frame_reads_exactly_the_frames_it_should(
    prefix: bytes,
    payload: bytes,
    frame_masked: bool,
    reader_masked: bool,
    limit: int,
    flip: tuple[int, int] | None,
    suffix: bytes,
) -> None:
    frame_bytes = bytearray(encode_frames([payload], masked=frame_masked))
    if flip is not None and flip[0] < len(frame_bytes):
        frame_bytes[flip[0]] ^= flip[1]
    data = prefix + bytes(frame_bytes) + suffix
    found = next_frame(data, len(prefix), limit, reader_masked)
    if flip is None:
        expected = (
            (payload, len(prefix) + len(frame_bytes))
            if frame_masked == reader_masked and len(payload) <= limit
            else None
        )
        assert found == expected
    elif found is not None:  # a damaged frame may still be some other valid frame
        body, end = found
        assert len(prefix) < end <= len(data) and len(body) <= limit
