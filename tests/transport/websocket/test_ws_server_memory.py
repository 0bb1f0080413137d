"""The CoAP-over-WebSockets server in memory (RFC 8323 section 4).

A hand-written WebSocket client (ws_wire) plays the peer against
:class:`CoapWebSocketServerProtocol` on a recording StringTransport; autobahn's timers run on
a MemoryReactorClock (see conftest).  No sockets, no sleeps.
"""

from __future__ import annotations

import json

import pytest
from ws_helpers import WsPeer
from ws_wire import (
    ACCEPT,
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
    frame_header,
    get,
    handshake,
)

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.core.framing import encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.transport.websocket.common import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    uri_host_from_header,
)
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory


def opened(peer: WsPeer, host: str = "example.org:8080") -> list[Frame]:
    """Upgrade, send our CSM, and return the server's frames so far (its CSM first)."""
    response = peer.upgrade(handshake(host=host))
    assert response.status == 101, response
    peer.send(coap(csm(65536)))
    return peer.frames()


def close_frame(code: int = CLOSE_NORMAL) -> bytes:
    return frame(code.to_bytes(2, "big"), OP_CLOSE)


def abort_then_close(frames: list[Frame]) -> tuple[Message, Frame]:
    """The last two frames must be a binary Abort and then a close frame."""
    assert [f.opcode for f in frames[-2:]] == [OP_BINARY, OP_CLOSE], frames
    abort = frames[-2].coap()
    assert abort.code == Code.ABORT, abort
    return abort, frames[-1]


# -- the opening handshake (section 4.1) -----------------------------------------------------


def test_handshake_selects_coap_and_the_csm_comes_first(peer: WsPeer) -> None:
    response = peer.upgrade(handshake(protocols=("mqtt", "coap")))
    assert response.status == 101
    assert response.headers["sec-websocket-protocol"] == "coap"
    assert response.headers["sec-websocket-accept"] == ACCEPT
    frames = peer.frames()
    assert len(frames) == 1
    first = frames[0]
    assert first.opcode == OP_BINARY and first.fin
    assert first.payload[0] >> 4 == 0, "Len must be 0 over WebSockets (section 4.2)"
    message = first.coap()
    assert message.code == Code.CSM
    assert message.options.get_uint(2) == DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize("protocols", [None, ("mqtt",), ("COAP",), ("coap-v2", "wamp.2.json")])
def test_handshake_without_coap_subprotocol_is_refused(peer: WsPeer, protocols) -> None:
    response = peer.upgrade(handshake(protocols=protocols))
    assert response.status == 400
    assert '"coap"' in response.reason and "RFC 8323 section 4.1" in response.reason
    assert "sec-websocket-accept" not in response.headers
    assert response.body_and_rest == b""
    assert peer.transport.disconnecting
    assert not peer.factory.connections


def test_handshake_on_another_path_gets_404(peer: WsPeer) -> None:
    response = peer.upgrade(handshake(path="/coap"))
    assert response.status == 404
    assert "/.well-known/coap" in response.reason
    assert peer.transport.disconnecting


