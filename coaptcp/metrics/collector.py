"""The server-wide metrics, read when Prometheus scrapes: connections, observations,
uploads, and the rare events of :mod:`coaptcp.server.counts`.

:class:`ServerCollector` reads the factories' connections (RFC 8323 section 3), the
shared Block1 budget (RFC 7959 section 2.5), the server's
:class:`~coaptcp.server.counts.EventCounts`, and with ``--proxy``/``--reverse`` and
``--rd`` the proxy's upstream side (RFC 7252 section 5.7) and the resource directory
(RFC 9176).  Nothing of
it runs per request; a scrape costs time in proportion to the open connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from coaptcp.metrics.metering import cumulative
from coaptcp.server.counts import UPSTREAM_BUCKETS, EventCounts

__all__ = ["ServerCollector"]


class ServerCollector:
    """A ``prometheus_client`` collector reading the server's state at scrape time.

    :param factories: gives ``(transport, factory)`` for each CoAP factory (``tcp`` for
        the coap+tcp and coaps+tcp listeners, ``ws`` for WebSockets).
    :param counts: the server's rare events (Aborts, limits, TLS failures,
        notifications, upstream requests).
    :param directory: the resource directory (``--rd``), for its registrations.
    :param upstream: the proxy's upstream side (``--proxy``, ``--reverse``).
    """

    def __init__(
        self,
        factories: Callable[[], Iterable[tuple[str, Any]]],
        counts: EventCounts | None = None,
        *,
        directory: Any = None,
        upstream: Any = None,
    ) -> None:
        self.factories = factories
        self.counts = counts
        self.directory = directory
        self.upstream = upstream

    def collect(self) -> Iterator[Any]:
        """The metric families, from the server as it is now."""
        yield from self._connections()
        yield from self._events()
        if self.upstream is not None:
            yield from self._upstream()
        if self.directory is not None:
            yield from self._directory()

    def _budgets(self) -> list[Any]:
        """The Block1 budgets of the factories, each once (listeners share one)."""
        found: dict[int, Any] = {}
        for _, factory in self.factories():
            budget = getattr(factory, "upload_budget", None)
            if budget is not None:
                found.setdefault(id(budget), budget)
        return list(found.values())

    def _connections(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        by_listener = ["transport", "listener"]
        open_ = GaugeMetricFamily(
            "coap_connections_open", "Open CoAP connections, by transport and listener.",
            labels=by_listener,
        )
        accepted = CounterMetricFamily(
            "coap_connections_accepted", "Connections admitted since start.", labels=by_listener
        )
        closed = CounterMetricFamily(
            "coap_connections_closed", "Admitted connections closed since start.",
            labels=by_listener,
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
        for name, factory in self.factories():
            connections = list(factory.connections)
            observing = in_progress = 0
            open_by: dict[str, int] = {}
            for protocol in connections:
                listener = getattr(protocol, "coap_listener", "")
                open_by[listener] = open_by.get(listener, 0) + 1
                channel = getattr(protocol, "channel", None)
                observing += int(getattr(channel, "observation_count", 0))
                blockwise = getattr(channel, "blockwise", None)
                in_progress += int(getattr(blockwise, "uploads_in_progress", 0))
            observations.add_metric([name], observing)
            uploads.add_metric([name], in_progress)
            accepted_by = dict(getattr(factory, "accepted_by_listener", None) or {})
            if not accepted_by and factory.accepted:
                accepted_by[""] = factory.accepted
            for listener in sorted(set(accepted_by) | set(open_by)) or [""]:
                now, total = open_by.get(listener, 0), accepted_by.get(listener, 0)
                open_.add_metric([name, listener], now)
                accepted.add_metric([name, listener], total)
                closed.add_metric([name, listener], total - now)
        held = GaugeMetricFamily(
            "coap_uploads_held_bytes", "Bytes held by partial Block1 uploads (all listeners)."
        )
        held.add_metric([], sum(int(getattr(budget, "held", 0)) for budget in self._budgets()))
        yield from (open_, accepted, closed, held, observations, uploads)

    def _events(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        counts = self.counts if self.counts is not None else EventCounts()
        limits = dict(counts.limits)
        refusals = sum(int(getattr(budget, "refusals", 0)) for budget in self._budgets())
        limits["max_upload_bytes"] = limits.get("max_upload_bytes", 0) + refusals
        refused = getattr(self.directory, "refused", None) or {}
        for limit, count in refused.items():
            name = "rd_" + limit.replace(" ", "_")
            limits[name] = limits.get(name, 0) + count
        for name, text, label, values in (
            ("coap_limit_rejections",
             "Requests and connections refused because a limit was reached, by limit.",
             "limit", limits),
            ("coap_aborts_sent", "Abort signals sent (RFC 8323 section 5.6), by reason.",
             "reason", counts.aborts),
            ("coap_tls_handshake_failures",
             "TLS handshakes of coaps+tcp listeners that failed, by reason.",
             "reason", counts.tls_failures),
            ("coap_dtls_handshake_failures",
             "DTLS handshakes of coaps:// sockets that failed after the cookie, by reason.",
             "reason", counts.dtls_failures),
        ):
            family = CounterMetricFamily(name, text, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family
        notifications = CounterMetricFamily(
            "coap_notifications_sent", "Observe notifications sent (RFC 7641 section 4.2)."
        )
        notifications.add_metric([], counts.notifications)
        yield notifications

    def _upstream(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        counts = self.counts if self.counts is not None else EventCounts()
        sent = CounterMetricFamily(
            "coap_proxy_upstream_requests", "Requests the proxy sent upstream (RFC 7252 5.7)."
        )
        sent.add_metric([], counts.upstream_requests)
        errors = CounterMetricFamily(
            "coap_proxy_upstream_errors",
            "Upstream requests that got no answer (answered 5.02, 5.04 or 5.03), by error.",
            labels=["error"],
        )
        for kind, count in sorted(counts.upstream_errors.items()):
            errors.add_metric([kind], count)
        latency = HistogramMetricFamily(
            "coap_proxy_upstream_duration_seconds",
            "Time from a request sent upstream to its answer.",
        )
        buckets = counts.upstream_buckets
        latency.add_metric([], cumulative(UPSTREAM_BUCKETS, buckets), buckets[-1])
        in_flight = GaugeMetricFamily(
            "coap_proxy_requests_in_flight", "Proxied requests waiting for upstream now."
        )
        in_flight.add_metric([], int(getattr(self.upstream, "in_flight", 0)))
        yield from (sent, errors, latency, in_flight)

    def _directory(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        endpoints = GaugeMetricFamily(
            "coap_rd_registered_endpoints",
            "Endpoints registered in the resource directory (RFC 9176 section 5).",
        )
        endpoints.add_metric([], len(self.directory))
        links = GaugeMetricFamily(
            "coap_rd_links", "Links the resource directory's registrations hold together."
        )
        links.add_metric([], int(self.directory.total_links))
        yield from (endpoints, links)
