"""Registrations made over a connection (RFC 8323): they end with it, a live one keeps
its name, and the back end reaches the device over it (RFC 9176 sections 5 and 7.5)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.directory import NotConnected, ResourceDirectory, install_directory
from coaptcp.directory.peers import default_base, scheme_of
from coaptcp.server import Request, Resource, Response, Site
from coaptcp.testing import ConnectedPair, connected_pair, failure, result_of, success
from coaptcp.transport.websocket.common import WebSocketChannel


class Temperature(Resource):
    """What the device serves on its own connection."""

    def render_GET(self, request: Request) -> Response:
        return Response.text("21.5")


def device_site() -> Site:
    root = Resource()
    sensors = Resource()
    sensors.putChild("temp", Temperature())
    root.putChild("sensors", sensors)
    return Site(root)


class Backend:
    """A server with a directory, and devices calling in to it over TCP (in memory)."""

    def __init__(self) -> None:
        self.clock = MemoryReactorClock()
        self.root = Resource()
        self.directory: ResourceDirectory = install_directory(self.root, reactor=self.clock)
        self.site = Site(self.root)

    def device(self, port: int = 40000) -> ConnectedPair:
        return connected_pair(self.site, clock=self.clock, client_site=device_site(),
                              client_address=IPv4Address("TCP", "192.0.2.7", port))


def call(pair: ConnectedPair, code: Code, path: str, *query: str, payload: bytes = b"",
         ) -> Response:
    results = result_of(pair.request(code, *[s for s in path.split("/") if s],
                                     query=query, payload=payload))
    pair.flush()
    answer: Response = success(results)
    return answer


def register(pair: ConnectedPair, *query: str) -> str:
    answer = call(pair, Code.POST, "rd", *query, payload=b"</sensors/temp>;rt=temperature")
    assert answer.code == Code.CREATED, answer
    return "/".join(answer.options.location_path)


def test_a_registration_over_tcp_has_a_coap_tcp_base_and_holds_its_connection() -> None:
    backend = Backend()
    pair = backend.device()
    register(pair, "ep=node1")
    registration = backend.directory.find("node1")
    assert registration is not None
    assert registration.base == "coap+tcp://192.0.2.7:40000"
    assert registration.connection is pair.server.channel
    assert backend.directory.find_by_connection(pair.server.channel) == [registration]


def test_it_ends_when_its_connection_ends() -> None:
    backend = Backend()
    pair = backend.device()
    register(pair, "ep=node1", "lt=90000")
    registration = backend.directory.find("node1")
    assert registration is not None
    gone = result_of(registration.when_gone())
    pair.drop()
    assert "its connection ended" in success(gone)
    assert backend.directory.find("node1") is None and len(backend.directory) == 0
    assert backend.directory._connections == {}


def test_a_released_connection_ends_it_too() -> None:
    backend = Backend()
    pair = backend.device()
    register(pair, "ep=node1")
    pair.client.channel.release("going to sleep")
    pair.flush()
    backend.clock.advance(1)
    pair.flush()
    assert backend.directory.find("node1") is None


def test_a_name_held_by_a_live_connection_cannot_be_taken_by_another() -> None:
    backend = Backend()
    first, second = backend.device(40000), backend.device(40001)
    location = register(first, "ep=node1")
    answer = call(second, Code.POST, "rd", "ep=node1", payload=b"</x>")
    assert answer.code == Code.FORBIDDEN
    assert answer.payload == (b"endpoint name 'node1' is registered by another connection, "
                              b"which is still open")
    # Nor can it update or remove the registration, nor can a datagram.
    assert call(second, Code.POST, location).code == Code.FORBIDDEN
    assert call(second, Code.DELETE, location).code == Code.FORBIDDEN
    udp = Request(Code.DELETE, b"t", Options.build(uri_path=location.split("/")), b"",
                  peer=IPv4Address("UDP", "192.0.2.7", 40000))
    answer = backend.site.handle(udp)
    assert isinstance(answer, Response) and answer.code == Code.FORBIDDEN
    assert b"belongs to another connection" in answer.payload
    # The holder itself may; once it is gone, the name is free.
    assert call(first, Code.POST, location, "lt=100").code == Code.CHANGED
    first.drop()
    register(second, "ep=node1")
    registration = backend.directory.find("node1")
    assert registration is not None and registration.connection is second.server.channel


def test_registering_again_on_one_connection_adds_one_close_waiter() -> None:
    backend = Backend()
    pair = backend.device()
    locations = {register(pair, "ep=node1") for _ in range(20)}
    register(pair, "ep=node2")
    assert len(locations) == 1
    assert len(pair.server.channel._closed_waiters) == 1
    registration = backend.directory.find("node1")
    assert registration is not None
    call(pair, Code.DELETE, locations.pop())
    register(pair, "ep=node1")
    assert len(pair.server.channel._closed_waiters) == 1


def test_a_udp_registration_taken_over_a_connection_ends_with_it() -> None:
    backend = Backend()
    udp = Request(Code.POST, b"t", Options.build(uri_path=["rd"], uri_query=["ep=node1"]),
                  b"</a>", peer=IPv4Address("UDP", "192.0.2.7", 5683))
    answer = backend.site.handle(udp)
    assert isinstance(answer, Response) and answer.code == Code.CREATED
    pair = backend.device()
    register(pair, "ep=node1")
    registration = backend.directory.find("node1")
    assert registration is not None and registration.connection is pair.server.channel
    pair.drop()
    assert backend.directory.find("node1") is None


def test_the_back_end_reaches_the_device_over_its_connection() -> None:
    backend = Backend()
    pair = backend.device()
    seen: list[Any] = []
    backend.directory.add_listener(
        lambda registration: seen.append(registration.request(Code.GET, "/sensors/temp")))
    register(pair, "ep=node1")
    [request] = seen
    results = result_of(request)
    pair.flush()
    answer = success(results)
    assert (answer.code, answer.payload) == (Code.CONTENT, b"21.5")
    registration = backend.directory.find("node1")
    assert registration is not None
    rtt = result_of(registration.ping())
    pair.flush()
    assert success(rtt) == 0.0
    notifications: list[Response] = []
    ends: list[BaseException | None] = []
    registration.observe(["sensors", "temp"], on_notification=notifications.append,
                         on_end=ends.append)
    pair.flush()
    assert [n.payload for n in notifications] == [b"21.5"]
    missing = result_of(registration.request(Code.GET, "nothing/here"))
    pair.flush()
    assert success(missing).code == Code.NOT_FOUND
    pair.drop()
    assert len(ends) == 1
    failure(result_of(registration.request(Code.GET, "/sensors/temp")), NotConnected)


def test_a_udp_registration_has_no_connection_to_send_on() -> None:
    backend = Backend()
    udp = Request(Code.POST, b"t", Options.build(uri_path=["rd"], uri_query=["ep=n"]), b"",
                  peer=IPv4Address("UDP", "192.0.2.7", 5683))
    backend.site.handle(udp)
    registration = backend.directory.find("n")
    assert registration is not None
    reason = failure(result_of(registration.request(Code.GET, "/x")), NotConnected)
    assert "registered over UDP" in str(reason.value)
    failure(result_of(registration.ping()), NotConnected)


def test_websocket_and_tls_schemes_make_the_default_base() -> None:
    ws = WebSocketChannel.__new__(WebSocketChannel)
    peer = IPv4Address("TCP", "192.0.2.7", 443)
    for secure, channel, expected in [
        (True, ws, "coaps+ws://192.0.2.7"),
        (False, ws, "coap+ws://192.0.2.7:443"),
        (False, None, "coap://192.0.2.7:443"),
    ]:
        request = Request(Code.POST, b"", Options(), b"", peer=peer, secure=secure,
                          channel=channel)
        assert default_base(request) == expected
    assert scheme_of(Request(Code.GET, b"", Options(), b"", secure=True)) == "coaps"
    mapped = Request(Code.GET, b"", Options(), b"", peer=IPv4Address("TCP", "::ffff:192.0.2.9",
                                                                      5683))
    assert default_base(mapped) == "coap://192.0.2.9"
    assert default_base(Request(Code.GET, b"", Options(), b"")) is None
