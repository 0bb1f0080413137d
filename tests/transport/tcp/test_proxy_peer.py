"""The client address behind a PROXY-protocol endpoint (``haproxy:tcp:...``).

Twisted's HAProxy wrapper connects our protocol before the PROXY header has arrived; the
address it then reports is the load balancer's.  Resources (``request.peer``), the
default Uri-Host (RFC 8323 section 8) and the per-address connection limit must use the
client's address from the header instead.  In memory: StringTransport, no sockets.
"""

from __future__ import annotations

import json
from ipaddress import ip_address

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.haproxy import proxyEndpoint

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import RecordingTransport, csm, decode_all, frames, get
from coaptcp.transport.tcp import CoapFactory

BALANCER = IPv4Address("TCP", "127.0.0.1", 45000)
LISTENER = IPv4Address("TCP", "127.0.0.1", 5683)


class CapturingEndpoint:
    """Records the factory it is asked to listen with (the HAProxy wrapping factory)."""

    def listen(self, factory):
        self.factory = factory
        return succeed(None)


def HAProxyWrappingFactory(factory: CoapFactory):
    """What ``haproxy:`` endpoints listen with, through Twisted's public proxyEndpoint."""
    endpoint = CapturingEndpoint()
    proxyEndpoint(endpoint).listen(factory)
    return endpoint.factory


def proxied(factory: CoapFactory, header: bytes) -> tuple[RecordingTransport, object]:
    """A connection from the balancer: ``header`` then the client's CSM, as HAProxy
    forwards them (the peer is settled at the first data after the header)."""
    wrapper = HAProxyWrappingFactory(factory).buildProtocol(BALANCER)
    transport = RecordingTransport(hostAddress=LISTENER, peerAddress=BALANCER)
    wrapper.makeConnection(transport)
    (ours,) = decode_all(transport.value())
    assert ours.code == Code.CSM
    transport.clear()
    wrapper.dataReceived(header)
    wrapper.dataReceived(frames(csm()))
    return transport, wrapper


def info_of(transport: RecordingTransport, wrapper: object, token: bytes = b"i") -> dict:
    wrapper.dataReceived(frames(get(token, "info")))  # type: ignore[attr-defined]
    (response,) = [m for m in decode_all(transport.value()) if m.token == token]
    assert response.code == Code.CONTENT
    return json.loads(response.payload)


def demo_factory(**kwargs: object) -> CoapFactory:
    return CoapFactory(Site(make_demo_site()), reactor=MemoryReactorClock(), **kwargs)


def test_resource_sees_the_client_address_from_a_v1_header():
    factory = demo_factory()
    transport, wrapper = proxied(factory, b"PROXY TCP4 192.0.2.10 198.51.100.5 40123 5683\r\n")
    info = info_of(transport, wrapper)
    assert info["peer"] == "192.0.2.10:40123"
    assert info["host"] == "198.51.100.5"  # where the client connected: the balancer
    protocol = wrapper.wrappedProtocol  # type: ignore[attr-defined]
    assert protocol.channel.peer == IPv4Address("TCP", "192.0.2.10", 40123)


def test_resource_sees_the_client_address_from_a_v2_header_with_data_in_the_same_read():
    factory = demo_factory()
    header = (
        b"\r\n\r\n\x00\r\nQUIT\n"  # v2 signature
        + b"\x21\x21\x00\x24"  # PROXY, TCP over IPv6, 36 bytes of addresses
        + bytes.fromhex("20010db8000000000000000000000001")
        + bytes.fromhex("20010db8000000000000000000000002")
        + (50001).to_bytes(2, "big")
        + (5683).to_bytes(2, "big")
    )
    wrapper = HAProxyWrappingFactory(factory).buildProtocol(BALANCER)
    transport = RecordingTransport(hostAddress=LISTENER, peerAddress=BALANCER)
    wrapper.makeConnection(transport)
    transport.clear()
    wrapper.dataReceived(header + frames(csm(), get(b"i", "info")))
    (response,) = [m for m in decode_all(transport.value()) if m.token == b"i"]
    host, port = json.loads(response.payload)["peer"].rsplit(":", 1)
    assert (ip_address(host.strip("[]")), port) == (ip_address("2001:db8::1"), "50001")
    peer = wrapper.wrappedProtocol.channel.peer
    assert isinstance(peer, IPv6Address) and ip_address(peer.host) == ip_address("2001:db8::1")


def test_without_a_proxy_the_peer_is_the_transport_peer():
    factory = demo_factory()
    protocol = factory.buildProtocol(BALANCER)
    transport = RecordingTransport(hostAddress=LISTENER, peerAddress=BALANCER)
    protocol.makeConnection(transport)
    transport.clear()
    protocol.dataReceived(frames(csm(), get(b"i", "info")))
    (response,) = [m for m in decode_all(transport.value()) if m.token == b"i"]
    assert json.loads(response.payload)["peer"] == "127.0.0.1:45000"
    assert factory.gate.per_address == {"127.0.0.1": 1}


def test_per_address_limit_counts_clients_not_the_balancer():
    factory = demo_factory(limits=Limits(max_connections_per_address=1))
    first, w1 = proxied(factory, b"PROXY TCP4 192.0.2.10 127.0.0.1 40001 5683\r\n")
    second, w2 = proxied(factory, b"PROXY TCP4 192.0.2.11 127.0.0.1 40002 5683\r\n")
    assert info_of(first, w1)["peer"] == "192.0.2.10:40001"
    assert info_of(second, w2)["peer"] == "192.0.2.11:40002"
    assert factory.gate.per_address == {"192.0.2.10": 1, "192.0.2.11": 1}
    assert not first.disconnecting and not second.disconnecting

    # A second connection of the same client is over its limit: aborted at its first
    # data (the CSM), which is not processed.
    third, _ = proxied(factory, b"PROXY TCP4 192.0.2.10 127.0.0.1 40003 5683\r\n")
    sent = decode_all(third.value())
    assert [m.code for m in sent] == [Code.ABORT]
    assert b"more than 1 connections from 192.0.2.10" in sent[0].payload
    assert third.disconnecting


def test_closing_a_proxied_connection_forgets_the_client_address():
    factory = demo_factory()
    transport, wrapper = proxied(factory, b"PROXY TCP4 192.0.2.10 127.0.0.1 40001 5683\r\n")
    info_of(transport, wrapper)
    assert factory.gate.per_address == {"192.0.2.10": 1}
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    wrapper.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    assert factory.gate.per_address == {}
    assert factory.connections == set()