def test_plain_get_without_upgrade_gets_426(peer: WsPeer) -> None:
    response = peer.upgrade(b"GET /.well-known/coap HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert response.status == 426


def test_mounted_factory_accepts_any_path(clock) -> None:
    factory = CoapWebSocketServerFactory(None, path=None, reactor=clock)
    peer = WsPeer(factory)
    assert peer.upgrade(handshake(path="/anything/else")).status == 101


# -- messages (sections 4.2 and 4.3) -----------------------------------------------------------


def test_one_unfragmented_binary_message_per_coap_message(peer: WsPeer) -> None:
    opened(peer)
    peer.send(coap(get(b"a", "hello")) + coap(get(b"b", "hello")) + coap(get(b"c", "large")))
    frames = peer.frames()
    assert [f.opcode for f in frames] == [OP_BINARY] * 3
    assert all(f.fin for f in frames)
    answers = {f.coap().token: f.coap() for f in frames}
    assert answers[b"a"].payload == answers[b"b"].payload == b"Hello, world!"
    assert len(answers[b"c"].payload) == 4000  # in one message, not fragmented
    assert all(f.payload[0] >> 4 == 0 for f in frames)


def test_handshake_and_first_messages_in_one_segment(peer: WsPeer) -> None:
    peer.upgrade(handshake() + coap(csm()) + coap(get(b"t", "hello")))
    frames = peer.frames()
    assert [f.coap().code for f in frames] == [Code.CSM, Code.CONTENT]


def test_fragmented_message_from_the_peer_is_reassembled(peer: WsPeer) -> None:
    opened(peer)
    data = encode_ws_frame(get(b"f", "hello"))
    peer.send(frame(data[:3], OP_BINARY, fin=False) + frame(data[3:], OP_CONTINUATION))
    (answer,) = peer.frames()
    assert answer.coap().payload == b"Hello, world!"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.org:8080", "example.org"),
        ("Example.ORG", "example.org"),
        ("[2001:db8::1]:8080", "2001:db8::1"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_host_header_is_the_default_uri_host(peer: WsPeer, host: str, expected: str) -> None:
    opened(peer, host=host)
    peer.send(coap(get(b"i", "info")))
    (answer,) = peer.frames()
    assert json.loads(answer.coap().payload)["host"] == expected


def test_uri_host_option_overrides_the_host_header(peer: WsPeer) -> None:
    opened(peer, host="example.org")
    request = Message(Code.GET, b"u", Options.build(uri_host="other.example", uri_path=["info"]))
    peer.send(coap(request))
    (answer,) = peer.frames()
    assert json.loads(answer.coap().payload)["host"] == "other.example"


def test_uri_host_from_header_helper() -> None:
    assert uri_host_from_header("") is None
    assert uri_host_from_header("[::1]") == "::1"
    assert uri_host_from_header("h:1") == "h"


# -- violations: Abort, then the close frame -------------------------------------------------


def test_text_message_gets_abort_then_close_1003(peer: WsPeer) -> None:
    opened(peer)
    peer.send(frame(b"GET /hello", OP_TEXT))
    abort, close = abort_then_close(peer.frames())
    assert b"text WebSocket message" in abort.payload
    assert close.close_code == CLOSE_UNSUPPORTED_DATA
    # Both frames went to the transport before any close of the TCP connection.
    assert peer.transport.calls == ["write"] * len(peer.transport.calls)
    assert not peer.transport.disconnecting


def test_non_zero_len_gets_abort_then_close_1002(peer: WsPeer) -> None:
    opened(peer)
    tcp_style = bytes([0x31, Code.GET, 0xAA]) + b"\xb5hello"  # Len = 3
    peer.send(frame(tcp_style))
    abort, close = abort_then_close(peer.frames())
    assert b"Len is 3" in abort.payload
    assert close.close_code == CLOSE_PROTOCOL_ERROR


def test_request_before_the_csm_gets_abort_and_no_answer(peer: WsPeer) -> None:
    assert peer.upgrade().status == 101
    peer.send(coap(get(b"early", "hello")))
    frames = peer.frames()
    assert frames[0].coap().code == Code.CSM
    abort, close = abort_then_close(frames)
    assert b"expected a CSM" in abort.payload
    assert close.close_code == CLOSE_PROTOCOL_ERROR
    assert all(f.coap().code != Code.CONTENT for f in frames[:-1])


def test_too_large_message_is_rejected_before_its_body(clock) -> None:
    factory = CoapWebSocketServerFactory(None, max_message_size=1024, reactor=clock)
    peer = WsPeer(factory)
    opened(peer)
    peer.send(frame_header(5000))  # only the frame's head: nothing of the body yet
    abort, close = abort_then_close(peer.frames())
    assert b"5000 bytes" in abort.payload and b"1024" in abort.payload
    assert close.close_code == CLOSE_MESSAGE_TOO_BIG
    peer.send(b"\x00" * 5000)  # the body, discarded
    assert peer.frames() == []


def test_fragmented_message_growing_too_large_is_rejected(clock) -> None:
    factory = CoapWebSocketServerFactory(None, max_message_size=100, reactor=clock)
    peer = WsPeer(factory)
    opened(peer)
    peer.send(frame(b"\x01\x01" + b"\x00" * 60, OP_BINARY, fin=False))
    assert peer.frames() == []
    peer.send(frame(b"\x00" * 60, OP_CONTINUATION))
    abort, close = abort_then_close(peer.frames())
    assert b"122 bytes or more exceeds our Max-Message-Size of 100" in abort.payload
    assert close.close_code == CLOSE_MESSAGE_TOO_BIG


def test_abort_is_flushed_before_the_connection_closes(peer: WsPeer, clock) -> None:
    opened(peer)
    peer.send(frame(b"x", OP_TEXT))
    abort_then_close(peer.frames())
    # The peer answers the close; only then does the server drop the TCP connection.
    peer.send(close_frame(CLOSE_UNSUPPORTED_DATA))
    calls = peer.transport.calls
    assert "abortConnection" in calls or "loseConnection" in calls
    last_write = max(i for i, call in enumerate(calls) if call == "write")
    first_close = min(i for i, call in enumerate(calls) if call != "write")
    assert last_write < first_close


def test_silent_peer_is_dropped_after_the_close_timeout(peer: WsPeer, clock) -> None:
    opened(peer)
    peer.send(frame(b"x", OP_TEXT))
    abort_then_close(peer.frames())
    clock.advance(4.9)
    assert not peer.transport.aborted
    clock.advance(0.2)
    assert peer.transport.aborted
    assert peer.transport.calls.index("abortConnection") > 0


def test_nothing_is_processed_after_the_abort(peer: WsPeer) -> None:
    opened(peer)
    peer.send(frame(b"x", OP_TEXT) + coap(get(b"late", "hello")))
    frames = peer.frames()
    abort_then_close(frames)
    assert not any(f.opcode == OP_BINARY and f.coap().code == Code.CONTENT for f in frames)


# -- signaling (section 5) is the same core as over TCP ----------------------------------------


def test_coap_ping_gets_pong_with_the_same_token(peer: WsPeer) -> None:
    opened(peer)
    peer.send(coap(Message(Code.PING, b"pp")))
    (pong,) = peer.frames()
    assert pong.coap().code == Code.PONG and pong.coap().token == b"pp"


def test_websocket_ping_gets_pong_but_server_never_pings(peer: WsPeer, clock) -> None:
    peer.factory.limits = Limits(idle_timeout=None)  # ten quiet minutes, no idle Release
    opened(peer)
    peer.send(frame(b"hi", OP_PING))
    (pong,) = peer.frames()
    assert pong.opcode == OP_PONG and pong.payload == b"hi"
    for _ in range(10):
        clock.advance(60)
    # No WebSocket Ping (section 4.4): the keepalive is a CoAP Ping in a binary message,
    # and the peer that answers no Pong is aborted.
    frames = peer.frames()
    assert [f.opcode for f in frames] == [OP_BINARY, OP_BINARY, OP_CLOSE]
    assert frames[0].coap().code == Code.PING
    assert frames[1].coap().code == Code.ABORT


def test_release_from_the_peer_closes_normally(peer: WsPeer) -> None:
    opened(peer)
    peer.send(coap(get(b"g", "hello")) + coap(Message(Code.RELEASE, payload=b"bye")))
    frames = peer.frames()
    assert frames[0].coap().code == Code.CONTENT
    assert frames[-1].opcode == OP_CLOSE and frames[-1].close_code == CLOSE_NORMAL
    assert "released" in frames[-1].close_reason


def test_abort_from_the_peer_closes_normally(peer: WsPeer) -> None:
    opened(peer)
    peer.send(coap(Message(Code.ABORT, payload=b"giving up")))
    (close,) = peer.frames()
    assert close.opcode == OP_CLOSE and close.close_code == CLOSE_NORMAL


def test_server_release_sends_release_then_close(peer: WsPeer, ws_factory) -> None:
    opened(peer)
    (protocol,) = ws_factory.connections
    closed = protocol.release("maintenance")
    frames = peer.frames()
    assert frames[0].coap().code == Code.RELEASE and frames[0].coap().payload == b"maintenance"
    assert frames[1].opcode == OP_CLOSE and frames[1].close_code == CLOSE_NORMAL
    results: list[object] = []
    closed.addBoth(results.append)
    peer.send(close_frame())
    peer.lose()
    assert results == [None]
    assert not ws_factory.connections


def test_server_side_request_to_the_ws_client(peer: WsPeer, ws_factory) -> None:
    opened(peer)
    (protocol,) = ws_factory.connections
    results: list[object] = []
    protocol.request(Code.GET, Options.build(uri_path=["sensor"])).addBoth(results.append)
    (request,) = peer.frames()
    message = request.coap()
    assert message.code == Code.GET and message.options.uri_path == ("sensor",)
    peer.send(coap(Message(Code.CONTENT, message.token, payload=b"21.5")))
    assert [r.payload for r in results] == [b"21.5"]  # type: ignore[attr-defined]


def test_peer_close_fails_pending_requests(peer: WsPeer, ws_factory) -> None:
    opened(peer)
    (protocol,) = ws_factory.connections
    results: list[object] = []
    protocol.request(Code.GET, Options.build(uri_path=["x"])).addBoth(results.append)
    peer.frames()
    peer.send(close_frame())
    (reply,) = peer.frames()
    assert reply.opcode == OP_CLOSE
    peer.lose()
    (failure,) = results
    assert failure.check(ConnectionClosedError)  # type: ignore[attr-defined]


def test_release_all_releases_every_connection(ws_factory) -> None:
    peers = [WsPeer(ws_factory) for _ in range(3)]
    for peer in peers:
        opened(peer)
    assert len(ws_factory.connections) == 3
    done: list[object] = []
    ws_factory.release_all().addBoth(done.append)
    for peer in peers:
        assert peer.frames()[0].coap().code == Code.RELEASE
        peer.send(close_frame())
        peer.lose()
    assert len(done) == 1 and not ws_factory.connections
