"""The proxy part of ``twistd coaptcp``: ``--proxy NETWORK`` and ``--reverse PATH=URI``
(RFC 7252 section 5.7).

Without ``--proxy`` a request with Proxy-Uri or Proxy-Scheme gets 5.05, as before.  Each
``--proxy`` names a network (``127.0.0.0/8``, ``fd00::/8``, one address) the forward
proxy may send requests to, or ``any``; requests for other destinations get 5.05 with a
diagnostic, and nothing is sent.  The proxy accepts requests on every listener (TCP, TLS,
WebSockets, UDP) and forwards to every scheme the client speaks.

Each ``--reverse /PATH=URI`` mounts a :class:`~coaptcp.proxy.reverse.ReverseProxy` at
PATH of the resource tree: requests below it go to the base URI.  The forward and the
reverse proxy share one upstream side (client, bounds, cache, observations).
"""

from __future__ import annotations

import math
import os
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from coaptcp.client import Client
from coaptcp.client.connectors import TlsOptions
from coaptcp.client.pool import DEFAULT_MAX_CONNECTIONS
from coaptcp.core.uri import CoapUri, UriError, parse_uri
from coaptcp.proxy import ForwardProxy, ProxyPolicy, ResponseCache, Upstream
from coaptcp.proxy.cache import DEFAULT_CACHE_BYTES
from coaptcp.proxy.observe import DEFAULT_MAX_OBSERVATIONS
from coaptcp.proxy.reverse import ReverseProxy
from coaptcp.proxy.upstream import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_PER_PEER,
    DEFAULT_UPSTREAM_TIMEOUT,
)
from coaptcp.server import Resource
from coaptcp.server.observe import DEFAULT_MAX_OBSERVERS
from coaptcp.transport.tls.psk import check_psk

__all__ = [
    "PROXY_OPT_PARAMETERS",
    "ProxySettings",
    "ReverseMount",
    "check_proxy_only_options",
    "check_proxy_options",
    "check_reverse_options",
    "make_proxy",
    "make_upstream",
    "mount_reverse",
]

#: Where a ``--reverse`` mounts (the path segments) and the base URI it stands for.
ReverseMount = tuple[tuple[str, ...], CoapUri]
_log = Logger()

#: ``twistd coaptcp`` options of the proxy: (option, default, kind, help).
_PROXY_OPTIONS: list[tuple[str, object, type, str]] = [
    ("proxy-timeout", DEFAULT_UPSTREAM_TIMEOUT, float,
     "Seconds an upstream request may take before the answer is 5.04."),
    ("proxy-max-in-flight", DEFAULT_MAX_IN_FLIGHT, int,
     "Upstream requests in flight at once, in total; more get 5.03 with Max-Age."),
    ("proxy-max-in-flight-per-peer", DEFAULT_MAX_IN_FLIGHT_PER_PEER, int,
     "Upstream requests in flight for one downstream address; more get 5.03."),
    ("proxy-cache-bytes", DEFAULT_CACHE_BYTES, int,
     "Bytes of fresh responses the proxy's cache holds (0: no cache)."),
    ("proxy-max-observations", DEFAULT_MAX_OBSERVATIONS, int,
     "Upstream observations the proxy keeps at once; more get 5.03 with Max-Age."),
    ("proxy-max-connections", DEFAULT_MAX_CONNECTIONS, int,
     "Upstream connections held at once (each a descriptor); a new upstream endpoint "
     "beyond gets 5.03 with Max-Age while the least recently used idle one is released."),
    ("proxy-max-observers", DEFAULT_MAX_OBSERVERS, int,
     "Downstream observers sharing one upstream observation; more are answered "
     "without being registered."),
]
PROXY_OPT_PARAMETERS: list[list[Any]] = [
    *([name, None, str(default), text] for name, default, _, text in _PROXY_OPTIONS),
    ["proxy-psk-identity", None, None,
     "PSK identity for coaps:// and coaps+tcp:// upstream servers (with --proxy-psk-key)."],
    ["proxy-psk-key", None, None, "PSK for the upstream servers, as text or hex:HEXDIGITS."],
    ["proxy-cafile", None, None,
     "PEM file of the CAs that issue the upstream servers' certificates (coaps schemes)."],
]


class ProxySettings:
    """The proxy's bounds, from the ``--proxy-*`` options (checked)."""

    def __init__(self, options: dict[str, Any]) -> None:
        values: dict[str, float] = {}
        for name, default, kind, _ in _PROXY_OPTIONS:
            raw = options.get(name, default)
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{name} must be a number, not {raw!r}")
            if not math.isfinite(value) or value < 0 or (name != "proxy-cache-bytes"
                                                          and not value > 0):
                raise usage.UsageError(f"--{name} must be positive, not {raw!r}")
            values[name] = value
        self.timeout = float(values["proxy-timeout"])
        self.max_in_flight = int(values["proxy-max-in-flight"])
        self.max_in_flight_per_peer = int(values["proxy-max-in-flight-per-peer"])
        self.cache_bytes = int(values["proxy-cache-bytes"])
        self.max_observations = int(values["proxy-max-observations"])
        self.max_observers = int(values["proxy-max-observers"])
        self.max_connections = int(values["proxy-max-connections"])
        self.tls = _upstream_tls(options)


