"""Prometheus metrics and a structured access log of a CoAP server.

``twistd coaptcp --metrics tcp:9100`` serves ``GET /metrics`` in the Prometheus text
format (through ``prometheus_client``, the ``coaptcp[metrics]`` extra); ``--access-log
FILE`` writes one JSON object per request.  Both watch the requests a
:class:`~coaptcp.server.resource.Site` answers (RFC 7252 section 5.8 methods, section
5.9 response codes) through :class:`MeteredSite`, which is used only when one of them is
asked for: a plain ``Site`` has nothing of this on its path.  With metrics alone, each
connection of RFC 8323 counts the answers it gives itself, through the
:class:`ChannelMeter` the site gives it.  Connection counts are read
from the factories at scrape time (:class:`~coaptcp.metrics.collector.ServerCollector`),
not counted per request.

``prometheus_client`` is imported by :func:`require_prometheus` and the functions that
need it, never at import time: ``coaptcp`` works without the extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from coaptcp.server.counts import (
    BYTES_IN,
    BYTES_OUT,
    DURATIONS,
    FIRST_BUCKET,
    LATENCY_BUCKETS,
    REQUEST_ENTRY_SIZE,
    count_answer,
)
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import ProxyHandler, Resource, Site

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from coaptcp.server.counts import EventCounts

__all__ = [
    "LATENCY_BUCKETS",
    "ChannelMeter",
    "MeteredSite",
    "RequestMetrics",
    "code_label",
    "cumulative",
    "metrics_web_site",
    "require_prometheus",
    "transport_label",
]


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

    A request costs four dict look-ups by raw values and three or four list updates
    (:meth:`record`); the families are made from those counts when ``registry`` is
    scraped (:meth:`collect`), not kept in ``prometheus_client`` metric objects with
    their locks and label look-ups.  The request count is the sum of the buckets.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        #: Per channel class, whether the connection is secure, the method and the
        #: response code (nested dicts: four look-ups of keys that hash in C cost less
        #: than building one key of them), the entry of counts: request and response
        #: payload bytes, the sum of durations, a count per latency bucket (not
        #: cumulative; +Inf last).  Raw keys: the labels are made at scrape time.
        self.entries: dict[type, dict[bool, dict[int, dict[int, list[float]]]]] = {}
        if registry is not None:
            registry.register(self)

    def entry(self, channel: type, secure: bool, method: int, code: int) -> list[float]:
        """The counts of ``method`` answered ``code`` on a transport, made on first use."""
        codes = self.entries.setdefault(channel, {}).setdefault(secure, {}).setdefault(method, {})
        found = codes.get(code)
        if found is None:
            # Ints but the sum of durations: an int add is cheaper than a float one.
            found = codes[code] = [0] * REQUEST_ENTRY_SIZE  # type: ignore[list-item]
            found[DURATIONS] = 0.0
        return found

    def record(self, request: Request, response: Response, duration: float) -> None:
        """Count one answered request."""
        entry = self.entry(
            request.channel.__class__, request.secure, request.method, response.code
        )
        count_answer(entry, request, response, duration)

    def _labelled(self) -> Iterator[tuple[str, str, str, list[float]]]:
        for channel, by_secure in list(self.entries.items()):
            for secure, by_method in list(by_secure.items()):
                transport = _transport_name(channel, bool(secure))
                for method, by_code in list(by_method.items()):
                    name = _method_name(method)
                    for code, entry in list(by_code.items()):
                        yield transport, name, code_label(code), entry

    def collect(self) -> Iterator[Any]:
        """The metric families, from the counts as they are now."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests: dict[tuple[str, str, str], float] = {}
        histograms: dict[tuple[str, str], list[float]] = {}
        bytes_in: dict[str, float] = {}
        bytes_out: dict[str, float] = {}
        for transport, method, code, entry in self._labelled():
            key = (transport, method, code)
            buckets = entry[FIRST_BUCKET:]
            requests[key] = requests.get(key, 0) + sum(buckets)
            bytes_in[transport] = bytes_in.get(transport, 0) + entry[BYTES_IN]
            bytes_out[transport] = bytes_out.get(transport, 0) + entry[BYTES_OUT]
            summed = histograms.setdefault((transport, method), [0.0] * (len(buckets) + 1))
            summed[-1] += entry[DURATIONS]
            for index, count in enumerate(buckets):
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
        for pair, summed in sorted(histograms.items()):
            durations.add_metric(list(pair), cumulative(LATENCY_BUCKETS, summed), summed[-1])
        yield durations
        for name, text, values in (
            ("coap_request_bytes", "Request payload bytes, by transport.", bytes_in),
            ("coap_response_bytes", "Response payload bytes, by transport.", bytes_out),
        ):
            counter = CounterMetricFamily(name, text, labels=["transport"])
            for transport, count in sorted(values.items()):
                counter.add_metric([transport], count)
            yield counter


