"""``/ep/NAME/...``: the reverse proxy to registered endpoints, over the connection each
device called in on (RFC 9176 section 5, RFC 8323 section 3.3, RFC 7641 section 5)."""

from __future__ import annotations

from typing import Any

from sites import Slow
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.directory import ResourceDirectory, install_directory
from coaptcp.proxy.endpoints import EndpointLimits, EndpointProxy
from coaptcp.server import Request, Resource, Response, Site
from coaptcp.server.observe import ObservableResource
from coaptcp.testing import ConnectedPair, connected_pair, result_of, success


class Temperature(ObservableResource):
    """An observable reading; records what each request asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.value = "21.5"
        self.asked: list[tuple[str, ...]] = []

    def render_GET(self, request: Request) -> Response:
        self.asked.append(tuple(request.query))
        return Response.text(self.value)




class Device:
    """A device's own site: /sensors/temp and /slow."""

    def __init__(self) -> None:
        self.temp = Temperature()
        self.slow = Slow()
        root = Resource()
        sensors = Resource()
        sensors.putChild("temp", self.temp)
        root.putChild("sensors", sensors)
        root.putChild("slow", self.slow)
        self.site = Site(root)


class Backend:
    """A server with a directory and ``/ep``; devices and readers connect in memory."""

    def __init__(self, limits: EndpointLimits | None = None) -> None:
        self.clock = MemoryReactorClock()
        self.root = Resource()
        self.directory: ResourceDirectory = install_directory(self.root, reactor=self.clock)
        self.proxy = EndpointProxy(self.directory, limits)
        self.root.putChild("ep", self.proxy)
        self.site = Site(self.root)
        self.pairs: list[ConnectedPair] = []

    def device(self, name: str, port: int = 40000) -> tuple[ConnectedPair, Device]:
        device = Device()
        pair = connected_pair(self.site, clock=self.clock, client_site=device.site,
                              client_address=IPv4Address("TCP", "192.0.2.7", port))
        self.pairs.append(pair)
        answer = self.call(pair, Code.POST, "rd", f"ep={name}", payload=b"</sensors/temp>")
        assert answer.code == Code.CREATED, answer
        return pair, device

    def reader(self, port: int = 50000) -> ConnectedPair:
        pair = connected_pair(self.site, clock=self.clock,
                              client_address=IPv4Address("TCP", "198.51.100.1", port))
        self.pairs.append(pair)
        return pair

    def flush(self) -> None:
        for _ in range(5):
            for pair in self.pairs:
                if not pair.closed:
                    pair.flush()

    def call(self, pair: ConnectedPair, code: Code, path: str, *query: str,
             payload: bytes = b"") -> Response:
        results = result_of(pair.request(code, *[s for s in path.split("/") if s],
                                         query=query, payload=payload))
        self.flush()
        answer: Response = success(results)
        return answer

    def datagram(self, path: str, *query: str) -> list[Any]:
        """A GET arriving over UDP (no channel): the results of the Site's answer."""
        request = Request(Code.GET, b"u1", Options.build(
            uri_path=[s for s in path.split("/") if s], uri_query=query), b"",
            peer=IPv4Address("UDP", "198.51.100.9", 5683))
        answer = self.site.handle(request)
        if isinstance(answer, Deferred):
            return result_of(answer)
        return [answer]


def test_a_request_under_ep_name_reaches_the_device_with_path_and_query() -> None:
    backend = Backend()
    _, device = backend.device("node1")
    reader = backend.reader()
    answer = backend.call(reader, Code.GET, "ep/node1/sensors/temp", "u=c", "x=1")
    assert answer.code == Code.CONTENT and answer.payload == b"21.5"
    assert device.temp.asked == [("u=c", "x=1")]


def test_a_datagram_request_reaches_it_too() -> None:
    backend = Backend()
    backend.device("node1")
    results = backend.datagram("ep/node1/sensors/temp")
    backend.flush()
    answer = success(results)
    assert answer.code == Code.CONTENT and answer.payload == b"21.5"


def test_a_name_never_registered_is_4_04_with_a_diagnostic() -> None:
    backend = Backend()
    reader = backend.reader()
    answer = backend.call(reader, Code.GET, "ep/nobody/x")
    assert answer.code == Code.NOT_FOUND
    assert answer.payload == b"no endpoint 'nobody' is registered"
    assert backend.call(reader, Code.GET, "ep").code == Code.NOT_FOUND


