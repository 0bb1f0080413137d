"""The proxy: forwarding requests with Proxy-Uri or Proxy-Scheme to any scheme coaptcp
speaks, restricted to the networks it is given, and reverse-proxying paths of the
resource tree to base URIs (RFC 7252 section 5.7); Observe through either (RFC 7641
section 5)."""

from __future__ import annotations

from coaptcp.proxy.cache import ResponseCache
from coaptcp.proxy.forward import ForwardProxy
from coaptcp.proxy.observe import ObservationTable, ProxiedObservation
from coaptcp.proxy.policy import ProxyPolicy
from coaptcp.proxy.upstream import Upstream

__all__ = [
    "ForwardProxy",
    "ObservationTable",
    "ProxiedObservation",
    "ProxyPolicy",
    "ResponseCache",
    "Upstream",
]
