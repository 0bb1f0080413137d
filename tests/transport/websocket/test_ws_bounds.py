"""Time and protocol bounds of the CoAP-over-WebSockets server, in memory.

* the opening handshake has ``ws_handshake_timeout`` seconds from accept, however its
  bytes trickle in (RFC 6455 section 4.2 puts no bound on it; we must);
* a frame, or a fragmented message (RFC 6455 section 5.4), has ``frame_timeout`` seconds
  from its first byte to its last, on our fast path and on autobahn's alike; then the
  peer gets our Abort (RFC 8323 section 5.6) and the close, as over TCP;
* a close frame with a code that must not be sent (RFC 6455 section 7.4) gets a close
  frame with 1002, a close reason that is not UTF-8 one with 1007, and then the close of
  the TCP connection (not a reset, which would lose that close frame);
* a handshake for a WebSocket version other than 13 gets 426 Upgrade Required with
  ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.4).

All timers run on a MemoryReactorClock.
"""

from __future__ import annotations

import struct

import pytest
from ws_helpers import WsPeer, opened
from ws_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    Frame,
    coap,
    frame,
    frame_header,
    get,
    handshake,
)

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_ws_frame
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.websocket.common import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    MAX_FRAGMENTS,
    valid_close_code,
)
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

LIMITS = Limits(ws_handshake_timeout=4.0, frame_timeout=6.0, keepalive_interval=None)


@pytest.fixture(params=[True, False], ids=["fast-path", "autobahn"])
def factory(request, clock) -> CoapWebSocketServerFactory:
    made = CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock, limits=LIMITS)
    made.protocol = type(  # type: ignore[misc]
        "Protocol", (made.protocol,), {"coap_fast_path": request.param}
    )
    return made


def abort_and_close(frames: list[Frame]) -> str:
    """The Abort's diagnostic; the frames must be that Abort, then a close with 1002."""
    assert [f.opcode for f in frames] == [OP_BINARY, OP_CLOSE], frames
    abort = frames[0].coap()
    assert abort.code == Code.ABORT
    assert frames[1].close_code == CLOSE_PROTOCOL_ERROR
    return abort.payload.decode()


# -- the opening handshake ----------------------------------------------------------------


def test_a_handshake_dripping_one_byte_at_a_time_is_dropped_at_the_timeout(
    factory, clock
) -> None:
    peer = WsPeer(factory)
    request = handshake()
    for byte in request[:-1]:  # one byte at a time: every byte is new traffic
        peer.send(bytes([byte]))
        clock.advance(3.9 / len(request))
    assert not peer.transport.aborted
    clock.advance(4.0)  # 4 s after accept, however recent the last byte
    assert peer.transport.aborted
    assert peer.transport.value() == b""
    peer.lose()
    assert len(factory.gate) == 0


def test_silent_connections_are_dropped_at_the_timeout_and_logged_once_a_minute(
    factory, clock
) -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        silent = [WsPeer(factory) for _ in range(3)]
        clock.advance(3.99)
        assert not any(p.transport.aborted for p in silent)
        clock.advance(0.01)
        assert all(p.transport.aborted for p in silent)
        clock.advance(60)
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if "handshake did not finish" in e.get("log_format", "")]
    assert len(lines) == 2  # the first at once, the others a minute later in one line
    assert lines[0]["timeout"] == 4.0 and lines[1]["count"] == 2


def test_a_completed_handshake_stops_the_handshake_timer(factory, clock) -> None:
    peer = opened(factory)
    clock.advance(100)
    assert not peer.transport.aborted
    peer.send(coap(get(b"a", "hello")))
    assert [f.coap().payload for f in peer.frames()] == [b"Hello, world!"]


def test_the_handshake_timeout_can_be_turned_off(clock) -> None:
    factory = CoapWebSocketServerFactory(
        None, reactor=clock, limits=Limits(ws_handshake_timeout=None)
    )
    peer = WsPeer(factory)
    clock.advance(10_000)
    assert not peer.transport.aborted and not clock.getDelayedCalls()


