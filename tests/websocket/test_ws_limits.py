"""Connection caps and flow control of the CoAP-over-WebSockets server, in memory.

The same limits as over TCP (coaptcp.admission, RFC 8323 section 5.6 for the Abort): a
connection over ``max_connections`` or ``max_connections_per_address`` gets our CSM, then
an Abort naming the limit, then the WebSocket close; and a peer that stops reading
stops being read from (the protocol is its transport's streaming producer).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from ws_helpers import PEER_ADDRESS, WsPeer
from ws_wire import OP_BINARY, OP_CLOSE, coap, csm, get, handshake

from coaptcp.core.codes import Code
from coaptcp.demo import make_demo_site
from coaptcp.limits import Limits
from coaptcp.resource import Site
from coaptcp.websocket import CoapWebSocketServerFactory


def opened(peer: WsPeer) -> list:
    assert peer.upgrade(handshake()).status == 101
    peer.send(coap(csm()))
    return peer.frames()


def test_connection_over_max_connections_gets_csm_then_abort(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections=1)
    )
    first = WsPeer(factory)
    assert [f.coap().code for f in opened(first)] == [Code.CSM]
    second = WsPeer(factory)
    frames = opened(second)
    assert [f.opcode for f in frames] == [OP_BINARY, OP_BINARY, OP_CLOSE]
    csm_message, abort = frames[0].coap(), frames[1].coap()
    assert (csm_message.code, abort.code) == (Code.CSM, Code.ABORT)
    assert abort.payload == b"server busy: more than 1 connections"
    # The first still works; once both have gone, a new one is admitted.
    first.send(coap(get(b"a", "hello")))
    assert [f.coap().payload for f in first.frames()] == [b"Hello, world!"]
    second.lose()
    assert factory.connections == {first.protocol}
    first.lose()
    assert factory.connections == set()
    third = WsPeer(factory)
    assert [f.coap().code for f in opened(third)] == [Code.CSM]
    assert factory.connections == {third.protocol}


def test_connections_per_address_are_capped(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections_per_address=1)
    )
    assert [f.coap().code for f in opened(WsPeer(factory))] == [Code.CSM]
    frames = opened(WsPeer(factory))
    abort = frames[1].coap()
    assert abort.code == Code.ABORT
    assert abort.payload == f"more than 1 connections from {PEER_ADDRESS.host}".encode()
    assert frames[2].opcode == OP_CLOSE


def test_a_connection_refused_during_the_handshake_is_never_counted(clock) -> None:
    factory = CoapWebSocketServerFactory(
        Site(make_demo_site()), reactor=clock, limits=Limits(max_connections=1)
    )
    refused = WsPeer(factory)
    assert refused.upgrade(handshake(protocols=("mqtt",))).status == 400
    refused.lose()
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
    other = IPv4Address("TCP", "192.0.2.77", 5000)
    second = WsPeer(factory)
    second.transport.peerAddr = other  # before the handshake
    assert [f.coap().code for f in opened(second)] == [Code.CSM]


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
