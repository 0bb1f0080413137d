"""Prometheus metrics and a structured access log of a CoAP server.

``twistd coaptcp --metrics tcp:9100`` serves ``GET /metrics`` in the Prometheus text
format (through ``prometheus_client``, the ``coaptcp[metrics]`` extra); ``--access-log
FILE`` writes one JSON object per request.  Both watch the requests a
:class:`~coaptcp.server.resource.Site` answers (RFC 7252 section 5.8 methods, section
5.9 response codes) through :class:`MeteredSite`, which is used only when one of them is
asked for: a plain ``Site`` has nothing of this on its path.  Connection counts are read
from the factories at scrape time (:class:`ServerCollector`), not counted per request.

``prometheus_client`` is imported by :func:`require_prometheus` and the functions that
need it, never at import time: ``coaptcp`` works without the extra.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from coaptcp.server.request import Request, Response
from coaptcp.server.resource import ProxyHandler, Resource, Site

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "LATENCY_BUCKETS",
    "MeteredSite",
    "RequestMetrics",
    "ServerCollector",
    "code_label",
    "metrics_web_site",
    "require_prometheus",
    "transport_label",
]

#: Bounds in seconds of the request latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_INSTALL_HINT = "--metrics needs prometheus_client: pip install 'coaptcp[metrics]'"

_transport_names: dict[tuple[type, bool], str] = {}


def require_prometheus() -> None:
    """Raise :class:`usage.UsageError` telling to install ``coaptcp[metrics]`` when
    ``prometheus_client`` cannot be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise usage.UsageError(_INSTALL_HINT)


def transport_label(request: Request) -> str:
    """The URI scheme a request came over: ``coap+tcp``, ``coaps+tcp``, ``coap+ws``,
    ``coaps+ws`` (RFC 8323 section 8) or ``coap`` / ``coaps`` (UDP, RFC 7252)."""
    return _transport_name(request.channel.__class__, bool(request.secure))


def _transport_name(channel: type, secure: bool) -> str:
    key = (channel, bool(secure))
    name = _transport_names.get(key)
    if name is None:
        cls = channel.__name__
        if "WebSocket" in cls:
            name = "coaps+ws" if secure else "coap+ws"
        elif channel is type(None) or "Datagram" in cls or "Udp" in cls:
            name = "coaps" if secure else "coap"
        else:
            name = "coaps+tcp" if secure else "coap+tcp"
        _transport_names[key] = name
    return name


def _method_name(code: int) -> str:
    return getattr(code, "name", None) or code_label(code)


def code_label(code: int) -> str:
    """A response code as ``c.dd`` (RFC 7252 section 12.1.2), e.g. ``2.05``."""
    return f"{int(code) >> 5}.{int(code) & 31:02d}"


def _method(request: Request) -> str:
    return _method_name(request.method)