@pytest.mark.parametrize("version", ["8", "7", "12", "14", "0"])
def test_other_websocket_versions_get_426_with_version_13(factory, version) -> None:
    peer = WsPeer(factory)
    response = peer.upgrade(handshake().replace(b"Version: 13", f"Version: {version}".encode()))
    assert response.status == 426
    assert response.headers["sec-websocket-version"] == "13"
    assert response.headers["upgrade"].lower() == "websocket"
    assert peer.transport.calls[-1] == "loseConnection"


# -- frames and messages that never finish ------------------------------------------------


def test_a_frame_trickling_in_is_aborted_at_the_frame_timeout(factory, clock) -> None:
    peer = opened(factory)
    peer.send(frame_header(60_000))  # a 60 KB frame announced ...
    for _ in range(2):
        clock.advance(2.9)
        peer.send(b"\x00")  # ... and a byte every 2.9 s
    assert peer.frames() == []
    clock.advance(0.2)  # 6 s after the frame began
    diagnostic = abort_and_close(peer.frames())
    assert diagnostic == "a WebSocket frame took longer than 6 s to arrive"
    assert not peer.transport.aborted  # the close handshake runs, bounded as ever


def test_an_unfinished_frame_is_not_the_peers_fault_while_we_do_not_read(
    factory, clock
) -> None:
    peer = opened(factory)
    peer.send(frame_header(1000))
    peer.protocol._set_reading(False)  # the channel's flow control: a backlog waits
    clock.advance(60)
    assert peer.frames() == []
    peer.protocol._set_reading(True)
    clock.advance(5.9)
    assert peer.frames() == []  # the whole timeout again, from when we read again
    clock.advance(0.1)
    assert abort_and_close(peer.frames()) == "a WebSocket frame took longer than 6 s to arrive"


def test_half_a_frame_header_is_a_frame_too(factory, clock) -> None:
    peer = opened(factory)
    peer.send(frame_header(300)[:1])
    clock.advance(6)
    assert abort_and_close(peer.frames()) == "a WebSocket frame took longer than 6 s to arrive"


def test_a_fragmented_message_never_finished_is_aborted(factory, clock) -> None:
    peer = opened(factory)
    payload = encode_ws_frame(get(b"f", "hello"))
    peer.send(frame(payload[:1], OP_BINARY, fin=False))
    for _ in range(5):  # a whole continuation frame every second, never the last
        clock.advance(1)
        peer.send(frame(b"", OP_CONTINUATION, fin=False))
    peer.send(frame(b"", OP_PING))  # control frames in between change nothing
    assert [f.opcode for f in peer.frames()] == [0xA]  # the Pong
    clock.advance(1)
    diagnostic = abort_and_close(peer.frames())
    assert diagnostic == "a fragmented WebSocket message took longer than 6 s to finish"


def test_a_message_of_too_many_fragments_is_aborted(factory, clock) -> None:
    # Empty continuation frames add nothing to a message's size, yet autobahn keeps an
    # entry for each: 9 million of them in 28 s took a server +66 MiB (one connection).
    peer = opened(factory)
    payload = encode_ws_frame(get(b"f", "hello"))
    peer.send(frame(payload[:1], OP_BINARY, fin=False))
    peer.send(frame(b"", OP_CONTINUATION, fin=False) * (MAX_FRAGMENTS - 2))
    assert peer.frames() == []
    peer.send(frame(b"", OP_CONTINUATION, fin=False))  # the message's MAX_FRAGMENTS-th frame
    assert peer.frames() == []
    peer.send(frame(b"", OP_CONTINUATION, fin=False) * 1000)
    frames = peer.frames()
    assert [f.opcode for f in frames] == [OP_BINARY, OP_CLOSE], frames
    assert frames[0].coap().code == Code.ABORT
    assert frames[0].coap().payload.decode() == (
        f"a fragmented WebSocket message of more than {MAX_FRAGMENTS} frames")
    assert frames[1].close_code == CLOSE_MESSAGE_TOO_BIG


