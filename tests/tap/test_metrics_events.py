"""The rare-event families of ``--metrics``, in memory (MemoryReactorClock, iosim):
Aborts sent by reason, limits reached by limit, notifications, TLS handshake failures,
the proxy's upstream requests, the resource directory's registrations, and connection
counts by listener.  Each test makes the event happen and checks the exact count."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from sites import Slow
from tap_options import parse
from tls_helpers import (  # noqa: F401  (pki is a fixture)
    OTHER_PORT,
    PKI,
    connect_pair,
    pki,
    raw_client_context,
    raw_tls_client,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.client import ConnectFailed, RequestTimeout
from coaptcp.core.blocks import Block
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.metrics import EventCounts, MeteredSite, RequestMetrics, ServerCollector
from coaptcp.proxy.upstream import Upstream
from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource
from coaptcp.tap import plugin as tap
from coaptcp.testing import Harness, get
from coaptcp.testing.transports import RecordingTransport
from coaptcp.transport.admission import ConnectionGate
from coaptcp.transport.listeners import GatedFactory
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.tls.errors import (
    ALPNNotNegotiated,
    HandshakeFailed,
    HandshakeTimeout,
    failure_kind,
)
from coaptcp.transport.tls.settings import ServerTLSSettings


def cert_server(pki: PKI, **kwargs) -> ServerTLSSettings:  # noqa: F811
    return ServerTLSSettings(certificate=pki.server, private_key=pki.server_key, **kwargs)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def labelled(registry: CollectorRegistry, name: str, label: str) -> dict[str, float]:
    """Every sample of ``name`` as {its ``label`` value: value}."""
    found = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == name:
                found[s.labels[label]] = s.value
    return found


def metered_service(tmp_path: Path, *extra: str):
    options = parse("--metrics", "tcp:9100", *extra)
    service = tap.makeService(options)
    return options["metrics-registry"], service




class Ticking(ObservableResource):
    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, b"tick")


def counted_factory(limits: Limits = DEFAULT_LIMITS, **kwargs):
    """A factory serving /slow and /tick on a metered site, its counts and registry."""
    root = Resource()
    slow, ticking = Slow(), Ticking()
    root.putChild("slow", slow)
    root.putChild("tick", ticking)
    counts = EventCounts()
    registry = CollectorRegistry()
    site = MeteredSite(root, metrics=RequestMetrics(registry), counts=counts)
    factory = CoapFactory(site, reactor=MemoryReactorClock(), limits=limits, **kwargs)
    registry.register(ServerCollector(lambda: [("tcp", factory)], counts))
    return factory, counts, registry, slow, ticking


# -- Aborts sent, by reason -------------------------------------------------------------------


def test_a_malformed_frame_is_one_abort_of_reason_malformed(tmp_path):
    registry, service = metered_service(tmp_path)
    h = Harness(factory=service.factory, clock=MemoryReactorClock())
    h.open()
    h.feed_bytes(b"\x0f" + b"\x01" * 20)  # token length 15 is reserved (RFC 8323 3.2)
    assert [m.code for m in h.sent()] == [Code.ABORT]
    assert labelled(registry, "coap_aborts_sent_total", "reason") == {"malformed": 1}


def test_each_kind_of_abort_is_counted_under_its_own_reason():
    factory, counts, registry, _, _ = counted_factory(max_message_size=1152)
    first = Harness(factory=factory)
    first.feed(get(b"a", "slow"))  # a request before any CSM
    too_large = Harness(factory=factory)
    too_large.open()
    too_large.feed(Message(Code.PUT, b"b", Options.build(uri_path=["slow"]), b"x" * 2000))
    silent = Harness(factory=factory)
    silent.clock.advance(factory.limits.csm_timeout)  # no CSM in time
    ours = Harness(factory=factory)
    ours.open()
    ours.channel.abort("going away")
    for h in (first, too_large, silent, ours):
        assert h.sent()[-1].code == Code.ABORT
    assert labelled(registry, "coap_aborts_sent_total", "reason") == {
        "application": 1, "csm_timeout": 1, "message_too_large": 1, "no_csm": 1,
    }
    # An abort on a connection already closed sends nothing, and counts nothing.
    ours.channel.abort("again")
    assert counts.aborts["application"] == 1


def test_without_metrics_the_site_and_channels_count_nothing():
    options = parse()
    service = tap.makeService(options)
    assert service.factory.site.counts is None
    h = Harness(factory=service.factory, clock=MemoryReactorClock())
    h.open()
    assert h.channel.counts is None
    h.feed_bytes(b"\x0f" + b"\x01" * 20)
    assert h.sent()[-1].code == Code.ABORT  # aborted as ever, counted nowhere


# -- limits reached, by limit -----------------------------------------------------------------


def test_requests_in_progress_over_the_limit_count_as_max_inbound_requests():
    factory, _, registry, slow, _ = counted_factory(Limits(max_inbound_requests=1))
    h = Harness(factory=factory)
    h.open()
    h.feed(get(b"a", "slow"), get(b"b", "slow"), get(b"c", "slow"))
    assert [m.code for m in h.sent()] == [Code.TOO_MANY_REQUESTS] * 2
    slow.waiting[0].callback(Response(Code.CONTENT, b"done"))
    assert labelled(registry, "coap_limit_rejections_total", "limit") == {
        "max_inbound_requests": 2, "max_upload_bytes": 0,
    }


def test_a_body_over_max_body_size_counts_as_max_body_size():
    factory, _, registry, _, _ = counted_factory(max_body_size=1024)
    h = Harness(factory=factory)
    h.open()
    for num in (0, 1):  # two blocks of 1024 bytes: the second goes past the limit
        block = Options.build(uri_path=["slow"]).add(
            OptionNumber.BLOCK1, Block(num, True, 6).encode()
        )
        h.feed(Message(Code.PUT, b"u", block, b"x" * 1024))
    assert [m.code for m in h.sent()] == [Code.CONTINUE, Code.REQUEST_ENTITY_TOO_LARGE]
    assert sample(registry, "coap_limit_rejections_total", limit="max_body_size") == 1


def test_connections_over_the_limits_count_as_max_connections_and_per_address():
    factory, counts, registry, _, _ = counted_factory(Limits(max_connections=2))
    gate: ConnectionGate = factory.gate
    gate.counts = counts
    Harness(factory=factory).open()
    Harness(factory=factory).open()
    third = Harness(factory=factory)
    assert [m.code for m in third.sent()] == [Code.CSM, Code.ABORT]
    assert sample(registry, "coap_limit_rejections_total", limit="max_connections") == 1
    assert sample(registry, "coap_aborts_sent_total", reason="connection_limit") == 1
    per_address = ConnectionGate(Limits(max_connections_per_address=1))
    per_address.counts = counts
    assert per_address.admit("one", IPv4Address("TCP", "192.0.2.7", 1)) is None
    assert per_address.admit("two", IPv4Address("TCP", "192.0.2.7", 2)) is not None
    assert counts.limits["max_connections_per_address"] == 1


def test_observations_over_the_limit_count_as_max_observations():
    factory, _, registry, _, _ = counted_factory()
    h = Harness(factory=factory)
    h.open()
    h.channel.max_observations = 1
    for token in (b"o1", b"o2"):
        h.feed(Message(Code.GET, token, Options.build(uri_path=["tick"], observe=0)))
    assert sample(registry, "coap_limit_rejections_total", limit="max_observations") == 1
    assert sample(registry, "coap_observations", transport="tcp") == 1


# -- notifications ----------------------------------------------------------------------------


def test_notifications_sent_are_counted():
    factory, _, registry, _, ticking = counted_factory()
    h = Harness(factory=factory)
    h.open()
    h.feed(Message(Code.GET, b"o", Options.build(uri_path=["tick"], observe=0)))
    assert sample(registry, "coap_notifications_sent_total") == 0  # the first answer
    ticking.notify()
    ticking.notify()
    h.clock.advance(0)
    assert [m.payload for m in h.sent()] == [b"tick"] * 3
    assert sample(registry, "coap_notifications_sent_total") == 2


# -- TLS handshake failures -------------------------------------------------------------------


def test_tls_failure_kinds():
    assert failure_kind(Failure(HandshakeTimeout("slow"))) == "timeout"
    assert failure_kind(Failure(ALPNNotNegotiated("no coap"))) == "alpn"
    assert failure_kind(Failure(HandshakeFailed("other"))) == "rejected"
    from OpenSSL import SSL

    alert = SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")])
    assert failure_kind(Failure(alert)) == "peer_alert"
    assert failure_kind(Failure(SSL.Error([("SSL routines", "", "no shared cipher")]))) == (
        "no_shared_cipher"
    )
    assert failure_kind(Failure(SSL.Error([("x", "", "something new")]))) == "tls_error"
    assert failure_kind(Failure(ConnectionError("reset"))) == "closed"


def test_a_tls_client_without_alpn_counts_one_alpn_failure(pki: PKI):  # noqa: F811
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=None))
    pair = connect_pair(cert_server(pki, require_alpn=True), client, port=OTHER_PORT, clock=clock)
    counts = EventCounts()
    pair.server_transport.protocol.factory.counts = counts
    pair.pump.flush()
    assert recorder.lost is not None
    assert counts.tls_failures == {"alpn": 1}


def test_a_stalled_tls_handshake_counts_one_timeout(pki: PKI):  # noqa: F811
    clock = MemoryReactorClock()
    client, _ = raw_tls_client(clock, raw_client_context(pki.ca, alpn=None))
    pair = connect_pair(cert_server(pki), client, clock=clock)
    tls = pair.server_transport.protocol
    counts = tls.factory.counts = EventCounts()
    clock.advance(tls.factory.handshake_timeout + 1)  # the client never speaks
    pair.pump.flush()
    assert counts.tls_failures == {"timeout": 1}


def test_the_tls_factory_takes_the_sites_counts(pki: PKI):  # noqa: F811
    from coaptcp.transport.tls.transport import tls_server_factory

    factory, counts, _, _, _ = counted_factory()
    assert tls_server_factory(factory, cert_server(pki)).counts is counts
    assert tls_server_factory(CoapFactory(None), cert_server(pki)).counts is None


# -- the proxy's upstream side ----------------------------------------------------------------


class Answering:
    """An upstream client whose answers the test fires."""

    def __init__(self) -> None:
        self.answers: list[Deferred[Response]] = []

    def request(self, method, uri, payload=b"", *, options, timeout=None):
        d: Deferred[Response] = Deferred()
        self.answers.append(d)
        return d


def test_upstream_requests_latency_errors_and_limits():
    from coaptcp.core.uri import parse_uri

    clock = Clock()
    client = Answering()
    upstream = Upstream(client, reactor=clock, max_in_flight=3)  # type: ignore[arg-type]
    counts = upstream.counts = EventCounts()
    registry = CollectorRegistry()
    registry.register(ServerCollector(list, counts, upstream=upstream))
    target = parse_uri("coap://192.0.2.9/t")

    def forward() -> Response | Deferred[Response]:
        request = Request(Code.GET, b"t", Options(), b"", peer=IPv4Address("TCP", "192.0.2.1", 1))
        return upstream.forward(request, "coap://192.0.2.9/t", lambda: target, Options())

    pending = [forward() for _ in range(3)]
    refused = forward()
    assert isinstance(refused, Response) and refused.code == Code.SERVICE_UNAVAILABLE
    assert sample(registry, "coap_proxy_requests_in_flight") == 3
    clock.advance(0.2)
    client.answers[0].callback(Response(Code.CONTENT, b"21"))
    client.answers[1].errback(Failure(RequestTimeout("no answer")))
    client.answers[2].errback(Failure(ConnectFailed("coap://192.0.2.9/", "refused")))
    assert [type(p) for p in pending] == [Deferred] * 3
    assert sample(registry, "coap_proxy_upstream_requests_total") == 3
    assert labelled(registry, "coap_proxy_upstream_errors_total", "error") == {
        "bad_gateway": 1, "timeout": 1,
    }
    histogram = "coap_proxy_upstream_duration_seconds"
    assert sample(registry, histogram + "_count") == 1
    assert sample(registry, histogram + "_sum") == 0.2
    assert sample(registry, histogram + "_bucket", le="0.1") == 0
    assert sample(registry, histogram + "_bucket", le="0.25") == 1
    assert sample(registry, "coap_limit_rejections_total", limit="proxy_requests_in_flight") == 1
    assert sample(registry, "coap_proxy_requests_in_flight") == 0


def test_a_proxy_of_twistd_counts_into_the_sites_counts(tmp_path):
    registry, service = metered_service(tmp_path, "--proxy", "127.0.0.0/8")
    counts = service.factory.site.counts
    upstream = service.factory.site.proxy.upstream
    assert upstream.counts is counts and service.factory.gate.counts is counts
    assert sample(registry, "coap_proxy_upstream_requests_total") == 0


# -- the resource directory ---------------------------------------------------------------------


def test_registered_endpoints_and_directory_limits(tmp_path):
    registry, service = metered_service(
        tmp_path, "--rd", "--rd-max-registrations", "1", "--rd-max-payload", "100"
    )
    assert sample(registry, "coap_rd_registered_endpoints") == 0
    h = Harness(factory=service.factory, clock=MemoryReactorClock())
    h.open()
    for token, name, links in (
        (b"r1", "node1", b"</temp>;rt=temperature"),
        (b"r2", "node2", b"</temp>;rt=temperature"),
        (b"r3", "node3", b",".join([b"</t>"] * 30)),  # 149 bytes of links
    ):
        options = Options.build(uri_path=["rd"], uri_query=[f"ep={name}"], content_format=40)
        h.feed(Message(Code.POST, token, options, links))
    assert [m.code for m in h.sent()] == [
        Code.CREATED, Code.SERVICE_UNAVAILABLE, Code.REQUEST_ENTITY_TOO_LARGE,
    ]
    assert sample(registry, "coap_rd_registered_endpoints") == 1
    assert sample(registry, "coap_rd_links") == 1
    assert sample(registry, "coap_limit_rejections_total", limit="rd_registrations") == 1
    assert sample(registry, "coap_limit_rejections_total", limit="rd_payload") == 1


def test_udp_limits_and_notifications_count_into_the_sites_counts():
    from coaptcp.transport.udp.protocol import CoapDatagramProtocol

    counts = EventCounts()
    site = MeteredSite(Resource(), counts=counts)
    udp = CoapDatagramProtocol(site, reactor=MemoryReactorClock())
    assert udp.counts is counts
    for _ in range(3):
        udp.log_limit("max_peers", "request refused with 5.03")
    assert counts.limits == {"max_peers": 3}
    assert CoapDatagramProtocol(Resource(), reactor=MemoryReactorClock()).counts is None


# -- connections by listener ------------------------------------------------------------------


def test_connections_are_counted_by_the_listener_that_accepted_them():
    factory, _, registry, _, _ = counted_factory()
    listeners = [GatedFactory(factory, factory.gate, name) for name in ("tcp:5683", "tcp:5700")]
    protocols = []
    for gated in (listeners[0], listeners[0], listeners[1]):
        protocol = gated.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4000 + len(protocols)))
        protocol.makeConnection(RecordingTransport())
        protocols.append(protocol)
    protocols[0].connectionLost(Failure(ConnectionError("gone")))

    def value(name: str, listener: str) -> float | None:
        return sample(registry, name, transport="tcp", listener=listener)

    assert value("coap_connections_open", "tcp:5683") == 1
    assert value("coap_connections_accepted_total", "tcp:5683") == 2
    assert value("coap_connections_closed_total", "tcp:5683") == 1
    assert value("coap_connections_open", "tcp:5700") == 1
    assert value("coap_connections_closed_total", "tcp:5700") == 0


# -- the metered site's counts, first and later requests ----------------------------------------


def test_metered_site_counts_each_transport_method_and_code_exactly():
    class Echo(Resource):
        def render_PUT(self, request: Request) -> Response:
            return Response(Code.CHANGED, request.payload * 2)

    class Channel:  # a coap+tcp (or, secure, coaps+tcp) connection
        pass

    class WebSocketChannel:
        pass

    root = Resource()
    root.putChild("echo", Echo())
    registry = CollectorRegistry()
    ticks = iter([0.0, 0.0001, 1.0, 1.0002, 2.0, 2.003, 3.0, 3.0001, 4.0, 4.0001])
    site = MeteredSite(root, metrics=RequestMetrics(registry), clock=lambda: next(ticks))

    def put(channel: object, secure: bool, payload: bytes) -> Response:
        request = Request(Code.PUT, b"t", Options.build(uri_path=["echo"]), payload,
                          secure=secure, channel=channel)
        answer = site.handle(request)
        assert isinstance(answer, Response)
        return answer

    put(Channel(), False, b"ab")  # the first of its kind: its entry is made
    put(Channel(), False, b"cde")  # then found
    put(Channel(), False, b"")  # 3 ms: in the 5 ms bucket
    put(Channel(), True, b"x")
    put(WebSocketChannel(), False, b"yz")
    changed = {"method": "PUT", "code": "2.04"}
    assert sample(registry, "coap_requests_total", transport="coap+tcp", **changed) == 3
    assert sample(registry, "coap_requests_total", transport="coaps+tcp", **changed) == 1
    assert sample(registry, "coap_requests_total", transport="coap+ws", **changed) == 1
    assert sample(registry, "coap_request_bytes_total", transport="coap+tcp") == 5
    assert sample(registry, "coap_response_bytes_total", transport="coap+tcp") == 10
    assert sample(registry, "coap_response_bytes_total", transport="coaps+tcp") == 2
    tcp_put = {"transport": "coap+tcp", "method": "PUT"}
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.0005", **tcp_put) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.0025", **tcp_put) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.005", **tcp_put) == 3
    assert sample(registry, "coap_request_duration_seconds_count", **tcp_put) == 3
    total = sample(registry, "coap_request_duration_seconds_sum", **tcp_put)
    assert total is not None and abs(total - 0.0033) < 1e-9


def test_a_connection_counts_the_answers_it_gives_exactly():
    """With --metrics alone, a connection counts its answers itself (ChannelMeter):
    the same counts as MeteredSite.handle's, for the first answer of a kind (whose entry
    is made), the later ones (found), a Deferred answer, and each latency bucket."""

    class Echo(Resource):
        def render_PUT(self, request: Request) -> Response:
            return Response(Code.CHANGED, request.payload * 2)

    late: Deferred[Response] = Deferred()

    class Later(Resource):
        def render_GET(self, request: Request) -> Deferred[Response]:
            return late

    root = Resource()
    root.putChild("echo", Echo())
    root.putChild("later", Later())
    registry = CollectorRegistry()
    # The site's clock, read as each answer starts and ends.
    ticks = iter([0.0, 0.0001, 1.0, 1.0004, 2.0, 2.003, 3.0, 3.7, 5.0, 5.2, 9.0, 9.0])
    site = MeteredSite(root, metrics=RequestMetrics(registry), clock=lambda: next(ticks))
    h = Harness(site)
    h.open()
    assert h.protocol.channel._meter is not None

    def put(token: bytes, payload: bytes) -> Message:
        return Message(Code.PUT, token, Options.build(uri_path=["echo"]), payload)

    h.feed(put(b"a", b"ab"), put(b"b", b"cde"), put(b"c", b""), put(b"d", b"x"))
    h.feed(get(b"e", "later"))
    late.callback(Response(Code.CONTENT, b"done"))
    h.feed(get(b"f", "nothing"))
    answers = {m.token: (m.code, m.payload) for m in h.sent()}
    assert answers[b"b"] == (Code.CHANGED, b"cdecde")
    assert answers[b"e"] == (Code.CONTENT, b"done")
    assert answers[b"f"][0] == Code.NOT_FOUND
    tcp_put = {"transport": "coap+tcp", "method": "PUT"}
    tcp_get = {"transport": "coap+tcp", "method": "GET"}
    assert sample(registry, "coap_requests_total", code="2.04", **tcp_put) == 4
    assert sample(registry, "coap_requests_total", code="2.05", **tcp_get) == 1
    assert sample(registry, "coap_requests_total", code="4.04", **tcp_get) == 1
    assert sample(registry, "coap_request_bytes_total", transport="coap+tcp") == 6
    not_found = len(answers[b"f"][1])
    assert sample(registry, "coap_response_bytes_total", transport="coap+tcp") == (
        12 + 4 + not_found
    )
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.0005", **tcp_put) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.0025", **tcp_put) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.005", **tcp_put) == 3
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.5", **tcp_put) == 3
    assert sample(registry, "coap_request_duration_seconds_bucket", le="1", **tcp_put) == 4
    total = sample(registry, "coap_request_duration_seconds_sum", **tcp_put)
    assert total is not None and abs(total - (0.0001 + 0.0004 + 0.003 + 0.7)) < 1e-9
    get_sum = sample(registry, "coap_request_duration_seconds_sum", **tcp_get)
    assert get_sum is not None and abs(get_sum - 0.2) < 1e-9  # the Deferred: 5.0 to 5.2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.25", **tcp_get) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.1", **tcp_get) == 1


def test_with_an_access_log_the_site_reports_each_answer(tmp_path):
    """--access-log needs one event per request: the site reports them, so the
    connection has no meter of its own."""
    root = Resource()
    registry = CollectorRegistry()
    site = MeteredSite(root, metrics=RequestMetrics(registry),
                       access_log=tap_metrics_logger(tmp_path))
    h = Harness(site)
    h.open()
    assert h.protocol.channel._meter is None
    h.feed(get(b"a", "nothing"))
    assert sample(registry, "coap_requests_total", transport="coap+tcp", method="GET",
                  code="4.04") == 1
    assert len((tmp_path / "access.jsonl").read_text().splitlines()) == 1


def tap_metrics_logger(tmp_path: Path):
    from twisted.logger import Logger

    from coaptcp.tap.metrics import ACCESS_NAMESPACE, AccessLogFile

    log_file = AccessLogFile(str(tmp_path / "access.jsonl"))
    return Logger(namespace=ACCESS_NAMESPACE, observer=log_file)


def test_udp_requests_are_counted_by_the_metered_site():
    """CoAP over UDP has no connection to count for it: MeteredSite.handle counts its
    answers (transport "coap"), the first of a kind and the later ones alike."""
    from coaptcp.core.udp.framing import MessageType, decode_datagram, encode_datagram
    from coaptcp.transport.udp.protocol import CoapDatagramProtocol

    class Echo(Resource):
        def render_POST(self, request: Request) -> Response:
            return Response(Code.CHANGED, request.payload + b"!")

    root = Resource()
    root.putChild("echo", Echo())
    registry = CollectorRegistry()
    ticks = iter([0.0, 0.0001, 1.0, 1.003, 2.0, 2.0002, 3.0, 3.0])
    site = MeteredSite(root, metrics=RequestMetrics(registry), clock=lambda: next(ticks))
    udp = CoapDatagramProtocol(site, reactor=MemoryReactorClock())
    sent: list[bytes] = []

    class Transport:
        def write(self, datagram: bytes, addr: object = None) -> None:
            sent.append(datagram)

        def getHost(self) -> IPv4Address:
            return IPv4Address("UDP", "127.0.0.1", 5683)

    udp.makeConnection(Transport())  # type: ignore[arg-type]
    echo = Options.build(uri_path=["echo"])
    for mid, payload in ((1, b"a"), (2, b"bc"), (3, b"")):
        message = Message(Code.POST, bytes([mid]), echo, payload)
        udp.datagramReceived(encode_datagram(MessageType.CON, mid, message), ("192.0.2.7", 4000))
    nowhere = Message(Code.GET, b"\x09", Options.build(uri_path=["nowhere"]))
    udp.datagramReceived(encode_datagram(MessageType.NON, 4, nowhere), ("192.0.2.7", 4000))
    codes = [decode_datagram(datagram).message.code for datagram in sent]
    assert codes == [Code.CHANGED, Code.CHANGED, Code.CHANGED, Code.NOT_FOUND]
    post = {"transport": "coap", "method": "POST"}
    assert sample(registry, "coap_requests_total", code="2.04", **post) == 3
    assert sample(registry, "coap_requests_total", transport="coap", method="GET",
                  code="4.04") == 1
    assert sample(registry, "coap_request_bytes_total", transport="coap") == 3
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.0005", **post) == 2
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.005", **post) == 3
    total = sample(registry, "coap_request_duration_seconds_sum", **post)
    assert total is not None and abs(total - 0.0033) < 1e-9
