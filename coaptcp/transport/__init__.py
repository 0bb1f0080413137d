"""The transports under a :class:`~coaptcp.channel.Channel`: TCP (RFC 8323 section 3),
TLS (section 9) and WebSockets (section 4), each as Twisted protocols, factories and a
``connect_*`` function.
"""

from __future__ import annotations

from coaptcp.transport.tcp import (
    CoapFactory,
    CoapProtocol,
    connect_tcp,
)
from coaptcp.transport.tls import (
    ClientTLSSettings,
    ServerTLSSettings,
    TLSFailure,
    connect_tls,
    listen_tls,
    tls_server_factory,
)
from coaptcp.transport.websocket import (
    CoapWebSocketServerFactory,
    WebSocketConnectError,
    connect_websocket,
    websocket_resource,
)

__all__ = [
    "ClientTLSSettings",
    "CoapFactory",
    "CoapProtocol",
    "CoapWebSocketServerFactory",
    "ServerTLSSettings",
    "TLSFailure",
    "WebSocketConnectError",
    "connect_tcp",
    "connect_tls",
    "connect_websocket",
    "listen_tls",
    "tls_server_factory",
    "websocket_resource",
]