def test_a_removed_registration_is_4_04_saying_so() -> None:
    backend = Backend()
    pair, _ = backend.device("node1")
    location = backend.directory.find("node1")
    assert location is not None
    assert backend.call(pair, Code.DELETE, location.location).code == Code.DELETED
    answer = backend.call(backend.reader(), Code.GET, "ep/node1/sensors/temp")
    assert answer.code == Code.NOT_FOUND
    assert b"no longer registered: removed" in answer.payload


def test_a_device_whose_connection_ended_is_5_04_at_once_and_back_after_registering() -> None:
    backend = Backend()
    pair, _ = backend.device("node1")
    reader = backend.reader()
    pair.drop()
    results = result_of(reader.request(Code.GET, "ep", "node1", "sensors", "temp"))
    reader.flush()  # no clock advance: the answer is immediate
    answer = success(results)
    assert answer.code == Code.GATEWAY_TIMEOUT
    assert b"endpoint 'node1' is gone: its connection ended" in answer.payload
    backend.device("node1", port=40001)
    again = backend.call(reader, Code.GET, "ep/node1/sensors/temp")
    assert again.code == Code.CONTENT


def test_a_request_in_flight_when_the_connection_ends_fails_at_once_with_5_04() -> None:
    backend = Backend()
    pair, device = backend.device("node1")
    reader = backend.reader()
    results = result_of(reader.request(Code.GET, "ep", "node1", "slow"))
    backend.flush()
    assert device.slow.waiting and results == []
    pair.drop()
    reader.flush()
    answer = success(results)
    assert answer.code == Code.GATEWAY_TIMEOUT
    assert b"connection ended" in answer.payload
    assert backend.proxy.in_flight == {} and backend.proxy.upstream.in_flight == 0


def test_no_answer_in_time_is_5_04() -> None:
    backend = Backend(EndpointLimits(timeout=10))
    backend.device("node1")
    reader = backend.reader()
    results = result_of(reader.request(Code.GET, "ep", "node1", "slow"))
    backend.flush()
    backend.clock.advance(11)
    backend.flush()
    answer = success(results)
    assert answer.code == Code.GATEWAY_TIMEOUT and b"in time" in answer.payload


def test_a_udp_registration_is_5_02_with_a_diagnostic() -> None:
    backend = Backend()
    request = Request(Code.POST, b"t", Options.build(uri_path=["rd"], uri_query=["ep=u1"]),
                      b"</a>", peer=IPv4Address("UDP", "192.0.2.8", 5683))
    registered = backend.site.handle(request)
    assert isinstance(registered, Response) and registered.code == Code.CREATED
    results = backend.datagram("ep/u1/a")
    answer = success(results)
    assert answer.code == Code.BAD_GATEWAY
    assert b"registered over UDP" in answer.payload and b"coap://192.0.2.8" in answer.payload


def test_requests_in_flight_per_endpoint_are_bounded_with_5_03_and_max_age() -> None:
    backend = Backend(EndpointLimits(max_in_flight_per_endpoint=2))
    _, device = backend.device("node1")
    reader = backend.reader()
    held = [result_of(reader.request(Code.GET, "ep", "node1", "slow")) for _ in range(2)]
    backend.flush()
    third = result_of(reader.request(Code.GET, "ep", "node1", "slow"))
    backend.flush()
    answer = success(third)
    assert answer.code == Code.SERVICE_UNAVAILABLE
    assert answer.options.max_age is not None
    assert b"requests in flight per endpoint" in answer.payload
    for d in device.slow.waiting:
        d.callback(Response.text("done"))
    backend.flush()
    assert [success(r).payload for r in held] == [b"done", b"done"]
    assert backend.proxy.in_flight == {}


def test_requests_in_flight_in_total_are_bounded() -> None:
    backend = Backend(EndpointLimits(max_in_flight=1))
    backend.device("node1")
    backend.device("node2", port=40001)
    reader = backend.reader()
    result_of(reader.request(Code.GET, "ep", "node1", "slow"))
    backend.flush()
    answer = backend.call(reader, Code.GET, "ep/node2/slow")
    assert answer.code == Code.SERVICE_UNAVAILABLE and answer.options.max_age is not None


def observe(reader: ConnectedPair, *path: str) -> tuple[list[Response], list[Any]]:
    seen: list[Response] = []
    ended: list[Any] = []
    reader.client.channel.observe(
        Options.build(uri_path=path), on_notification=seen.append, on_end=ended.append)
    return seen, ended


