"""Prometheus metrics and a structured access log of a CoAP server.

``twistd coaptcp --metrics ENDPOINT`` serves ``GET /metrics`` in the Prometheus text format
(``prometheus_client``, the ``coaptcp[metrics]`` extra); ``--access-log FILE`` writes one
JSON object per answered request (RFC 7252 section 5.8 methods, section 5.9 codes).  See
:mod:`coaptcp.metrics.metering` (per request), :mod:`coaptcp.server.counts` (rare
events, counted where they happen), :mod:`coaptcp.metrics.collector` (read at scrape time)
and :mod:`coaptcp.tap.metrics`.
"""

from coaptcp.metrics.collector import ServerCollector
from coaptcp.metrics.metering import (
    LATENCY_BUCKETS,
    ChannelMeter,
    MeteredSite,
    RequestMetrics,
    code_label,
    metrics_web_site,
    require_prometheus,
    transport_label,
)
from coaptcp.server.counts import EventCounts

__all__ = [
    "LATENCY_BUCKETS",
    "ChannelMeter",
    "EventCounts",
    "MeteredSite",
    "RequestMetrics",
    "ServerCollector",
    "code_label",
    "metrics_web_site",
    "require_prometheus",
    "transport_label",
]