class RequestMetrics:
    """The per-request metrics: ``coap_requests_total{transport,method,code}``,
    ``coap_request_duration_seconds`` (histogram by transport and method) and
    ``coap_request_bytes_total`` / ``coap_response_bytes_total`` (payload bytes, RFC 7252
    section 5.5).

    A request costs a few dict updates (:meth:`record`); the families are made from those
    counts when ``registry`` is scraped (:meth:`collect`), not kept in
    ``prometheus_client`` metric objects with their locks and label look-ups.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        #: Per (channel class, secure, method, response code): the request count, request
        #: and response payload bytes, the sum of durations, then the count of each
        #: latency bucket (not cumulative; +Inf last).  Raw keys: the labels are made
        #: at scrape time, not per request.
        self.entries: dict[tuple[type, bool, int, int], list[float]] = {}
        if registry is not None:
            registry.register(self)

    def record(self, request: Request, response: Response, duration: float) -> None:
        """Count one answered request (a dict look-up and five list updates)."""
        key = (request.channel.__class__, request.secure, request.method, response.code)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = [0.0] * (len(LATENCY_BUCKETS) + 5)
        entry[0] += 1
        entry[1] += len(request.payload)
        entry[2] += len(response.payload)
        entry[3] += duration
        entry[4 + bisect_left(LATENCY_BUCKETS, duration)] += 1

    def _labelled(self) -> Iterator[tuple[str, str, str, list[float]]]:
        for (channel, secure, method, code), entry in list(self.entries.items()):
            yield _transport_name(channel, secure), _method_name(method), code_label(code), entry

    def collect(self) -> Iterator[Any]:
        """The metric families, from the counts as they are now."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests: dict[tuple[str, str, str], float] = {}
        histograms: dict[tuple[str, str], list[float]] = {}
        bytes_in: dict[str, float] = {}
        bytes_out: dict[str, float] = {}
        for transport, method, code, entry in self._labelled():
            key = (transport, method, code)
            requests[key] = requests.get(key, 0) + entry[0]
            bytes_in[transport] = bytes_in.get(transport, 0) + entry[1]
            bytes_out[transport] = bytes_out.get(transport, 0) + entry[2]
            summed = histograms.setdefault((transport, method), [0.0] * (len(entry) - 3))
            summed[-1] += entry[3]
            for index, count in enumerate(entry[4:]):
                summed[index] += count
        family = CounterMetricFamily(
            "coap_requests",
            "Requests answered by the site, by transport, method and response code.",
            labels=["transport", "method", "code"],
        )
        for key, answered in sorted(requests.items()):
            family.add_metric(list(key), answered)
        yield family
        durations = HistogramMetricFamily(
            "coap_request_duration_seconds",
            "Time from a request reaching the site to its response.",
            labels=["transport", "method"],
        )
        bounds = [*(f"{bound:g}" for bound in LATENCY_BUCKETS), "+Inf"]
        for pair, summed in sorted(histograms.items()):
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip(bounds, summed[:-1], strict=True):
                total += count
                cumulative.append((bound, total))
            durations.add_metric(list(pair), cumulative, summed[-1])
        yield durations
        for name, text, values in (
            ("coap_request_bytes", "Request payload bytes, by transport.", bytes_in),
            ("coap_response_bytes", "Response payload bytes, by transport.", bytes_out),
        ):
            counter = CounterMetricFamily(name, text, labels=["transport"])
            for transport, count in sorted(values.items()):
                counter.add_metric([transport], count)
            yield counter


_SITE_HANDLE = Site.handle