def test_a_message_of_many_fragments_within_the_bound_is_served(factory, clock) -> None:
    peer = opened(factory)
    payload = encode_ws_frame(get(b"f", "hello"))
    peer.send(frame(payload[:1], OP_BINARY, fin=False))
    peer.send(frame(b"", OP_CONTINUATION, fin=False) * (MAX_FRAGMENTS - 2))
    peer.send(frame(payload[1:], OP_CONTINUATION, fin=True))
    assert [f.coap().payload for f in peer.frames()] == [b"Hello, world!"]
    # The count starts again with the next message.
    peer.send(frame(payload[:1], OP_BINARY, fin=False))
    peer.send(frame(b"", OP_CONTINUATION, fin=False) * (MAX_FRAGMENTS - 2))
    peer.send(frame(payload[1:], OP_CONTINUATION, fin=True))
    assert [f.coap().payload for f in peer.frames()] == [b"Hello, world!"]
    assert not peer.transport.aborted


def test_a_fragmented_message_finished_in_time_is_served(factory, clock) -> None:
    peer = opened(factory)
    payload = encode_ws_frame(get(b"f", "hello"))
    peer.send(frame(payload[:2], OP_BINARY, fin=False))
    clock.advance(5)
    peer.send(frame(payload[2:], OP_CONTINUATION, fin=True))
    clock.advance(100)
    assert [f.coap().payload for f in peer.frames()] == [b"Hello, world!"]
    assert not peer.transport.aborted


def test_frames_completed_in_time_keep_the_connection(factory, clock) -> None:
    peer = opened(factory)
    request = coap(get(b"a", "hello"))
    # Every read ends inside the next frame, but every frame completes in 5 s.
    peer.send(request[:3])
    for _ in range(4):
        clock.advance(5)
        peer.send(request[3:] + request[:3])
    clock.advance(5)
    peer.send(request[3:])
    clock.advance(100)
    frames = peer.frames()
    assert [f.coap().payload for f in frames] == [b"Hello, world!"] * 5
    assert not peer.transport.aborted


def test_a_connection_that_closes_cancels_the_frame_timer(factory, clock) -> None:
    peer = opened(factory)
    peer.send(frame_header(1000))
    assert peer.protocol._frame_call is not None
    peer.lose()
    assert peer.protocol._frame_call is None
    assert clock.getDelayedCalls() == []  # no timer of any kind is left behind


def test_the_frame_timeout_can_be_turned_off(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()),
        reactor=clock,
        limits=Limits(frame_timeout=None, keepalive_interval=None),
    )
    peer = opened(factory)
    peer.send(frame_header(1000))
    clock.advance(299)  # the idle timeout (300 s) is then the bound (keepalive off here)
    assert peer.frames() == []


# -- close frames -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1014, 1015, 2999, 5000, 65535])
def test_an_invalid_close_code_gets_1002_then_the_close(factory, code) -> None:
    peer = opened(factory)
    peer.send(frame(struct.pack("!H", code) + b"bye", OP_CLOSE))
    (close,) = peer.frames()
    assert close.opcode == OP_CLOSE and close.close_code == CLOSE_PROTOCOL_ERROR
    assert close.close_reason == f"invalid close code {code} (RFC 6455 section 7.4)"
    # Closed after that frame was written, not reset (a reset loses the frame).
    assert peer.transport.calls[-1] == "loseConnection" and not peer.transport.aborted


def test_a_close_reason_that_is_not_utf8_gets_1007(factory) -> None:
    peer = opened(factory)
    peer.send(frame(struct.pack("!H", CLOSE_NORMAL) + b"\xff\xfe", OP_CLOSE))
    (close,) = peer.frames()
    assert close.close_code == CLOSE_INVALID_PAYLOAD
    assert peer.transport.calls[-1] == "loseConnection" and not peer.transport.aborted


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
def test_a_valid_close_code_is_answered_normally(factory, code) -> None:
    peer = opened(factory)
    peer.send(frame(struct.pack("!H", code), OP_CLOSE))
    (close,) = peer.frames()
    assert close.opcode == OP_CLOSE and close.close_code == CLOSE_NORMAL  # the reply
    assert not peer.transport.aborted


def test_valid_close_codes() -> None:
    valid = [c for c in range(70000) if valid_close_code(c)]
    assert valid == [
        *range(1000, 1004),
        *range(1007, 1014),
        *range(3000, 5000),
    ]
