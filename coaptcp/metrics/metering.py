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
    channel = request.channel
    key = (type(channel), bool(request.secure))
    name = _transport_names.get(key)
    if name is None:
        cls = type(channel).__name__
        if "WebSocket" in cls:
            name = "coaps+ws" if request.secure else "coap+ws"
        elif channel is None or "Datagram" in cls or "Udp" in cls:
            name = "coaps" if request.secure else "coap"
        else:
            name = "coaps+tcp" if request.secure else "coap+tcp"
        _transport_names[key] = name
    return name


def code_label(code: int) -> str:
    """A response code as ``c.dd`` (RFC 7252 section 12.1.2), e.g. ``2.05``."""
    return f"{int(code) >> 5}.{int(code) & 31:02d}"


def _method(request: Request) -> str:
    code = request.method
    return getattr(code, "name", None) or str(code)


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
        self.requests: dict[tuple[str, str, str], int] = {}
        #: Per (transport, method): the count of each bucket (not cumulative), the
        #: +Inf bucket last, then the sum of durations.
        self.durations: dict[tuple[str, str], list[float]] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        if registry is not None:
            registry.register(self)

    def record(self, request: Request, response: Response, duration: float) -> None:
        """Count one answered request."""
        transport = transport_label(request)
        method = _method(request)
        key = (transport, method, code_label(response.code))
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        buckets = self.durations.get((transport, method))
        if buckets is None:
            buckets = self.durations[(transport, method)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        buckets[bisect_left(LATENCY_BUCKETS, duration)] += 1
        buckets[-1] += duration
        self.bytes_in[transport] = self.bytes_in.get(transport, 0) + len(request.payload)
        self.bytes_out[transport] = self.bytes_out.get(transport, 0) + len(response.payload)

    def collect(self) -> Iterator[Any]:
        """The metric families, from the counts as they are now."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "coap_requests",
            "Requests answered by the site, by transport, method and response code.",
            labels=["transport", "method", "code"],
        )
        for key, answered in sorted(self.requests.items()):
            requests.add_metric(list(key), answered)
        durations = HistogramMetricFamily(
            "coap_request_duration_seconds",
            "Time from a request reaching the site to its response.",
            labels=["transport", "method"],
        )
        bounds = [*(f"{bound:g}" for bound in LATENCY_BUCKETS), "+Inf"]
        for pair, buckets in sorted(self.durations.items()):
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip(bounds, buckets[:-1], strict=True):
                total += count
                cumulative.append((bound, total))
            durations.add_metric(list(pair), cumulative, buckets[-1])
        bytes_in = CounterMetricFamily(
            "coap_request_bytes", "Request payload bytes, by transport.", labels=["transport"]
        )
        for transport, count in sorted(self.bytes_in.items()):
            bytes_in.add_metric([transport], count)
        bytes_out = CounterMetricFamily(
            "coap_response_bytes", "Response payload bytes, by transport.", labels=["transport"]
        )
        for transport, count in sorted(self.bytes_out.items()):
            bytes_out.add_metric([transport], count)
        yield from (requests, durations, bytes_in, bytes_out)


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
        started = self.clock()
        result = super().handle(request)
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
        budgets: set[int] = set()
        held_bytes = 0
        for name, factory in self.factories():
            connections = list(factory.connections)
            open_.add_metric([name], len(connections))
            accepted.add_metric([name], factory.accepted)
            closed.add_metric([name], factory.accepted - len(connections))
            budget = getattr(factory, "upload_budget", None)
            if budget is not None and id(budget) not in budgets:
                budgets.add(id(budget))
                held_bytes += int(getattr(budget, "held", 0))
        held.add_metric([], held_bytes)
        yield from (open_, accepted, closed, held)


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
