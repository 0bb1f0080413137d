"""Shared helpers of the CoAP-over-WebSockets tests: addresses, a recording transport,
:class:`WsPeer`, which plays the WebSocket client against a server protocol in memory, and
:class:`WebPeer`, an HTTP connection to a ``twisted.web`` site.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.web.server import Site as WebSite
from ws_wire import Frame, HttpResponse, coap, csm, handshake, parse_frames, parse_http

from coaptcp import testing
from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

PEER_ADDRESS = IPv4Address("TCP", "192.0.2.9", 41000)
HOST_ADDRESS = IPv4Address("TCP", "198.51.100.3", 8080)


class RecordingTransport(testing.RecordingTransport):
    """Records writes, graceful closes and aborts (a forced drop loses unsent data), and
    TCP_NODELAY; a second unregisterProducer is harmless, as on a socket transport."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.calls.append("setTcpNoDelay")

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class WsPeer:
    """One server protocol on a RecordingTransport; the test is the WebSocket client."""

    def __init__(
        self, factory: CoapWebSocketServerFactory, peer_address: IPv4Address = PEER_ADDRESS
    ) -> None:
        self.factory = factory
        self.protocol = factory.buildProtocol(peer_address)
        self.transport = RecordingTransport(hostAddress=HOST_ADDRESS, peerAddress=peer_address)
        self.protocol.makeConnection(self.transport)
        self._read = 0
        self._pending = b""
        self.http: HttpResponse | None = None

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def upgrade(self, request: bytes | None = None) -> HttpResponse:
        """Send a handshake and return the HTTP answer (its frames stay unread)."""
        self.send(request if request is not None else handshake())
        response = parse_http(self.transport.value())
        assert response is not None, self.transport.value()
        self.http = response
        self._read = len(self.transport.value()) - len(response.body_and_rest)
        return response

    def frames(self) -> list[Frame]:
        """Frames written since the last call."""
        value = self.transport.value()
        data = self._pending + value[self._read :]
        self._read = len(value)
        frames, self._pending = parse_frames(data)
        return frames

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


def opened(factory: CoapWebSocketServerFactory) -> WsPeer:
    """A WsPeer past the upgrade and the CSM exchange (RFC 8323 sections 4.1 and 3.3)."""
    peer = WsPeer(factory)
    assert peer.upgrade(handshake()).status == 101
    peer.send(coap(csm()))
    assert [f.coap().code for f in peer.frames()] == [Code.CSM]
    return peer


class WebPeer:
    """One HTTP connection to a twisted.web site; after an upgrade, talks to the WS side."""

    def __init__(self, site: WebSite, peer_address: IPv4Address = PEER_ADDRESS) -> None:
        self.channel = site.buildProtocol(peer_address)
        self.transport = RecordingTransport(hostAddress=HOST_ADDRESS, peerAddress=peer_address)
        self.transport.protocol = self.channel  # as real TCP transports have
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        # After an upgrade the WebSocket protocol owns the transport.
        self.transport.protocol.dataReceived(data)

    def output(self) -> bytes:
        return self.transport.value()

    def lose(self) -> None:
        """The connection is gone (whichever protocol owns it now hears it)."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.transport.protocol.connectionLost(Failure(ConnectionDone()))


# -- fixtures (the conftests of the WebSocket and tap tests import them) ---------------


@pytest.fixture
def clock() -> Iterator[MemoryReactorClock]:
    clock = MemoryReactorClock()
    previous = txaio.config.loop
    txaio.config.loop = clock
    try:
        yield clock
    finally:
        txaio.config.loop = previous


@pytest.fixture
def ws_factory(clock: MemoryReactorClock) -> CoapWebSocketServerFactory:
    return CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock)


@pytest.fixture
def peer(ws_factory: CoapWebSocketServerFactory) -> WsPeer:
    return WsPeer(ws_factory)