def cumulative(bounds: Iterable[float], counts: list[float]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets (``le`` and the cumulative count) from a count per
    bucket of ``bounds`` and the +Inf bucket (``counts`` may carry one more item, the sum,
    which is left out)."""
    labels = [*(f"{bound:g}" for bound in bounds), "+Inf"]
    result: list[tuple[str, float]] = []
    total = 0.0
    for bound, count in zip(labels, counts, strict=False):
        total += count
        result.append((bound, total))
    return result


_SITE_HANDLE = Site.handle


class ChannelMeter:
    """What a connection needs to count the requests it answers itself
    (:class:`~coaptcp.channel.Channel`, with ``--metrics`` and no access log): one per
    connection, from :meth:`MeteredSite.meter_for`.

    The counts and durations are :meth:`MeteredSite.handle`'s (a duration runs from the
    site getting the request to its answer, on the site's clock), but counted in the
    channel, which already holds the request and its answer: that spares a wrapper's
    call per request, and the connection's transport and security are looked up once,
    not per request.  An answer given at once then costs two clock reads, two look-ups
    (method, then response code) and the updates of its entry
    (:attr:`RequestMetrics.entries`); one that is a Deferred is counted when it fires
    (:meth:`reported`).

    :ivar by_method: the connection's entries, by method then response code.
    :ivar clock: the site's clock (:attr:`MeteredSite.clock`).
    :ivar handle: the site's :meth:`Site.handle`, which counts nothing.
    :ivar metrics: where the entries are kept.
    """

    __slots__ = ("by_method", "clock", "handle", "metrics")

    def __init__(self, site: MeteredSite, metrics: RequestMetrics, channel: type, secure: bool):
        self.metrics = metrics
        self.clock = site.clock
        self.handle: Callable[[Request], Response | Deferred[Response]] = _SITE_HANDLE.__get__(site)
        self.by_method = metrics.entries.setdefault(channel, {}).setdefault(bool(secure), {})

    def reported(self, response: Response, request: Request, started: float) -> Response:
        """Count ``response``, the answer to ``request`` that the site got at
        ``started`` (by :attr:`clock`), and return it: the callback of an answer that is
        a Deferred."""
        self.metrics.record(request, response, self.clock() - started)
        return response


class MeteredSite(Site):
    """A :class:`Site` that reports every answered request to ``metrics`` and/or as one
    ``twisted.logger`` event to ``access_log`` (namespace ``coaptcp.access``).

    A connection of RFC 8323 counts the requests it answers itself when only ``metrics``
    are kept (:meth:`meter_for`); :meth:`handle` counts those of every other caller (CoAP
    over UDP, and the access log).

    :param counts: where the server's connections count their rare events
        (:attr:`Site.counts`, :mod:`coaptcp.server.counts`).
    """

    def __init__(
        self,
        root: Resource,
        *,
        proxy: ProxyHandler | None = None,
        metrics: RequestMetrics | None = None,
        access_log: Logger | None = None,
        clock: Callable[[], float] = time.perf_counter,
        counts: EventCounts | None = None,
    ) -> None:
        super().__init__(root, proxy=proxy)
        self.metrics = metrics
        self.access_log = access_log
        self.clock = clock
        self.counts = counts

    def meter_for(self, channel: type, secure: bool) -> ChannelMeter | None:
        """The meter of a connection of class ``channel``: ``None`` when the access log
        is written (each request is then reported by :meth:`handle`) or nothing is
        counted."""
        if self.metrics is None or self.access_log is not None:
            return None
        return ChannelMeter(self, self.metrics, channel, secure)

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer as :meth:`Site.handle`, then report the answer."""
        clock = self.clock
        started = clock()
        result = _SITE_HANDLE(self, request)
        if isinstance(result, Response):
            if self.access_log is None and self.metrics is not None:
                # CoAP over UDP, whose requests name no connection: one look-up more
                # than ChannelMeter's (their transport), and no call to _report.
                duration = clock() - started
                try:
                    entry = self.metrics.entries[request.channel.__class__][request.secure][
                        request.method
                    ][result.code]
                except KeyError:  # the first request of its kind
                    self.metrics.record(request, result, duration)
                    return result
                count_answer(entry, request, result, duration)
                return result
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
