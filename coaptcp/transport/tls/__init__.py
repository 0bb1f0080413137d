"""CoAP over TLS, coaps+tcp (RFC 8323 sections 8.2 and 9): settings, certificate and PSK
contexts (``settings``, ``psk``), the TLS transport under
:class:`~coaptcp.transport.tcp.CoapProtocol` (``transport``), its failures (``errors``), and
``listen_tls``/``connect_tls`` (``connect``).
"""

from __future__ import annotations

from coaptcp.transport.tls.connect import connect_tls, listen_tls
from coaptcp.transport.tls.errors import (
    ALPNNotNegotiated,
    CertificateRejected,
    HandshakeFailed,
    HandshakeTimeout,
    InsecureTLSWarning,
    TLSFailure,
)
from coaptcp.transport.tls.psk import (
    PSKUnavailable,
)
from coaptcp.transport.tls.settings import (
    ClientTLSSettings,
    NoCoapALPN,
    ServerTLSSettings,
    TLSConfigurationError,
)
from coaptcp.transport.tls.transport import tls_client_factory, tls_server_factory

__all__ = [
    "ALPNNotNegotiated",
    "CertificateRejected",
    "ClientTLSSettings",
    "HandshakeFailed",
    "HandshakeTimeout",
    "InsecureTLSWarning",
    "NoCoapALPN",
    "PSKUnavailable",
    "ServerTLSSettings",
    "TLSConfigurationError",
    "TLSFailure",
    "connect_tls",
    "listen_tls",
    "tls_client_factory",
    "tls_server_factory",
]
