"""The proxy: forwarding requests with Proxy-Uri or Proxy-Scheme to any scheme coaptcp
speaks, restricted to the networks it is given (RFC 7252 section 5.7)."""

from __future__ import annotations

from coaptcp.proxy.cache import ResponseCache
from coaptcp.proxy.forward import ForwardProxy
from coaptcp.proxy.policy import ProxyPolicy

__all__ = ["ForwardProxy", "ProxyPolicy", "ResponseCache"]
