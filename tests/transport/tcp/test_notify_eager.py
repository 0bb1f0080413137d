"""Notifications wait for the end of the reactor's turn (RFC 7641 section 4.2 over RFC
8323 section 7): a change notifies every observer from one call, and each connection's
notifications then go out in one send, after the other connections' answers, without a
reactor turn more.  Over Twisted's real TCP transport on a fake socket
(tests/support/fake_socket.py)."""

from __future__ import annotations

from typing import Any

from fake_socket import FakeSocket, fake_server, writing
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.eager import unsent_bytes
from coaptcp.transport.tcp import CoapFactory


class State(ObservableResource):
    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    def render_GET(self, request: Request) -> Response:
        return Response.text(f"value {self.value}")


def messages(data: bytes) -> list[Message]:
    decoder = StreamDecoder(1 << 20)
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def observe(token: bytes) -> bytes:
    return encode_frame(Message(Code.GET, token, Options.build(uri_path=["s"], observe=0)))


def connect(factory: CoapFactory, clock: MemoryReactorClock) -> tuple[FakeSocket, Any]:
    protocol: Any = factory.buildProtocol(None)
    sock = FakeSocket()
    transport = fake_server(sock, protocol, clock)
    protocol.makeConnection(transport)
    return sock, protocol


def test_notifications_go_out_at_the_end_of_the_turn_one_send_per_connection() -> None:
    clock = MemoryReactorClock()
    state = State()
    root = Resource()
    root.putChild("s", state)
    factory = CoapFactory(Site(root), reactor=clock)
    (sock_a, a), (sock_b, b) = connect(factory, clock), connect(factory, clock)
    a.dataReceived(encode_frame(Message(Code.CSM)) + observe(b"\x01") + observe(b"\x02"))
    b.dataReceived(encode_frame(Message(Code.CSM)) + observe(b"\x03"))
    clock.advance(0)
    registered_a, registered_b = len(sock_a.sent), len(sock_b.sent)
    assert [m.code for m in messages(sock_a.wire())] == [Code.CSM, Code.CONTENT, Code.CONTENT]
    assert state.observer_count == 3

    state.value = 1
    state.notify()
    # held in Twisted's buffer (counted against its bufferSize), the socket not watched
    assert len(sock_a.sent) == registered_a and len(sock_b.sent) == registered_b
    assert unsent_bytes(a.transport) > 0 and not writing(a.transport)
    clock.advance(0)
    assert len(sock_a.sent) == registered_a + 1  # both of a's notifications in one send
    assert len(sock_b.sent) == registered_b + 1
    assert unsent_bytes(a.transport) == 0 and not writing(a.transport)
    sent = messages(sock_a.wire())[3:] + messages(sock_b.wire())[2:]
    assert sorted(m.token for m in sent) == [b"\x01", b"\x02", b"\x03"]
    assert {m.payload for m in sent} == {b"value 1"}
    assert all(m.options.observe is not None and m.options.max_age == 60 for m in sent)


def test_an_answer_still_goes_out_at_once() -> None:
    clock = MemoryReactorClock()
    root = Resource()
    root.putChild("s", State())
    sock, protocol = connect(CoapFactory(Site(root), reactor=clock), clock)
    protocol.dataReceived(encode_frame(Message(Code.CSM)) + observe(b"\x01"))
    assert [m.code for m in messages(sock.wire())] == [Code.CSM, Code.CONTENT]
