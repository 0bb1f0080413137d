"""The CoAP-over-WebSockets client against our server (and against misbehaving servers),
connected in memory with twisted.test.iosim; autobahn's timers on a MemoryReactorClock.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.websocket.client import (
    CoapWebSocketClientFactory,
    CoapWebSocketClientProtocol,
    WebSocketConnectError,
    connect_websocket,
)
from coaptcp.transport.websocket.common import WELL_KNOWN_COAP
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

SERVER = IPv4Address("TCP", "127.0.0.1", 8080)
CLIENT = IPv4Address("TCP", "127.0.0.1", 50000)


def results(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def connect_pair(server_factory: Any, client_factory: CoapWebSocketClientFactory):
    server = server_factory.buildProtocol(CLIENT)
    client = client_factory.buildProtocol(SERVER)
    server_transport = iosim.FakeTransport(
        server, isServer=True, hostAddress=SERVER, peerAddress=CLIENT
    )
    client_transport = iosim.FakeTransport(
        client, isServer=False, hostAddress=CLIENT, peerAddress=SERVER
    )
    pump = iosim.connect(server, server_transport, client, client_transport, greet=True)
    pump.flush()
    return server, client, pump


@pytest.fixture
def server_factory(clock) -> CoapWebSocketServerFactory:
    return CoapWebSocketServerFactory(make_demo_site(), reactor=clock)


def client_factory(clock, host: str = "example.org", port: int = 8080, **kwargs: Any):
    return CoapWebSocketClientFactory(host, port, reactor=clock, **kwargs)


def test_request_ping_and_release_over_websockets(clock, server_factory) -> None:
    factory = client_factory(clock)
    opened = results(factory.opened)
    _, client, pump = connect_pair(server_factory, factory)
    assert opened == [client]
    assert isinstance(client, CoapWebSocketClientProtocol)
    assert client.channel.connection.peer_csm_received
    response = results(client.request(Code.GET, Options.build(uri_path=["hello"])))
    pump.flush()
    assert response[0].code == Code.CONTENT and response[0].payload == b"Hello, world!"
    info = results(client.request(Code.GET, Options.build(uri_path=["info"])))
    pump.flush()
    assert b'"host":"example.org"' in info[0].payload  # our Host header reached the server
    rtt = results(client.ping())
    pump.flush()
    assert rtt == [0.0]  # the MemoryReactorClock did not move
    closed = results(client.release("done"))
    pump.flush()
    assert closed == [None]
    assert not factory.connections and not server_factory.connections


def test_large_response_waits_for_nothing_and_arrives_whole(clock, server_factory) -> None:
    factory = client_factory(clock)
    _, client, pump = connect_pair(server_factory, factory)
    response = results(client.request(Code.GET, Options.build(uri_path=["large"])))
    pump.flush()
    assert len(response[0].payload) == 4000


def test_server_may_send_requests_to_the_client(clock, server_factory) -> None:
    class Sensor(Resource):
        def render_GET(self, request: Request) -> Response:
            return Response.text("on the client side")

    root = Resource()
    root.putChild("sensor", Sensor())
    factory = client_factory(clock, site=root)
    server, _, pump = connect_pair(server_factory, factory)
    answer = results(server.request(Code.GET, Options.build(uri_path=["sensor"])))
    pump.flush()
    assert answer[0].payload == b"on the client side"


def test_client_without_site_answers_5_01(clock, server_factory) -> None:
    server, _, pump = connect_pair(server_factory, client_factory(clock))
    answer = results(server.request(Code.GET, Options.build(uri_path=["x"])))
    pump.flush()
    assert answer[0].code == Code.NOT_IMPLEMENTED


def test_server_abort_fails_pending_requests(clock, server_factory) -> None:
    factory = client_factory(clock)
    server, client, pump = connect_pair(server_factory, factory)
    pending = results(client.request(Code.GET, Options.build(uri_path=["hello"])))
    server.abort("going away")  # before the request arrives
    pump.flush()
    (failure,) = pending
    assert isinstance(failure, Failure) and failure.check(ConnectionClosedError)
    assert "going away" in failure.value.reason
    assert not factory.connections


def test_wrong_path_is_reported_as_404(clock, server_factory) -> None:
    factory = client_factory(clock, path="/elsewhere")
    opened = results(factory.opened)
    connect_pair(server_factory, factory)
    (failure,) = opened
    assert isinstance(failure, Failure) and failure.check(WebSocketConnectError)
    assert "404" in failure.value.reason


def test_server_that_does_not_select_coap_is_refused(clock) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class NoSubprotocol(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> None:
            return None  # accepts, but selects no subprotocol

    plain = WebSocketServerFactory(reactor=clock)
    plain.protocol = NoSubprotocol
    factory = client_factory(clock)
    opened = results(factory.opened)
    _, client, pump = connect_pair(plain, factory)
    clock.advance(10)
    pump.flush()
    (failure,) = opened
    assert isinstance(failure, Failure) and failure.check(WebSocketConnectError)
    assert 'subprotocol "coap"' in failure.value.reason
    assert not hasattr(client, "channel")  # no CoAP was spoken


@pytest.mark.parametrize(
    ("kwargs", "url", "port"),
    [
        ({"host": "example.org"}, "ws://example.org/.well-known/coap", 80),
        ({"host": "example.org", "secure": True}, "wss://example.org/.well-known/coap", 443),
        ({"host": "example.org", "port": 8683}, "ws://example.org:8683/.well-known/coap", 8683),
        (
            {"host": "2001:db8::1", "port": 9, "secure": True},
            "wss://[2001:db8::1]:9/.well-known/coap",
            9,
        ),
        ({"host": "h", "port": 1, "path": "/x/coap?k=v"}, "ws://h:1/x/coap?k=v", 1),
    ],
)
def test_client_factory_builds_the_endpoint_url(
    clock, kwargs: dict[str, Any], url: str, port: int
) -> None:
    factory = CoapWebSocketClientFactory(reactor=clock, **kwargs)
    assert factory.url == factory.endpoint_url == url
    assert factory.server_port == port
    assert WELL_KNOWN_COAP == "/.well-known/coap"


def test_client_factory_brackets_ipv6_in_the_host_header(clock) -> None:
    factory = CoapWebSocketClientFactory("::1", 8080, reactor=clock)
    assert factory.url == "ws://[::1]:8080/.well-known/coap"
    assert factory.host == "[::1]"  # autobahn writes the Host header from this


@pytest.mark.parametrize("path", ["", "x", ".well-known/coap"])
def test_client_factory_rejects_a_relative_path(clock, path: str) -> None:
    with pytest.raises(ValueError):
        CoapWebSocketClientFactory("h", path=path, reactor=clock)


# -- connect_websocket ---------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class PumpEndpoint:
    """Connects the client factory to a server factory in memory (iosim)."""

    def __init__(self, server_factory: Any) -> None:
        self.server_factory = server_factory
        self.pump: Any = None
        self.server: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        self.server, client, self.pump = connect_pair(self.server_factory, factory)
        return succeed(client)


@implementer(IStreamClientEndpoint)
class HangingEndpoint:
    def __init__(self) -> None:
        self.cancelled = False

    def connect(self, factory: Any) -> Deferred[Any]:
        def cancel(_: Deferred[Any]) -> None:
            self.cancelled = True

        return Deferred(cancel)


@implementer(IStreamClientEndpoint)
class RefusingEndpoint:
    def connect(self, factory: Any) -> Deferred[Any]:
        return fail(ConnectionRefusedError("nobody home"))


def test_connect_coap_websocket_through_an_endpoint(clock, server_factory) -> None:
    endpoint = PumpEndpoint(server_factory)
    connected = results(connect_websocket(clock, "sensor.example", 8080, endpoint=endpoint))
    (protocol,) = connected
    assert isinstance(protocol, CoapWebSocketClientProtocol)
    info = results(protocol.request(Code.GET, Options.build(uri_path=["info"])))
    endpoint.pump.flush()
    assert b'"host":"sensor.example"' in info[0].payload


def test_connect_coap_websocket_can_be_cancelled(clock) -> None:
    endpoint = HangingEndpoint()
    connecting = connect_websocket(clock, "h", endpoint=endpoint)
    outcome = results(connecting)
    connecting.cancel()
    assert endpoint.cancelled
    (failure,) = outcome
    assert isinstance(failure, Failure) and failure.check(CancelledError)


def test_connect_coap_websocket_reports_connection_errors(clock) -> None:
    (failure,) = results(connect_websocket(clock, "h", endpoint=RefusingEndpoint()))
    assert isinstance(failure, Failure) and failure.check(WebSocketConnectError)
    assert "cannot connect to ws://h/.well-known/coap" in failure.value.reason
    assert "nobody home" in failure.value.reason


def test_connect_coap_websocket_rejects_a_relative_path(clock) -> None:
    with pytest.raises(ValueError):
        connect_websocket(clock, "h", path="coap")


def test_neither_side_sends_websocket_pings_or_fragments(clock, server_factory) -> None:
    server_factory.limits = Limits(idle_timeout=None)  # twenty quiet minutes
    factory = client_factory(clock)
    factory.limits = Limits(idle_timeout=None)
    server, client, pump = connect_pair(server_factory, factory)
    pings: list[bytes] = []
    server.onPing = pings.append
    client.onPing = pings.append
    for _ in range(20):
        clock.advance(60)
        pump.flush()
    assert pings == []
    for side in (server_factory, factory):
        assert side.autoPingInterval == 0 and side.autoFragmentSize == 0
    # A 4,000-byte request arrives as one message: the server answers it whole.
    sizes: list[int] = []
    original = server.onMessage

    def record(payload: bytes, isBinary: bool) -> None:
        sizes.append(len(payload))
        original(payload, isBinary)

    server.onMessage = record
    answer = results(client.request(Code.PUT, Options.build(uri_path=["store"]), b"z" * 4000))
    pump.flush()
    assert answer[0].code == Code.CHANGED
    assert sizes and sizes[-1] > 4000
