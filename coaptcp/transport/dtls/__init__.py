"""CoAP over DTLS, coaps:// (RFC 7252 section 9): :class:`DtlsDatagramProtocol` keeps one
DTLS 1.2 session per peer under the CoAP-over-UDP message layer of
:mod:`coaptcp.transport.udp`; its contexts come from the TLS settings
(:mod:`coaptcp.transport.dtls.contexts`)."""

from __future__ import annotations

from coaptcp.transport.dtls.limits import DEFAULT_MTU, DtlsLimits
from coaptcp.transport.dtls.protocol import DtlsDatagramProtocol

__all__ = ["DEFAULT_MTU", "DtlsDatagramProtocol", "DtlsLimits"]
