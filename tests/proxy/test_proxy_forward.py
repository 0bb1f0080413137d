"""The forward proxy with a recording client in place of the network (RFC 7252 5.7).

The client double records each upstream request and hands back a Deferred the test fires;
names resolve through a scripted resolver.  What is checked is what the proxy sends
(where, with which options) and what it answers downstream.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from coaptcp.client import ConnectFailed, PoolFull, RequestTimeout
from coaptcp.client.targets import resolve_target
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.udp.layer import LimitError
from coaptcp.core.uri import CoapUri
from coaptcp.proxy import ForwardProxy, ProxyPolicy, ResponseCache
from coaptcp.server import Request, Response

N = OptionNumber


class RecordingClient:
    def __init__(self) -> None:
        self.sent: list[tuple[Code, str, bytes, Options, float | None]] = []
        self.answers: list[Deferred[Response]] = []

    def request(self, method: Code, uri: CoapUri, payload: bytes = b"", *, options: Options,
                timeout: float | None = None) -> Deferred[Response]:
        # What goes on the wire: where the client connects, the resource, and the
        # options (the URI's Uri-Host and the given ones).
        _, sent = resolve_target(uri, options)
        resource = "".join("/" + segment for segment in uri.path) or "/"
        self.sent.append((method, uri.origin_uri + resource, payload, sent, timeout))
        d: Deferred[Response] = Deferred()
        self.answers.append(d)
        return d


class ScriptedResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def resolveHostName(self, receiver: Any, host: str, port: int = 0, *args: Any) -> Any:
        receiver.resolutionBegan(None)
        for address in self.table.get(host, []):
            receiver.addressResolved(IPv4Address("TCP", address, port))
        receiver.resolutionComplete()


def make_proxy(networks: list[str], **kwargs: Any) -> tuple[ForwardProxy, RecordingClient, Clock]:
    clock = Clock()
    clock.nameResolver = ScriptedResolver({  # type: ignore[attr-defined]
        "device.local": ["127.0.0.9"], "outside.example": ["203.0.113.5"],
    })
    client = RecordingClient()
    proxy = ForwardProxy(client, ProxyPolicy(networks), reactor=clock, **kwargs)  # type: ignore[arg-type]
    return proxy, client, clock


def proxy_request(options: list[tuple[int, Any]], method: Code = Code.GET,
                  payload: bytes = b"", host: str = "192.0.2.1") -> Request:
    return Request(method, b"t", Options(options), payload,
                   peer=IPv4Address("TCP", host, 40000))


def answer_of(result: Response | Deferred[Response]) -> Response:
    if isinstance(result, Response):
        return result
    got: list[Response] = []
    result.addCallback(got.append)
    assert got, "no answer yet"
    return got[0]


def test_a_request_to_an_allowed_address_goes_upstream_and_comes_back() -> None:
    proxy, client, _ = make_proxy(["127.0.0.0/8"])
    pending = proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1:5683/hello"),
                                          (N.ACCEPT, 0)]))
    [(method, uri, _, options, timeout)] = client.sent
    assert method == Code.GET and uri == "coap://127.0.0.1:5683/hello"
    assert options.get_uint(N.ACCEPT) == 0 and options.get_uint(N.HOP_LIMIT) == 15
    assert timeout == proxy.upstream.timeout
    upstream = Options([(N.CONTENT_FORMAT, 0), (N.BLOCK2, 0x06), (N.MAX_AGE, 30)])
    client.answers[0].callback(Response(Code.CONTENT, b"hi", options=upstream))
    response = answer_of(pending)
    assert response.code == Code.CONTENT and response.payload == b"hi"
    assert N.BLOCK2 not in response.options and response.options.get_uint(N.MAX_AGE) == 30
    assert proxy.in_flight == 0


def test_a_destination_outside_the_networks_gets_5_05_and_nothing_is_sent() -> None:
    proxy, client, _ = make_proxy(["127.0.0.0/8"])
    for target in ("coap://203.0.113.5/", "coap://outside.example/", "coap://[::ffff:203.0.113.5]/",
                   "coap://unknown.invalid/"):
        response = answer_of(proxy.handle(proxy_request([(N.PROXY_URI, target)])))
        assert response.code == Code.PROXYING_NOT_SUPPORTED, target
        assert b"not allowed" in response.payload
    assert client.sent == []


def test_a_name_is_resolved_checked_and_connected_to_by_address() -> None:
    proxy, client, _ = make_proxy(["127.0.0.0/8"])
    proxy.handle(proxy_request([(N.PROXY_SCHEME, "coap+tcp"), (N.URI_HOST, "device.local"),
                                (N.URI_PATH, "temp")]))
    [(_, uri, _, options, _)] = client.sent
    assert uri == "coap+tcp://127.0.0.9:5683/temp"
    assert options.get_string(N.URI_HOST) == "device.local"  # the name still travels


def test_upstream_failures_are_5_02_and_timeouts_5_04() -> None:
    proxy, client, _ = make_proxy(["any"])
    failed = proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")]))
    client.answers[0].errback(Failure(ConnectFailed("coap://127.0.0.1/", "refused")))
    assert answer_of(failed).code == Code.BAD_GATEWAY
    slow = proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")]))
    client.answers[1].errback(Failure(RequestTimeout("no answer")))
    assert answer_of(slow).code == Code.GATEWAY_TIMEOUT
    assert proxy.in_flight == 0


def test_our_own_upstream_client_full_is_5_03_with_max_age_not_5_02() -> None:
    proxy, client, _ = make_proxy(["any"])
    answers = []
    for _ in range(2):
        answers.append(proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")])))
    for sent in client.answers[:2]:
        sent.errback(Failure(LimitError("max_queued_requests_per_peer",
                                        "more than 64 requests queued")))
    for answer in answers:
        refused = answer_of(answer)
        assert refused.code == Code.SERVICE_UNAVAILABLE
        assert refused.options.get_uint(N.MAX_AGE)
        assert b"max_queued_requests_per_peer" in refused.payload
    assert proxy.in_flight == 0


def test_our_upstream_connection_pool_full_is_5_03_with_max_age() -> None:
    # A downstream peer naming many upstream hosts fills the client's pool (PoolFull):
    # the proxy is overloaded, so 5.03 with Max-Age, as its other bounds.
    proxy, client, _ = make_proxy(["any"])
    answer = proxy.handle(proxy_request([(N.PROXY_URI, "coap+tcp://127.0.0.7/")]))
    client.answers[0].errback(Failure(PoolFull(1024)))
    refused = answer_of(answer)
    assert refused.code == Code.SERVICE_UNAVAILABLE
    assert refused.options.get_uint(N.MAX_AGE)
    assert b"max_connections" in refused.payload
    assert proxy.in_flight == 0


def test_requests_in_flight_are_bounded_per_peer_with_5_03_and_max_age() -> None:
    proxy, client, _ = make_proxy(["any"], max_in_flight_per_peer=2)
    for _ in range(2):
        proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")]))
    refused = answer_of(proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")])))
    assert refused.code == Code.SERVICE_UNAVAILABLE and refused.options.get_uint(N.MAX_AGE)
    other = proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/")], host="192.0.2.2"))
    assert isinstance(other, Deferred)  # another peer still gets through
    assert len(client.sent) == 3


def test_fresh_gets_come_from_the_cache_with_the_max_age_left() -> None:
    proxy, client, clock = make_proxy(["any"], cache=ResponseCache())
    request = [(N.PROXY_URI, "coap://127.0.0.1/t")]
    first = proxy.handle(proxy_request(request))
    client.answers[0].callback(Response(Code.CONTENT, b"21.5",
                                        options=Options([(N.MAX_AGE, 10)])))
    assert answer_of(first).payload == b"21.5"
    clock.advance(4)
    hit = answer_of(proxy.handle(proxy_request(request)))
    assert hit.payload == b"21.5" and hit.options.get_uint(N.MAX_AGE) == 6
    assert len(client.sent) == 1
    clock.advance(7)
    proxy.handle(proxy_request(request))
    assert len(client.sent) == 2  # stale: asked again
    put = proxy.handle(proxy_request(request, method=Code.PUT, payload=b"x"))
    assert isinstance(put, Deferred) and len(client.sent) == 3  # only GET is cached


def test_a_loop_ends_with_5_08_and_an_unrecognised_unsafe_option_with_5_02() -> None:
    proxy, client, _ = make_proxy(["any"])
    looped = answer_of(proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/"),
                                                   (N.HOP_LIMIT, 1)])))
    assert looped.code == Code(0xA8)
    unsafe = answer_of(proxy.handle(proxy_request([(N.PROXY_URI, "coap://127.0.0.1/"),
                                                   (2054, b"x")])))
    assert unsafe.code == Code.BAD_GATEWAY
    assert client.sent == []




def test_a_scheme_we_do_not_speak_is_5_05() -> None:
    proxy, client, _ = make_proxy(["any"])
    response = answer_of(proxy.handle(proxy_request([(N.PROXY_URI, "http://127.0.0.1/")])))
    assert response.code == Code.PROXYING_NOT_SUPPORTED and b"http" in response.payload
    assert client.sent == []
