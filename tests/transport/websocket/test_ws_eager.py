"""coap+ws writes at once: the fast path's answers reach the socket within the read that
asked, through Twisted's real TCP transport over a fake socket (no network), and never
overtake what autobahn left in Twisted's buffer (coaptcp.transport.eager)."""

from __future__ import annotations

from fake_socket import FakeSocket, fake_server, writing
from ws_wire import coap, csm, get, handshake, parse_frames, parse_http

from coaptcp.core.codes import Code
from coaptcp.transport.eager import unsent_bytes
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory


def test_answers_go_out_in_the_read_that_asked(ws_factory: CoapWebSocketServerFactory) -> None:
    sock = FakeSocket()
    protocol = ws_factory.buildProtocol(None)
    transport = fake_server(sock, protocol)
    protocol.makeConnection(transport)
    protocol.dataReceived(handshake())
    # autobahn's 101 (and our CSM after it) wait in Twisted's buffer: still in order.
    assert sock.sent == [] and writing(transport)
    transport.doWrite()
    response = parse_http(sock.take())
    assert response is not None and response.status == 101
    frames, rest = parse_frames(response.body_and_rest)
    assert [f.coap().code for f in frames] == [Code.CSM] and rest == b""
    protocol.dataReceived(coap(csm()) + coap(get(b"\x05", "hello")))
    frames, rest = parse_frames(sock.take())  # sent in that very call
    assert [(f.coap().code, f.coap().token) for f in frames] == [(Code.CONTENT, b"\x05")]
    assert not writing(transport) and unsent_bytes(transport) == 0
