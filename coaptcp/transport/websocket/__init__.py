"""CoAP over WebSockets, coap+ws and coaps+ws (RFC 8323 section 4), on autobahn.
"""

from __future__ import annotations

from coaptcp.transport.websocket.protocol import (
    CoapWebSocketClientFactory,
    CoapWebSocketClientProtocol,
    CoapWebSocketResource,
    CoapWebSocketServerFactory,
    CoapWebSocketServerProtocol,
    WebSocketConnectError,
    connect_websocket,
    websocket_resource,
)

__all__ = [
    "CoapWebSocketClientFactory",
    "CoapWebSocketClientProtocol",
    "CoapWebSocketResource",
    "CoapWebSocketServerFactory",
    "CoapWebSocketServerProtocol",
    "WebSocketConnectError",
    "connect_websocket",
    "websocket_resource",
]
