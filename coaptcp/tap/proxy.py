"""The proxy part of ``twistd coaptcp``: ``--proxy NETWORK`` (RFC 7252 section 5.7).

Without ``--proxy`` a request with Proxy-Uri or Proxy-Scheme gets 5.05, as before.  Each
``--proxy`` names a network (``127.0.0.0/8``, ``fd00::/8``, one address) the forward
proxy may send requests to, or ``any``; requests for other destinations get 5.05 with a
diagnostic, and nothing is sent.  The proxy accepts requests on every listener (TCP, TLS,
WebSockets, UDP) and forwards to every scheme the client speaks.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.python import usage

from coaptcp.client import Client
from coaptcp.proxy import ForwardProxy, ProxyPolicy, ResponseCache
from coaptcp.proxy.cache import DEFAULT_CACHE_BYTES
from coaptcp.proxy.forward import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_PER_PEER,
    DEFAULT_UPSTREAM_TIMEOUT,
)

__all__ = ["PROXY_OPT_PARAMETERS", "ProxySettings", "check_proxy_options", "make_proxy"]

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
]
PROXY_OPT_PARAMETERS = [[name, None, str(default), text] for name, default, _, text in
                        _PROXY_OPTIONS]


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


def check_proxy_options(networks: list[str]) -> ProxyPolicy | None:
    """The policy the ``--proxy`` values give, or ``None`` without any; a value that is
    not a network, an address or ``any`` is a usage error."""
    if not networks:
        return None
    try:
        return ProxyPolicy(networks)
    except ValueError as error:
        raise usage.UsageError(f"bad --proxy network: {error}")


def make_proxy(
    policy: ProxyPolicy, settings: ProxySettings | None = None, reactor: Any = None
) -> ForwardProxy:
    """A forward proxy with its own client (one pool of upstream connections) and a cache."""
    settings = settings if settings is not None else ProxySettings({})
    cache = ResponseCache(settings.cache_bytes) if settings.cache_bytes else None
    return ForwardProxy(
        Client(reactor),
        policy,
        reactor=reactor,
        cache=cache,
        timeout=settings.timeout,
        max_in_flight=settings.max_in_flight,
        max_in_flight_per_peer=settings.max_in_flight_per_peer,
    )
