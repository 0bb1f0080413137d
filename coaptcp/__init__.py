"""coaptcp: CoAP over TCP, TLS and WebSockets for Twisted (RFC 8323).

The public API, by layer (each name is also importable from its subpackage)::

    from coaptcp import Resource, Response, Site, CoapFactory, Code, Client

- :mod:`coaptcp.core`: the sans-I/O protocol (codes, options, messages, framing), no Twisted.
- :mod:`coaptcp.server`: requests, responses and the resource tree apps subclass.
- :mod:`coaptcp.channel`: one connection driven for Twisted, and its :class:`Limits`.
- :mod:`coaptcp.transport`: TCP, TLS and WebSockets, with ``connect_tcp``, ``connect_tls``
  and ``connect_websocket``.
- :mod:`coaptcp.client`: the :class:`Client` by URI.
- :mod:`coaptcp.tap`, :mod:`coaptcp.workers`, :mod:`coaptcp.cli`: ``twistd coaptcp`` and
  ``coaptcp-client``; :mod:`coaptcp.testing`: helpers for testing apps.

Names follow one rule: snake_case for our own functions, methods and attributes; camelCase
only where a method implements or overrides a Twisted or autobahn interface
(``dataReceived``, ``makeService``, ``onMessage``) or mirrors twisted.web's resource API
(``putChild``, ``getChild``).
"""

from __future__ import annotations

from coaptcp.channel import (
    CLIENT_LIMITS,
    DEFAULT_LIMITS,
    Channel,
    ConnectionClosedError,
    Limits,
    RequestNotSent,
)
from coaptcp.client import (
    Client,
    ClientClosed,
    ClientError,
    ConnectFailed,
    Observation,
    RequestTimeout,
    SchemeNotAvailable,
    TlsOptions,
)
from coaptcp.core import CoapTcpError, Code, Message, OptionNumber, Options
from coaptcp.core.uri import CoapUri, UriError, parse_uri
from coaptcp.core.version import __version__
from coaptcp.server import (
    CoapError,
    ObservableResource,
    Observer,
    Request,
    Resource,
    Response,
    Site,
    TLSInfo,
)
from coaptcp.transport import (
    ClientTLSSettings,
    CoapFactory,
    CoapProtocol,
    CoapWebSocketServerFactory,
    ServerTLSSettings,
    TLSFailure,
    WebSocketConnectError,
    connect_tcp,
    connect_tls,
    connect_websocket,
    listen_tls,
    tls_server_factory,
    websocket_resource,
)

__all__ = [
    "CLIENT_LIMITS",
    "DEFAULT_LIMITS",
    "Channel",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientTLSSettings",
    "CoapError",
    "CoapFactory",
    "CoapProtocol",
    "CoapTcpError",
    "CoapUri",
    "CoapWebSocketServerFactory",
    "Code",
    "ConnectFailed",
    "ConnectionClosedError",
    "Limits",
    "Message",
    "ObservableResource",
    "Observation",
    "Observer",
    "OptionNumber",
    "Options",
    "Request",
    "RequestNotSent",
    "RequestTimeout",
    "Resource",
    "Response",
    "SchemeNotAvailable",
    "ServerTLSSettings",
    "Site",
    "TLSFailure",
    "TLSInfo",
    "TlsOptions",
    "UriError",
    "WebSocketConnectError",
    "__version__",
    "connect_tcp",
    "connect_tls",
    "connect_websocket",
    "listen_tls",
    "parse_uri",
    "tls_server_factory",
    "websocket_resource",
]
