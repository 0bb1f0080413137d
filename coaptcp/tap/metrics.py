"""``twistd coaptcp --metrics ENDPOINT`` and ``--access-log FILE``.

:mod:`coaptcp.tap.plugin` takes :class:`MetricsOptions` as a base of its options, builds
its site with :func:`make_site` and calls :func:`add_metrics` from ``makeService``::

    twistd -n coaptcp --metrics tcp:9100
    twistd -n coaptcp --access-log access.jsonl

``--metrics`` serves ``GET /metrics`` (Prometheus text format) on any Twisted server
endpoint description; without it nothing listens.  It needs ``coaptcp[metrics]``
(``prometheus_client``); without the extra it is a usage error.  ``--access-log`` writes
one JSON object per answered request (see :mod:`coaptcp.metrics` and
``docs/operations.md``).  With neither, the plain :class:`~coaptcp.server.resource.Site`
is used and requests pay nothing.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from zope.interface import implementer

from coaptcp.server.resource import ProxyHandler, Resource, Site

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_NAMESPACE",
    "AccessLogFile",
    "MetricsOptions",
    "add_metrics",
    "make_site",
]

#: The ``log_namespace`` of the access-log events.
ACCESS_NAMESPACE = "coaptcp.access"


class MetricsOptions(usage.Options):
    """The ``--metrics`` and ``--access-log`` options (a base of the plugin's options)."""

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics at GET /metrics on a Twisted server endpoint
        description, e.g. tcp:9100:interface=127.0.0.1 (needs coaptcp[metrics])."""
        from coaptcp.metrics import require_prometheus
        from coaptcp.tap.descriptions import check_server_description

        require_prometheus()
        check_server_description(description, "metrics")
        self["metrics"] = description

    def opt_access_log(self, path: str) -> None:
        """Write one JSON object per answered request to FILE (appended)."""
        try:
            with open(path, "a"):
                pass
        except OSError as error:
            raise usage.UsageError(f"--access-log {path}: {error.strerror}")
        self["access-log"] = path


#: The fields of an access-log event, in the order each JSON line gives them.
ACCESS_FIELDS = (
    "peer", "transport", "method", "path", "code", "bytes_in", "bytes_out", "duration", "token"
)


@implementer(ILogObserver)
class AccessLogFile:
    """A log observer writing each access event's :data:`ACCESS_FIELDS` (and its
    ``time``, seconds since the epoch) as one JSON object on a line of ``path``."""

    def __init__(self, path: str) -> None:
        self.stream = open(path, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: dict[str, Any]) -> None:
        record = {"time": round(event.get("log_time", 0.0), 6)}
        for name in ACCESS_FIELDS:
            record[name] = event.get(name)
        self.stream.write(json.dumps(record) + "\n")


def make_site(root: Resource, proxy: ProxyHandler | None, options: Any) -> Site:
    """The server's site: a :class:`~coaptcp.metrics.MeteredSite` when ``--metrics`` or
    ``--access-log`` is given, else a plain :class:`Site`."""
    description = options.get("metrics")
    path = options.get("access-log")
    if description is None and path is None:
        return Site(root, proxy=proxy)
    from coaptcp.metrics import EventCounts, MeteredSite, RequestMetrics

    metrics = counts = None
    if description is not None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        metrics = RequestMetrics(registry)
        counts = EventCounts()
        options["metrics-registry"] = registry
    access = None
    if path is not None:
        access = Logger(namespace=ACCESS_NAMESPACE, observer=AccessLogFile(path))
    return MeteredSite(root, proxy=proxy, metrics=metrics, access_log=access, counts=counts)


def add_metrics(
    service: MultiService,
    options: Any,
    reactor: Any,
    site: Site | None = None,
    *,
    gate: Any = None,
    upstream: Any = None,
    directory: Any = None,
) -> None:
    """Listen for ``GET /metrics`` on ``--metrics``, reading every CoAP factory of
    ``service`` at scrape time.

    ``site``'s :attr:`~coaptcp.server.resource.Site.counts` are given to the parts that
    count rare events without reaching the site themselves: the connection ``gate`` and
    the proxy's ``upstream`` side; the ``directory`` (``--rd``) is read for its
    registrations."""
    description = options.get("metrics")
    if description is None:
        return
    counts = getattr(site, "counts", None)
    for part in (gate, upstream):
        if part is not None:
            part.counts = counts
    from twisted.application.internet import StreamServerEndpointService
    from twisted.internet import endpoints

    from coaptcp.metrics import ServerCollector, metrics_web_site
    from coaptcp.tap.service import CoapService

    def factories() -> list[tuple[str, Any]]:
        found = []
        for child in [service, *service]:
            if isinstance(child, CoapService):
                factory = child.factory
                name = "ws" if "WebSocket" in type(factory).__name__ else "tcp"
                found.append((name, factory))
        return found

    registry = options["metrics-registry"]
    registry.register(
        ServerCollector(factories, counts, directory=directory, upstream=upstream)
    )
    endpoint = endpoints.serverFromString(reactor, description)
    listener = StreamServerEndpointService(endpoint, metrics_web_site(registry))
    listener._raiseSynchronously = True
    listener.setServiceParent(service)
