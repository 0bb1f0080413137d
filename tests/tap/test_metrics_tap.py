"""``--metrics`` and ``--access-log``: options, usage errors, the collectors and the
access-log lines, in memory (MemoryReactorClock, StringTransport)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from tap_options import parse, usage_error
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest

from coaptcp.core.codes import Code
from coaptcp.metrics import MeteredSite, RequestMetrics, ServerCollector, code_label
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap import metrics as tap_metrics
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, get


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- options and usage errors -----------------------------------------------------------------


def test_off_by_default_plain_site():
    options = parse()
    assert options.get("metrics") is None and options.get("access-log") is None
    site = tap_metrics.make_site(Resource(), None, options)
    assert type(site) is Site


def test_metrics_option_takes_an_endpoint():
    options = parse("--metrics", "tcp:9100:interface=127.0.0.1")
    assert options["metrics"] == "tcp:9100:interface=127.0.0.1"


def test_bad_metrics_endpoint_is_a_usage_error():
    assert "bad --metrics description 'nonsense:1'" in usage_error("--metrics", "nonsense:1")


def test_metrics_without_the_extra_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now fails
    message = usage_error("--metrics", "tcp:9100")
    assert "coaptcp[metrics]" in message


def test_access_log_in_missing_directory_is_a_usage_error(tmp_path):
    message = usage_error("--access-log", str(tmp_path / "no" / "such" / "file"))
    assert message.startswith("--access-log ")


# -- requests, counted and logged -------------------------------------------------------------


def metered_service(tmp_path: Path, *extra: str):
    log = tmp_path / "access.jsonl"
    options = parse("--metrics", "tcp:9100", "--access-log", str(log), *extra)
    clock = MemoryReactorClock()
    service = tap.makeService(options)
    return options, service, clock, log


def test_requests_counted_by_method_and_code(tmp_path):
    options, service, clock, log = metered_service(tmp_path)
    registry = options["metrics-registry"]
    assert isinstance(service.factory.site, MeteredSite)
    h = Harness(factory=service.factory, clock=clock)
    h.open()
    h.feed(get(b"a", "hello"), get(b"b", "hello"), get(b"c", "nonexistent"))
    codes = [m.code for m in h.sent()]
    assert codes == [Code.CONTENT, Code.CONTENT, Code.NOT_FOUND]
    labels = {"transport": "coap+tcp", "method": "GET"}
    assert sample(registry, "coap_requests_total", code="2.05", **labels) == 2
    assert sample(registry, "coap_requests_total", code="4.04", **labels) == 1
    assert sample(registry, "coap_request_duration_seconds_count", **labels) == 3
    assert sample(registry, "coap_response_bytes_total", transport="coap+tcp") == 26
    assert sample(registry, "coap_connections_open", transport="tcp", listener="") == 1
    assert sample(registry, "coap_connections_accepted_total", transport="tcp", listener="") == 1
    assert sample(registry, "coap_connections_closed_total", transport="tcp", listener="") == 0
    h.lose()
    assert sample(registry, "coap_connections_open", transport="tcp", listener="") == 0
    assert sample(registry, "coap_connections_closed_total", transport="tcp", listener="") == 1

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["method"], x["path"], x["code"], x["token"]) for x in lines] == [
        ("GET", "hello", "2.05", "61"),
        ("GET", "hello", "2.05", "62"),
        ("GET", "nonexistent", "4.04", "63"),
    ]
    assert set(lines[0]) == {"time", *tap_metrics.ACCESS_FIELDS}
    assert lines[0]["bytes_out"] == len(b"Hello, world!")


def test_deferred_response_counted_when_it_fires():
    waiting: Deferred[Response] = Deferred()

    class Slow(Resource):
        def render_GET(self, request):
            return waiting

    root = Resource()
    root.putChild("slow", Slow())
    registry = CollectorRegistry()
    ticks = iter([10.0, 10.25])
    site = MeteredSite(root, metrics=RequestMetrics(registry), clock=lambda: next(ticks))
    h = Harness(site)
    h.open()
    h.feed(get(b"s", "slow"))
    labels = {"transport": "coap+tcp", "method": "GET"}
    assert sample(registry, "coap_request_duration_seconds_count", **labels) is None
    waiting.callback(Response(Code.CONTENT, b"late"))
    assert [m.payload for m in h.sent()] == [b"late"]
    assert sample(registry, "coap_requests_total", code="2.05", **labels) == 1
    assert sample(registry, "coap_request_duration_seconds_sum", **labels) == 0.25
    # 0.25 s falls in the 0.25 bucket, not in the one below it.
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.25", **labels) == 1
    assert sample(registry, "coap_request_duration_seconds_bucket", le="0.1", **labels) == 0


def test_collector_reads_factories_at_scrape_time():
    class Factory:
        def __init__(self):
            self.connections = set()
            self.accepted = 0

    factory = Factory()
    registry = CollectorRegistry()
    registry.register(ServerCollector(lambda: [("tcp", factory)]))
    assert sample(registry, "coap_connections_open", transport="tcp", listener="") == 0
    factory.connections |= {1, 2, 3}
    factory.accepted = 5
    assert sample(registry, "coap_connections_open", transport="tcp", listener="") == 3
    assert sample(registry, "coap_connections_accepted_total", transport="tcp", listener="") == 5
    assert sample(registry, "coap_connections_closed_total", transport="tcp", listener="") == 2


def test_code_label():
    assert code_label(Code.CONTENT) == "2.05"
    assert code_label(Code.NOT_FOUND) == "4.04"
    assert code_label(Code.SERVICE_UNAVAILABLE) == "5.03"


def test_metrics_listener_serves_text_format(tmp_path):
    options, service, _, _ = metered_service(tmp_path)
    web = [child for child in service if getattr(child, "endpoint", None) is not None][-1]
    resource = web.factory.resource.children[b"metrics"]
    request = DummyRequest([b"metrics"])
    body = resource.render_GET(request)
    assert b"# TYPE coap_connections_open gauge" in body
    assert body == generate_latest(options["metrics-registry"])


def test_demo_site_unchanged_without_options():
    assert type(tap.makeService(parse()).factory.site) is Site
    assert make_demo_site() is not None


def test_metrics_content_type(tmp_path):
    _, service, _, _ = metered_service(tmp_path)
    web = [child for child in service if getattr(child, "endpoint", None) is not None][-1]
    request = DummyRequest([b"metrics"])
    web.factory.resource.children[b"metrics"].render_GET(request)
    content_type = request.responseHeaders.getRawHeaders(b"content-type")[0]
    assert content_type.startswith(b"text/plain; version=")


def test_observations_and_uploads_read_at_scrape_time(tmp_path):
    from coaptcp.core.blocks import Block
    from coaptcp.core.message import Message
    from coaptcp.core.options import OptionNumber, Options

    options, service, clock, _ = metered_service(tmp_path)
    registry = options["metrics-registry"]
    h = Harness(factory=service.factory, clock=clock)
    h.open()
    assert sample(registry, "coap_observations", transport="tcp") == 0
    h.feed(Message(Code.GET, b"o", Options.build(uri_path=["time"], observe=0)))
    assert h.sent()[0].code == Code.CONTENT
    assert sample(registry, "coap_observations", transport="tcp") == 1
    # The first of two 1024-byte Block1 blocks: held until the second comes.
    first = Options.build(uri_path=["store"]).add(OptionNumber.BLOCK1, Block(0, True, 6).encode())
    h.feed(Message(Code.PUT, b"u", first, b"x" * 1024))
    assert h.sent()[0].code == Code.CONTINUE
    assert sample(registry, "coap_blockwise_uploads_in_progress", transport="tcp") == 1
    assert sample(registry, "coap_uploads_held_bytes") == 1024
    assert sample(registry, "coap_limit_rejections_total", limit="max_upload_bytes") == 0
    h.lose()
    assert sample(registry, "coap_observations", transport="tcp") == 0
    assert sample(registry, "coap_uploads_held_bytes") == 0