def _upstream_tls(options: dict[str, Any]) -> TlsOptions | None:
    """The upstream TLS/DTLS credentials of ``--proxy-psk-*`` and ``--proxy-cafile``."""
    identity, key = options.get("proxy-psk-identity"), options.get("proxy-psk-key")
    cafile = options.get("proxy-cafile")
    if (identity is None) != (key is None):
        raise usage.UsageError("--proxy-psk-identity and --proxy-psk-key go together")
    if identity is None and cafile is None:
        return None
    if cafile is not None and not os.path.isfile(cafile):
        raise usage.UsageError(f"--proxy-cafile {cafile} is not a readable file")
    secret = name = None
    if identity is not None and key is not None:
        try:
            secret = bytes.fromhex(key[4:]) if key.startswith("hex:") else key.encode()
        except ValueError:
            raise usage.UsageError(f"--proxy-psk-key {key!r}: bad hex digits") from None
        name = identity.encode()
        try:
            check_psk(name, secret)  # what OpenSSL takes (RFC 4279 section 5.3)
        except ValueError as error:
            raise usage.UsageError(f"--proxy-psk-identity/--proxy-psk-key: {error}") from None
    try:
        return TlsOptions(cafile=cafile, psk_identity=name, psk_key=secret)
    except ValueError as error:
        raise usage.UsageError(f"upstream TLS: {error}") from None


def check_proxy_only_options(options: dict[str, Any]) -> None:
    """Every ``--proxy-*`` option is for the proxy (its bounds, its own client's
    credentials): without ``--proxy`` or ``--reverse`` nothing would use it, which is a
    usage error rather than a setting silently ignored.  A bound counts as given when it
    is not its default."""
    given = [name for name in ("proxy-psk-identity", "proxy-psk-key", "proxy-cafile")
             if options.get(name) is not None]
    given += [name for name, default, _, _ in _PROXY_OPTIONS
              if options.get(name, str(default)) != str(default)]
    if given and not options.get("proxy") and not options.get("reverse"):
        raise usage.UsageError(f"--{given[0]} is for the proxy: give --proxy NETWORK or "
                               "--reverse /PATH=URI too")


def check_proxy_options(networks: list[str]) -> ProxyPolicy | None:
    """The policy the ``--proxy`` values give, or ``None`` without any; a value that is
    not a network, an address or ``any`` is a usage error."""
    if not networks:
        return None
    try:
        return ProxyPolicy(networks)
    except ValueError as error:
        raise usage.UsageError(f"bad --proxy network: {error}")


def check_reverse_options(specs: list[str]) -> list[ReverseMount]:
    """The mounts the ``--reverse /PATH=URI`` values give; a malformed one, a scheme this
    build cannot reach, or a path given twice is a usage error."""
    mounts: list[ReverseMount] = []
    seen: set[tuple[str, ...]] = set()
    for spec in specs:
        path_text, equals, uri_text = spec.partition("=")
        if not equals or not path_text.startswith("/"):
            raise usage.UsageError(
                f"bad --reverse {spec!r}: write /PATH=URI, e.g. /plant=coap://[fd00::17]/"
            )
        path = tuple(segment for segment in path_text.split("/") if segment)
        if not path:
            raise usage.UsageError(f"bad --reverse {spec!r}: the path must not be empty")
        if path in seen:
            raise usage.UsageError(f"bad --reverse {spec!r}: {path_text} is mounted twice")
        seen.add(path)
        try:
            base = parse_uri(uri_text)
        except UriError as error:
            raise usage.UsageError(f"bad --reverse {spec!r}: {error}")
        mounts.append((path, base))
    return mounts


def make_upstream(settings: ProxySettings | None = None, reactor: Any = None) -> Upstream:
    """The upstream side of the proxies: its own client (one pool of upstream
    connections) and a cache."""
    settings = settings if settings is not None else ProxySettings({})
    cache = ResponseCache(settings.cache_bytes) if settings.cache_bytes else None
    return Upstream(
        Client(reactor, tls=settings.tls, max_connections=settings.max_connections),
        reactor=reactor,
        cache=cache,
        timeout=settings.timeout,
        max_in_flight=settings.max_in_flight,
        max_in_flight_per_peer=settings.max_in_flight_per_peer,
        max_observations=settings.max_observations,
        max_observers=settings.max_observers,
    )


def mount_reverse(root: Resource, mounts: list[ReverseMount], upstream: Upstream) -> None:
    """Put a :class:`~coaptcp.proxy.reverse.ReverseProxy` at each mount of ``root``,
    making the resources on the way where the tree has none."""
    for path, base in mounts:
        parent = root
        for segment in path[:-1]:
            child = parent.children.get(segment)
            if child is None:
                child = Resource()
                parent.putChild(segment, child)
            parent = child
        if path[-1] in parent.children:
            _log.info("--reverse /{path} replaces the resource there", path="/".join(path))
        parent.putChild(path[-1], ReverseProxy(base, upstream))


def make_proxy(
    policy: ProxyPolicy,
    settings: ProxySettings | None = None,
    reactor: Any = None,
    upstream: Upstream | None = None,
) -> ForwardProxy:
    """A forward proxy on ``upstream`` (by default a new one, see :func:`make_upstream`)."""
    upstream = upstream if upstream is not None else make_upstream(settings, reactor)
    client = upstream.client
    if not isinstance(client, Client):
        raise TypeError("the forward proxy needs an upstream side with a coaptcp Client")
    return ForwardProxy(client, policy, upstream=upstream)
