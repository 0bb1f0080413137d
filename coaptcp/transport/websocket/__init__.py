"""CoAP over WebSockets (RFC 8323 section 4) with autobahn: ``coap+ws`` and ``coaps+ws``.

The WebSocket client opens ``/.well-known/coap`` offering the subprotocol ``coap``
(section 4.1); every CoAP message then travels alone in one binary WebSocket message, with
the Len nibble set to 0 (section 4.2).  Everything above the framing, the CSM, Ping and Pong,
Release and Abort, is the same sans-I/O core and :class:`~coaptcp.channel.channel.Channel` as over
TCP.  TLS (``coaps+ws``) is the endpoint's concern, as for ``coaps+tcp``.

Server, on a port of its own::

    serverFromString(reactor, "tcp:8080").listen(CoapWebSocketServerFactory(Site(root)))

or sharing a port with a ``twisted.web`` site (see :func:`websocket_resource`)::

    web_root = File("/srv/www")
    websocket_resource(web_root, Site(root))
    serverFromString(reactor, "tcp:8080").listen(twisted.web.server.Site(web_root))

Client::

    protocol = await connect_websocket(reactor, "example.org", 8080)
    response = await protocol.request(Code.GET, Options.build(uri_path=["hello"]))

Choices this package makes (docs/websockets.md has the reasons):

- A handshake that does not offer ``coap`` is refused with HTTP 400; a handshake for
  another path than ``/.well-known/coap`` gets HTTP 404 (when serving standalone); one
  with a ``Sec-WebSocket-Version`` other than 13 gets HTTP 426 with
  ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.4).
- A connection has :attr:`Limits.ws_handshake_timeout` seconds from the moment it is
  accepted to finish its opening handshake (TLS included), however it trickles its
  bytes; then it is dropped.  It counts against the connection limits from accept
  (:mod:`coaptcp.transport.admission`); one over a limit gets HTTP 503 and is closed.
- A frame or a fragmented message that takes longer than :attr:`Limits.frame_timeout`
  from its first byte to its last gets our Abort, then the close (as over TCP).
- A close frame with a code that must not be sent (RFC 6455 section 7.4) is answered
  with a close frame with 1002, and a close reason that is not UTF-8 with 1007; then
  the connection is closed.
- The Host header of the handshake is the default Uri-Host of the peer's requests
  (RFC 8323 section 8.5).
- A text message, a message larger than our Max-Message-Size, or any CoAP message format
  error gets our Abort (section 5.6) followed by a WebSocket close frame: code 1003 for text,
  1009 for too large, 1002 for every other violation.  The close frame follows the Abort
  on the same ordered stream, so the peer reads the Abort first.  Release and a received
  Abort close with 1000.
- WebSocket Ping frames are never sent (section 4.4 says SHOULD NOT, and libcoap closes on
  them); messages are never fragmented (libcoap closes on continuation frames).
- autobahn does the opening and closing handshakes and every unusual frame; the common
  data frames (final, binary, unfragmented) are read and written by
  :mod:`coaptcp.transport.websocket.frames` with the same bytes on the wire, the answers to
  one read in one write (``coap_fast_path = False`` on a protocol leaves everything to
  autobahn).

The modules: :mod:`~coaptcp.transport.websocket.common` (the channel and the mixin both
sides share), :mod:`~coaptcp.transport.websocket.server`,
:mod:`~coaptcp.transport.websocket.resource` (the ``twisted.web`` mount),
:mod:`~coaptcp.transport.websocket.client` (``connect_websocket``),
:mod:`~coaptcp.transport.websocket.frames` (the data frames, sans-I/O) and
:mod:`~coaptcp.transport.websocket.fastpath` (every use of autobahn's internals).
"""

from __future__ import annotations

from coaptcp.transport.websocket.client import (
    CoapWebSocketClientFactory,
    CoapWebSocketClientProtocol,
    WebSocketConnectError,
    connect_websocket,
)
from coaptcp.transport.websocket.resource import CoapWebSocketResource, websocket_resource
from coaptcp.transport.websocket.server import (
    CoapWebSocketServerFactory,
    CoapWebSocketServerProtocol,
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
