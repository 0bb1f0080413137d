"""The proxy part of ``twistd coaptcp``: ``--proxy NETWORK`` (RFC 7252 section 5.7).

Without ``--proxy`` a request with Proxy-Uri or Proxy-Scheme gets 5.05, as before.  Each
``--proxy`` names a network (``127.0.0.0/8``, ``fd00::/8``, one address) the forward
proxy may send requests to, or ``any``; requests for other destinations get 5.05 with a
diagnostic, and nothing is sent.  The proxy accepts requests on every listener (TCP, TLS,
WebSockets, UDP) and forwards to every scheme the client speaks.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from coaptcp.client import Client
from coaptcp.proxy import ForwardProxy, ProxyPolicy, ResponseCache

__all__ = ["check_proxy_options", "make_proxy"]


def check_proxy_options(networks: list[str]) -> ProxyPolicy | None:
    """The policy the ``--proxy`` values give, or ``None`` without any; a value that is
    not a network, an address or ``any`` is a usage error."""
    if not networks:
        return None
    try:
        return ProxyPolicy(networks)
    except ValueError as error:
        raise usage.UsageError(f"bad --proxy network: {error}")


def make_proxy(policy: ProxyPolicy, reactor: Any = None) -> ForwardProxy:
    """A forward proxy with its own client (one pool of upstream connections) and a cache."""
    return ForwardProxy(Client(reactor), policy, reactor=reactor, cache=ResponseCache())
