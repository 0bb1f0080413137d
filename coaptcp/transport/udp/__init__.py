"""CoAP over UDP (RFC 7252) for Twisted: :class:`CoapDatagramProtocol` drives the pure
message layer of :mod:`coaptcp.core.udp` on one socket."""

from __future__ import annotations

from coaptcp.transport.udp.protocol import CoapDatagramProtocol, RequestTimedOut

__all__ = ["CoapDatagramProtocol", "RequestTimedOut"]
