"""Bounds of a ``--ws`` port, where twisted.web holds a connection until it upgrades.

The HTTP channel of :func:`coaptcp.tap.websocket.make_web_site` (:class:`CoapHTTPChannel`) is
counted against the connection limits from accept, and gives the peer
``ws_handshake_timeout`` seconds from accept (and from the end of each response) to send
a whole request: twisted.web's own timeout is an idle timeout that every trickled byte
starts again.  On upgrade, the WebSocket protocol takes the channel's place in the count.
In memory, on a MemoryReactorClock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.web.resource import Resource as WebResource
from twisted.web.server import Site as WebSite
from ws_helpers import WebPeer
from ws_wire import coap, csm, get, handshake, parse_frames, parse_http

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.tap.websocket import CoapHTTPChannel, make_web_site
from coaptcp.transport.admission import ConnectionGate
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.websocket.resource import websocket_resource

LIMITS = Limits(ws_handshake_timeout=4.0, max_connections=2)


def web_site(clock, limits: Limits = LIMITS, gate: ConnectionGate | None = None):
    return make_web_site(Site(make_demo_site()), reactor=clock, limits=limits, gate=gate)


def upgraded(site) -> WebPeer:
    peer = WebPeer(site)
    peer.send(handshake())
    response = parse_http(peer.output())
    assert response is not None and response.status == 101, peer.output()
    return peer


def test_the_channel_is_ours(clock) -> None:
    site, _ = web_site(clock)
    assert isinstance(WebPeer(site).channel, CoapHTTPChannel)


def test_a_dripping_request_is_dropped_at_the_timeout_from_accept(clock) -> None:
    site, factory = web_site(clock)
    peer = WebPeer(site)
    assert len(factory.gate) == 1  # counted from accept
    request = handshake()
    for byte in request[:-1]:
        peer.send(bytes([byte]))
        clock.advance(3.9 / len(request))
    assert not peer.transport.aborted
    clock.advance(4.0 - clock.seconds())
    assert peer.transport.aborted and peer.output() == b""
    peer.lose()
    assert len(factory.gate) == 0


def test_the_upgraded_connection_takes_the_channels_place_in_the_count(clock) -> None:
    site, factory = web_site(clock)
    peer = upgraded(site)
    assert len(factory.gate) == 1 and factory.connections == {peer.transport.protocol}
    peer.send(coap(csm()))
    clock.advance(100)  # no handshake timer is left running
    assert not peer.transport.aborted
    sent = len(peer.output())
    peer.send(coap(get(b"h", "hello")))
    frames, _ = parse_frames(peer.output()[sent:])
    assert [f.coap().payload for f in frames] == [b"Hello, world!"]
    peer.lose()
    assert len(factory.gate) == 0 and not factory.connections


def test_the_next_request_has_the_timeout_from_the_end_of_the_response(clock) -> None:
    site, _ = web_site(clock)
    peer = WebPeer(site)
    clock.advance(3)
    peer.send(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    response = parse_http(peer.output())
    assert response is not None and response.status == 404
    clock.advance(3.9)  # 6.9 s after accept, 3.9 s after the response
    assert not peer.transport.aborted
    peer.send(b"GET /nothing HT")
    clock.advance(0.1)
    assert peer.transport.aborted


def test_a_connection_over_the_limit_gets_503_without_being_read(clock) -> None:
    site, factory = web_site(clock)
    first, second = WebPeer(site), WebPeer(site)
    third = WebPeer(site)
    response = parse_http(third.output())
    assert response is not None and response.status == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["connection"] == "close"
    assert response.body_and_rest == b"server busy: more than 2 connections\n"
    assert third.transport.calls[-1] == "loseConnection"
    third.send(handshake())  # not read
    assert parse_http(third.output()) == response
    third.lose()
    first.lose()
    assert len(factory.gate) == 1
    assert upgraded(site).transport.protocol in factory.connections
    second.lose()


def test_a_refused_connection_that_does_not_close_is_dropped_at_the_timeout(clock) -> None:
    site, _ = web_site(clock, Limits(ws_handshake_timeout=4.0, max_connections=1))
    WebPeer(site)
    refused = WebPeer(site)
    refused.transport.loseConnection = lambda: None  # e.g. a TLS handshake never finished
    clock.advance(4)
    assert refused.transport.aborted


def test_the_tcp_and_web_listeners_share_one_count(clock) -> None:
    from twisted.internet.testing import StringTransport

    gate = ConnectionGate(LIMITS)
    site, _ = web_site(clock, gate=gate)
    tcp = CoapFactory(Site(make_demo_site()), reactor=clock, limits=LIMITS, gate=gate)
    address = IPv4Address("TCP", "192.0.2.1", 4000)
    coap_protocol = tcp.buildProtocol(address)
    coap_protocol.makeConnection(StringTransport(peerAddress=address))
    upgraded(site)
    refused = WebPeer(site)
    response = parse_http(refused.output())
    assert response is not None and response.status == 503
    assert len(gate) == 3  # the refused one until it has closed


def test_a_plain_twisted_web_site_counts_at_the_upgrade(clock) -> None:
    root = WebResource()
    mounted = websocket_resource(
        root, make_demo_site(), reactor=clock, limits=Limits(max_connections=1)
    )
    site = WebSite(root, reactor=clock)
    first = upgraded(site)
    assert len(mounted.factory.gate) == 1
    second = WebPeer(site)
    second.send(handshake())
    response = parse_http(second.output())
    assert response is not None and response.status == 503
    first.lose()
    second.lose()
    assert len(mounted.factory.gate) == 0


def test_an_upgrade_without_coap_leaves_nothing_counted(clock) -> None:
    site, factory = web_site(clock)
    peer = WebPeer(site)
    peer.send(handshake(protocols=("chat",)))
    response = parse_http(peer.output())
    assert response is not None and response.status == 400
    peer.lose()
    assert len(factory.gate) == 0


def test_a_websocket_version_8_handshake_gets_426_on_the_shared_port(clock) -> None:
    site, _ = web_site(clock)
    peer = WebPeer(site)
    peer.send(handshake().replace(b"Version: 13", b"Version: 8"))
    response = parse_http(peer.output())
    assert response is not None and response.status == 426
    assert response.headers["sec-websocket-version"] == "13"


def test_csm_then_request_after_upgrade_is_served(clock) -> None:
    site, _ = web_site(clock)
    peer = upgraded(site)
    response = parse_http(peer.output())
    assert response is not None
    (first,), _ = parse_frames(response.body_and_rest)
    assert first.coap().code == Code.CSM


def test_an_upgrade_counts_under_the_address_known_by_then(clock) -> None:
    # Behind haproxy: the PROXY header, read before the request, names the client.
    site, factory = web_site(clock, Limits(max_connections_per_address=1))
    client = IPv4Address("TCP", "192.0.2.7", 5000)
    first = WebPeer(site)
    first.transport.peerAddr = client
    first.send(handshake())
    assert factory.gate.per_address == {"192.0.2.7": 1}
    second = WebPeer(site, IPv4Address("TCP", "192.0.2.8", 5000))
    second.transport.peerAddr = client
    second.send(handshake())
    response = parse_http(second.output())
    assert response is not None and response.status == 503
    assert "more than 1 connections from 192.0.2.7" in response.reason