def test_observers_share_one_upstream_observation_and_get_each_change() -> None:
    backend = Backend()
    _, device = backend.device("node1")
    first, second = backend.reader(), backend.reader(50001)
    seen1, _ = observe(first, "ep", "node1", "sensors", "temp")
    backend.flush()
    seen2, _ = observe(second, "ep", "node1", "sensors", "temp")
    backend.flush()
    assert device.temp.observer_count == 1
    assert len(backend.proxy.upstream.observations) == 1
    device.temp.value = "22.0"
    device.temp.notify()
    backend.flush()
    assert [r.payload for r in seen1] == [b"21.5", b"22.0"]
    assert [r.payload for r in seen2] == [b"21.5", b"22.0"]
    assert all(r.options.observe is not None for r in seen1 + seen2)


def test_observations_end_with_5_04_when_the_device_leaves() -> None:
    backend = Backend()
    pair, _ = backend.device("node1")
    reader = backend.reader()
    seen, ended = observe(reader, "ep", "node1", "sensors", "temp")
    backend.flush()
    pair.drop()
    backend.flush()
    assert seen[-1].code == Code.GATEWAY_TIMEOUT
    assert seen[-1].options.observe is None
    assert ended == [None]
    assert len(backend.proxy.upstream.observations) == 0


def test_the_last_observer_leaving_cancels_the_observation_on_the_device() -> None:
    backend = Backend()
    _, device = backend.device("node1")
    reader = backend.reader()
    options = Options.build(uri_path=["ep", "node1", "sensors", "temp"])
    observation = reader.client.channel.observe(
        options, on_notification=lambda r: None, on_end=lambda e: None)
    backend.flush()
    assert device.temp.observer_count == 1
    observation.cancel(5)
    backend.flush()
    assert device.temp.observer_count == 0
    assert len(backend.proxy.upstream.observations) == 0


def test_observations_are_bounded() -> None:
    backend = Backend(EndpointLimits(max_observations=1))
    backend.device("node1")
    reader = backend.reader()
    observe(reader, "ep", "node1", "sensors", "temp")
    backend.flush()
    shared, _ = observe(reader, "ep", "node1", "sensors", "temp")
    backend.flush()
    other, _ = observe(reader, "ep", "node1", "slow")
    backend.flush()
    assert shared[0].code == Code.CONTENT  # the same resource: shared, not refused
    assert other[0].code == Code.SERVICE_UNAVAILABLE
    assert OptionNumber.MAX_AGE in other[0].options


def test_gone_names_are_remembered_up_to_a_bound() -> None:
    backend = Backend(EndpointLimits(max_gone=1))
    first, _ = backend.device("a")
    second, _ = backend.device("b", port=40001)
    first.drop()
    second.drop()
    reader = backend.reader()
    assert backend.call(reader, Code.GET, "ep/a/x").code == Code.NOT_FOUND
    assert backend.call(reader, Code.GET, "ep/b/x").code == Code.GATEWAY_TIMEOUT


def test_a_request_to_a_device_whose_connection_is_closing_fails_at_once() -> None:
    backend = Backend()
    pair, device = backend.device("node1")
    reader = backend.reader()
    registration = backend.directory.find("node1")
    assert registration is not None
    pair.server.channel.release("going away")  # closing, not closed: still registered
    results = result_of(reader.request(Code.GET, "ep", "node1", "sensors", "temp"))
    reader.flush()  # only the reader's side moves: the device never sees the request
    answer = success(results)
    assert answer.code == Code.GATEWAY_TIMEOUT
    assert b"the endpoint's connection ended" in answer.payload
    assert device.temp.asked == []


def test_a_device_registered_over_websockets_is_reached_the_same_way() -> None:
    from ws_helpers import opened
    from ws_wire import coap

    from coaptcp.core.message import Message
    from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

    backend = Backend()
    browser = opened(CoapWebSocketServerFactory(backend.site, reactor=backend.clock))
    options = Options.build(uri_path=["rd"], uri_query=["ep=browser1"], content_format=40)
    browser.send(coap(Message(Code.POST, b"r1", options, b"</clicks>;rt=counter;obs")))
    [registered] = [frame.coap() for frame in browser.frames()]
    assert registered.code == Code.CREATED
    results = backend.datagram("ep/browser1/clicks", "since=0")
    [request] = [frame.coap() for frame in browser.frames()]
    assert request.code == Code.GET and request.token != b"u1"
    assert request.options.uri_path == ("clicks",)
    assert request.options.uri_query == ("since=0",)
    browser.send(coap(Message(Code.CONTENT, request.token, Options(), b"3")))
    answer = success(results)
    assert answer.code == Code.CONTENT and answer.payload == b"3"
    browser.lose()
    gone = success(backend.datagram("ep/browser1/clicks"))
    assert gone.code == Code.GATEWAY_TIMEOUT
