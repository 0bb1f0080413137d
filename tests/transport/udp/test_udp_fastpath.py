"""The cheap server path of CoapDatagramProtocol: one write per answered datagram, and a
bounded cache of the Twisted addresses resources see (RFC 7252 section 4)."""

from __future__ import annotations

from typing import Any

from test_udp_protocol import CLIENT, datagram, make_server, path

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.core.udp.framing import MessageType
from coaptcp.server import Request, Resource, Response, Site
from coaptcp.transport.udp import address as udp_address
from coaptcp.transport.udp.address import MAX_CACHED_ADDRESSES
from coaptcp.transport.udp.protocol import CoapDatagramProtocol


class Peers(Resource):
    """Records the ``request.peer`` of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def render_GET(self, request: Request) -> Response:
        self.seen.append(request.peer)
        return Response(Code.CONTENT, b"ok")


def test_each_request_is_answered_with_one_write_and_flushed_once(monkeypatch: Any) -> None:
    protocol, transport, _, _ = make_server()
    flushes: list[None] = []
    original = CoapDatagramProtocol._flush

    def counting(self: CoapDatagramProtocol) -> None:
        flushes.append(None)
        original(self)

    monkeypatch.setattr(CoapDatagramProtocol, "_flush", counting)
    for mid in range(3):
        protocol.datagramReceived(
            datagram(MessageType.CON, mid, Code.GET, b"t%d" % mid, Options(path("hello"))),
            CLIENT,
        )
    answers = transport.take()
    assert [a.message_id for a, _ in answers] == [0, 1, 2]
    assert all(a.mtype is MessageType.ACK for a, _ in answers)
    assert len(flushes) == 3  # one per datagram, not one more per synchronous answer


def test_a_retransmitted_con_still_gets_the_cached_answer() -> None:
    protocol, transport, _, _ = make_server()
    request = datagram(MessageType.CON, 7, Code.GET, b"tk", Options(path("hello")))
    protocol.datagramReceived(request, CLIENT)
    protocol.datagramReceived(request, CLIENT)
    first, second = transport.sent
    assert first == second


def test_the_address_of_a_peer_is_reused_and_the_cache_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(udp_address, "MAX_CACHED_ADDRESSES", 4)
    resource = Peers()
    root = Resource()
    root.putChild("p", resource)
    protocol, transport, _, _ = make_server()
    protocol.site = Site(root)
    ports = [0, 1, 0, 2, 3, 4, 0]
    for n, port in enumerate(ports):
        protocol.datagramReceived(
            datagram(MessageType.NON, n, Code.GET, b"t%d" % n, Options(path("p"))),
            ("192.0.2.1", 50000 + port),
        )
    assert len(transport.sent) == len(ports)
    assert [a.port for a in resource.seen] == [50000 + port for port in ports]
    assert resource.seen[2] is resource.seen[0]  # the same peer: the same object
    assert resource.seen[6] is not resource.seen[0]  # 50000 was dropped as the oldest
    assert len(protocol._addresses) == 4
    assert MAX_CACHED_ADDRESSES == 1024