class MeteredSite(Site):
    """A :class:`Site` that reports every answered request to ``metrics`` and/or as one
    ``twisted.logger`` event to ``access_log`` (namespace ``coaptcp.access``)."""

    def __init__(
        self,
        root: Resource,
        *,
        proxy: ProxyHandler | None = None,
        metrics: RequestMetrics | None = None,
        access_log: Logger | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(root, proxy=proxy)
        self.metrics = metrics
        self.access_log = access_log
        self.clock = clock

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer as :meth:`Site.handle`, then report the answer."""
        clock = self.clock
        started = clock()
        result = _SITE_HANDLE(self, request)
        metrics = self.metrics
        if result.__class__ is Response and metrics is not None and self.access_log is None:
            # The common case, RequestMetrics.record inline (a call less per request).
            duration = clock() - started
            key = (request.channel.__class__, request.secure, request.method, result.code)
            entry = metrics.entries.get(key)
            if entry is None:
                entry = metrics.entries[key] = [0.0] * (len(LATENCY_BUCKETS) + 5)
            entry[0] += 1
            entry[1] += len(request.payload)
            entry[2] += len(result.payload)
            entry[3] += duration
            entry[4 + bisect_left(LATENCY_BUCKETS, duration)] += 1
            return result
        if isinstance(result, Response):
            self._report(request, result, started)
            return result
        return result.addCallback(self._reported, request, started)

    def _reported(self, response: Response, request: Request, started: float) -> Response:
        self._report(request, response, started)
        return response

    def _report(self, request: Request, response: Response, started: float) -> None:
        duration = self.clock() - started
        if self.metrics is not None:
            self.metrics.record(request, response, duration)
        if self.access_log is not None:
            peer = request.peer
            host = getattr(peer, "host", None)
            port = getattr(peer, "port", None)
            self.access_log.info(
                "{peer} {transport} {method} /{path} {code} {duration:.6f}",
                peer=f"{host}:{port}" if host is not None else str(peer),
                transport=transport_label(request),
                method=_method(request),
                path="/".join(request.path),
                code=code_label(response.code),
                bytes_in=len(request.payload),
                bytes_out=len(response.payload),
                duration=duration,
                token=request.token.hex(),
            )


class ServerCollector:
    """A ``prometheus_client`` collector reading the factories' state at scrape time:
    ``coap_connections_open{transport}`` and ``coap_connections_accepted_total`` /
    ``coap_connections_closed_total`` (RFC 8323 section 3 connections), and the shared
    uploads budget ``coap_uploads_held_bytes`` (RFC 7959 section 2.5)."""

    def __init__(self, factories: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self.factories = factories

    def collect(self) -> Iterator[Any]:
        """The metric families, from the factories as they are now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        open_ = GaugeMetricFamily(
            "coap_connections_open", "Open CoAP connections, by transport.", labels=["transport"]
        )
        accepted = CounterMetricFamily(
            "coap_connections_accepted", "Connections admitted since start.", labels=["transport"]
        )
        closed = CounterMetricFamily(
            "coap_connections_closed", "Admitted connections closed since start.",
            labels=["transport"],
        )
        held = GaugeMetricFamily(
            "coap_uploads_held_bytes", "Bytes held by partial Block1 uploads (all listeners)."
        )
        observations = GaugeMetricFamily(
            "coap_observations", "Observations registered (RFC 7641), by transport.",
            labels=["transport"],
        )
        uploads = GaugeMetricFamily(
            "coap_blockwise_uploads_in_progress",
            "Partial Block1 uploads being received (RFC 7959 section 2.5), by transport.",
            labels=["transport"],
        )
        rejections = CounterMetricFamily(
            "coap_limit_rejections",
            "Requests refused because a server-wide limit was reached, by limit.",
            labels=["limit"],
        )
        budgets: set[int] = set()
        held_bytes = 0
        refused = 0
        for name, factory in self.factories():
            connections = list(factory.connections)
            observing = in_progress = 0
            for protocol in connections:
                channel = getattr(protocol, "channel", None)
                observing += int(getattr(channel, "observation_count", 0))
                blockwise = getattr(channel, "blockwise", None)
                in_progress += int(getattr(blockwise, "uploads_in_progress", 0))
            observations.add_metric([name], observing)
            uploads.add_metric([name], in_progress)
            open_.add_metric([name], len(connections))
            accepted.add_metric([name], factory.accepted)
            closed.add_metric([name], factory.accepted - len(connections))
            budget = getattr(factory, "upload_budget", None)
            if budget is not None and id(budget) not in budgets:
                budgets.add(id(budget))
                held_bytes += int(getattr(budget, "held", 0))
                refused += int(getattr(budget, "refusals", 0))
        held.add_metric([], held_bytes)
        rejections.add_metric(["max_upload_bytes"], refused)
        yield from (open_, accepted, closed, held, observations, uploads, rejections)


def metrics_web_site(registry: CollectorRegistry) -> Any:
    """A ``twisted.web`` site serving ``registry`` at ``/metrics`` in the Prometheus text
    format (``prometheus_client.generate_latest``, rendered in the reactor thread: the
    collectors read state the reactor owns)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from twisted.web.resource import Resource as WebResource
    from twisted.web.server import Site as WebSite

    class MetricsPage(WebResource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            return bytes(generate_latest(registry))

    root = WebResource()
    root.putChild(b"metrics", MetricsPage())
    return WebSite(root)
