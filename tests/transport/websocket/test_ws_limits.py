"""Connection caps and flow control of the CoAP-over-WebSockets server, in memory.

The same limits as over TCP (coaptcp.transport.admission), counted from accept: a connection over
``max_connections`` or ``max_connections_per_address`` is refused before any WebSocket is
open, so it gets HTTP 503 Service Unavailable (with Retry-After) naming the limit and is
closed; far over the limit it is dropped unanswered.  A peer that stops reading stops
being read from (the protocol is its transport's streaming producer).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from ws_helpers import PEER_ADDRESS, WsPeer
from ws_wire import OP_BINARY, OP_CLOSE, HttpResponse, coap, csm, get, handshake, parse_http

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.admission import REFUSAL_MARGIN
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory


def opened(peer: WsPeer) -> list:
    assert peer.upgrade(handshake()).status == 101
    peer.send(coap(csm()))
    return peer.frames()


def refused_at_accept(peer: WsPeer) -> HttpResponse:
    """The 503 a connection over a limit gets as soon as it is accepted."""
    response = parse_http(peer.transport.value())
    assert response is not None, peer.transport.value()
    assert response.status == 503
    assert peer.transport.calls[-1] == "loseConnection" and not peer.transport.aborted
    return response


def test_connection_over_max_connections_gets_503_at_accept(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections=1)
    )
    first = WsPeer(factory)  # counted from accept, before its handshake
    second = WsPeer(factory)
    response = refused_at_accept(second)
    assert response.reason == "Service Unavailable: server busy: more than 1 connections"
    assert response.headers["retry-after"] == "1"
    # Its handshake, arriving after the refusal, is not read.
    second.send(handshake())
    assert parse_http(second.transport.value()) == response
    assert [f.coap().code for f in opened(first)] == [Code.CSM]
    first.send(coap(get(b"a", "hello")))
    assert [f.coap().payload for f in first.frames()] == [b"Hello, world!"]
    # Once both have gone, a new one is admitted.
    second.lose()
    assert factory.connections == {first.protocol} and len(factory.gate) == 1
    first.lose()
    assert factory.connections == set() and len(factory.gate) == 0
    third = WsPeer(factory)
    assert [f.coap().code for f in opened(third)] == [Code.CSM]
    assert factory.connections == {third.protocol}


def test_connections_per_address_are_capped_from_accept(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections_per_address=1)
    )
    WsPeer(factory)  # silent, but holding a connection
    response = refused_at_accept(WsPeer(factory))
    expected = f"Service Unavailable: more than 1 connections from {PEER_ADDRESS.host}"
    assert response.reason == expected


def test_far_over_the_limit_a_connection_is_dropped_unanswered(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections=1)
    )
    peers = [WsPeer(factory) for _ in range(2 + REFUSAL_MARGIN)]
    # Refused ones hold a descriptor until they have closed: up to REFUSAL_MARGIN of them
    # are answered, the next is dropped at once.
    assert all(p.transport.value().startswith(b"HTTP/1.1 503 ") for p in peers[1:-1])
    assert peers[-1].transport.aborted and peers[-1].transport.value() == b""
    for refused in peers[1:]:
        refused.lose()
    assert len(factory.gate) == 1


def test_a_connection_refused_during_the_handshake_is_not_counted_after_it_closes(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections=1)
    )
    refused = WsPeer(factory)
    assert refused.upgrade(handshake(protocols=("mqtt",))).status == 400
    refused.lose()
    assert len(factory.gate) == 0
    assert [f.coap().code for f in opened(WsPeer(factory))] == [Code.CSM]


def test_a_peer_that_stops_reading_stops_being_read(peer: WsPeer) -> None:
    opened(peer)
    transport = peer.transport
    assert transport.producer is peer.protocol and transport.streaming
    peer.protocol.pauseProducing()  # the transport's write buffer is full
    assert transport.producerState == "paused"
    assert peer.protocol.channel._paused  # notifications are held too
    peer.protocol.resumeProducing()
    assert transport.producerState == "producing"
    assert not peer.protocol.channel._paused
    peer.send(coap(get(b"a", "hello")))
    assert [f.coap().payload for f in peer.frames()] == [b"Hello, world!"]


def test_the_producer_is_unregistered_when_the_server_closes(peer: WsPeer) -> None:
    opened(peer)
    peer.protocol.release("bye")
    frames = peer.frames()
    assert [f.opcode for f in frames] == [OP_BINARY, OP_CLOSE]
    peer.send(b"\x88\x82" + b"\x00\x00\x00\x00" + (1000).to_bytes(2, "big"))  # close reply
    assert peer.transport.producer is None
    assert peer.transport.disconnecting


def test_peer_address_is_the_one_counted(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections_per_address=1)
    )
    first = WsPeer(factory)
    opened(first)
    second = WsPeer(factory, IPv4Address("TCP", "192.0.2.77", 5000))
    assert [f.coap().code for f in opened(second)] == [Code.CSM]
    assert factory.gate.per_address == {PEER_ADDRESS.host: 1, "192.0.2.77": 1}


def test_one_read_of_many_messages_is_processed_within_its_budget(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(messages_per_read=10)
    )
    peer = WsPeer(factory)
    opened(peer)
    peer.send(b"".join(coap(get(n.to_bytes(2, "big"), "hello")) for n in range(35)))
    first = [f.coap().token for f in peer.frames()]
    assert first == [n.to_bytes(2, "big") for n in range(10)]
    assert peer.transport.producerState == "paused"  # reading off while the rest waits
    clock.advance(0)
    rest = [f.coap().token for f in peer.frames()]
    assert rest == [n.to_bytes(2, "big") for n in range(10, 35)]
    assert peer.transport.producerState == "producing"


def test_requests_read_while_the_peer_does_not_read_wait_for_it(peer: WsPeer, clock) -> None:
    opened(peer)
    peer.protocol.pauseProducing()  # the transport's write buffer is full
    peer.send(b"".join(coap(get(n.to_bytes(2, "big"), "hello")) for n in range(3)))
    clock.advance(1)
    assert peer.frames() == []  # read, not processed: nothing more is queued for it
    peer.protocol.resumeProducing()
    clock.advance(0)
    assert [f.coap().token for f in peer.frames()] == [n.to_bytes(2, "big") for n in range(3)]
