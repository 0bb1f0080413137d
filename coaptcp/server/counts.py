"""Counts of a server's rare events, kept where they happen and read at scrape time.

One :class:`EventCounts` is made by ``twistd coaptcp --metrics`` and given to every part
that sees such an event: the site (:attr:`~coaptcp.server.resource.Site.counts`, which
each connection's channel takes when it is made), the connection gate, the TLS layer,
the CoAP-over-UDP socket and the proxy's upstream side.  Each of them holds ``None``
without ``--metrics``: an event then costs the check of that one attribute.  The events
are rare next to requests (an Abort, a limit reached, a failed TLS handshake) or are not
on the request path (a notification, an upstream request of the proxy); none is counted
per request.  :class:`~coaptcp.metrics.collector.ServerCollector` makes the Prometheus
families from these counts when ``/metrics`` is scraped (this module is in the server
layer so that every layer above can name it).

Every label value is one of a fixed set named in code (an Abort's reason, a limit's
name, a TLS failure's kind), never a peer's address or a diagnostic text, so the label
sets stay bounded whatever peers send.  This module imports no ``prometheus_client``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.server.request import Request, Response

__all__ = [
    "BYTES_IN",
    "BYTES_OUT",
    "DURATIONS",
    "FIRST_BUCKET",
    "FIRST_LATENCY_BOUND",
    "LATENCY_BUCKETS",
    "REQUEST_ENTRY_SIZE",
    "UPSTREAM_BUCKETS",
    "AnswerMeter",
    "EventCounts",
    "count_answer",
]

#: Bounds in seconds of the request latency histogram's buckets
#: (``coap_request_duration_seconds``, :class:`~coaptcp.metrics.RequestMetrics`).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The first latency bucket's bound: most requests fall in it, found with one compare.
FIRST_LATENCY_BOUND = LATENCY_BUCKETS[0]
# An entry of answered requests (``RequestMetrics.entries``), by index.  The connections
# that count their own answers (``coaptcp.channel.responder``) use these as literals.
#: Where an entry keeps the request payload bytes (RFC 7252 section 5.5).
BYTES_IN = 0
#: Where an entry keeps the response payload bytes.
BYTES_OUT = 1
#: Where an entry keeps the sum of durations, in seconds.
DURATIONS = 2
#: Where an entry's count per latency bucket starts (not cumulative; +Inf last).
FIRST_BUCKET = 3
#: The length of an entry of answered requests.
REQUEST_ENTRY_SIZE = FIRST_BUCKET + len(LATENCY_BUCKETS) + 1


def count_answer(entry: list[float], request: Request, response: Response, duration: float) -> None:
    """Count in ``entry`` (of :data:`REQUEST_ENTRY_SIZE` numbers) one answer: the payload
    bytes of ``request`` and ``response`` (RFC 7252 section 5.5), ``duration`` (seconds)
    to the sum and to its latency bucket.  (``coaptcp.channel.responder`` has these lines
    inline, a call less per request.)"""
    payload = request.payload
    if payload:
        entry[BYTES_IN] += len(payload)
    entry[BYTES_OUT] += len(response.payload)
    entry[DURATIONS] += duration
    if duration <= FIRST_LATENCY_BOUND:
        entry[FIRST_BUCKET] += 1
    else:
        entry[FIRST_BUCKET + bisect_left(LATENCY_BUCKETS, duration)] += 1


class AnswerMeter(Protocol):
    """How a connection counts the requests it answers (``--metrics``): what
    :meth:`Site.meter_for <coaptcp.server.resource.Site.meter_for>` gives, named here so
    that the channel layer need not import the metrics layer
    (:class:`coaptcp.metrics.ChannelMeter` is the one there is).

    :ivar by_method: entries of :data:`REQUEST_ENTRY_SIZE` numbers, by method, then
        response code (RFC 7252 sections 5.8 and 5.9).
    :ivar clock: read when the site gets a request and when its answer is ready.
    :ivar handle: answers a request without counting it.
    :ivar metrics: counts an answer whose entry is not made yet (``record``).
    """

    by_method: dict[int, dict[int, list[float]]]
    clock: Callable[[], float]
    handle: Callable[[Request], Response | Deferred[Response]]
    metrics: Any

    def reported(self, response: Response, request: Request, started: float) -> Response:
        """Count ``response`` to ``request``, got at ``started``; return it."""


#: Bounds in seconds of the proxy's upstream latency histogram (an upstream request may
#: take up to the upstream timeout, 30 s by default).
UPSTREAM_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EventCounts:
    """The rare events of one server, by kind.

    :ivar aborts: Aborts sent (RFC 8323 section 5.6), by reason: the core's kinds of
        violation (:attr:`~coaptcp.core.errors.RemoteProtocolError.reason`: ``malformed``,
        ``message_too_large``, ``no_csm``, ``bad_csm``, ``bad_signal``, ``protocol``), the
        timeouts (``csm_timeout``, ``frame_timeout``, ``write_timeout``,
        ``keepalive_timeout``), ``websocket``, ``connection_limit``,
        ``response_too_large`` and ``application``.
    :ivar limits: requests or connections refused (5.03, 4.29, 4.13, or a connection
        aborted, answered HTTP 503 or dropped) because a bound was reached, by the
        bound's name (a :class:`~coaptcp.channel.limits.Limits` field, a UDP or proxy
        limit).
    :ivar tls_failures: TLS handshakes of coaps+tcp listeners that failed, by kind
        (:func:`~coaptcp.transport.tls.errors.failure_kind`).
    :ivar dtls_failures: DTLS handshakes of coaps:// sockets (RFC 7252 section 9) that
        failed after the cookie exchange, by kind: ``timeout`` (not finished in time, which
        is also how a wrong PSK ends: DTLS drops what it cannot verify), ``error`` (OpenSSL
        ended it, an alert or a bad message) and ``wrong_name`` (a server certificate not
        for the name asked, when we are the client).
    :ivar notifications: notifications sent (RFC 7641 section 4.2), all transports.
    :ivar upstream_requests: requests the proxy sent upstream (RFC 7252 section 5.7).
    :ivar upstream_errors: upstream requests that gave no answer, by kind (``timeout``,
        ``bad_gateway``, ``refused``, ``overloaded``).
    :ivar upstream_buckets: the upstream latency histogram: a count per bucket of
        :data:`UPSTREAM_BUCKETS` (not cumulative), then the +Inf bucket, then the sum.
    """

    __slots__ = (
        "aborts",
        "dtls_failures",
        "limits",
        "notifications",
        "tls_failures",
        "upstream_buckets",
        "upstream_errors",
        "upstream_requests",
    )

    def __init__(self) -> None:
        self.aborts: dict[str, int] = {}
        self.limits: dict[str, int] = {}
        self.tls_failures: dict[str, int] = {}
        self.dtls_failures: dict[str, int] = {}
        self.notifications = 0
        self.upstream_requests = 0
        self.upstream_errors: dict[str, int] = {}
        self.upstream_buckets: list[float] = [0.0] * (len(UPSTREAM_BUCKETS) + 2)

    def abort_sent(self, reason: str) -> None:
        """Count an Abort we sent, for ``reason``."""
        self.aborts[reason] = self.aborts.get(reason, 0) + 1

    def limit_reached(self, limit: str) -> None:
        """Count a request or connection refused at the bound ``limit``."""
        self.limits[limit] = self.limits.get(limit, 0) + 1

    def tls_failed(self, kind: str) -> None:
        """Count a TLS handshake that failed, of ``kind``."""
        self.tls_failures[kind] = self.tls_failures.get(kind, 0) + 1

    def dtls_failed(self, kind: str) -> None:
        """Count a DTLS handshake that failed, of ``kind``."""
        self.dtls_failures[kind] = self.dtls_failures.get(kind, 0) + 1

    def upstream_answered(self, duration: float) -> None:
        """Count the time of an upstream request that got an answer."""
        buckets = self.upstream_buckets
        buckets[bisect_left(UPSTREAM_BUCKETS, duration)] += 1
        buckets[-1] += duration

    def upstream_failed(self, kind: str) -> None:
        """Count an upstream request that got no answer, of ``kind``."""
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1
