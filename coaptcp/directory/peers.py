"""Where a registrant is: its connection, its address and the base URI made from them
(RFC 9176 sections 3.4 and 5).

Without a ``base`` parameter, the base URI of a registration is "the used protocol's
scheme", ``://``, the requester's source address and its port unless it is the scheme's
default (section 5, in analogy to RFC 7252 section 6.5): ``coap://`` over UDP,
``coap+tcp://`` and ``coaps+tcp://`` over a connection, ``coap+ws://`` and
``coaps+ws://`` over WebSockets.  IPv6 zone identifiers are left out (section 3.4).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, cast

from coaptcp.core.uri import DEFAULT_PORTS
from coaptcp.transport.websocket.common import WebSocketChannel

if TYPE_CHECKING:
    from coaptcp.directory.registration import EndpointConnection
    from coaptcp.server.request import Request

__all__ = ["connection_of", "default_base", "peer_host", "scheme_of"]


def connection_of(request: Request) -> EndpointConnection | None:
    """The connection ``request`` came over (a stream: TCP, TLS, WebSockets), or
    ``None`` for a datagram (UDP) or a request made without one."""
    channel: Any = request.channel
    if channel is not None and callable(getattr(channel, "when_closed", None)) and callable(
        getattr(channel, "request", None)
    ):
        return cast("EndpointConnection", channel)
    return None


def scheme_of(request: Request) -> str:
    """The URI scheme of the transport ``request`` came over (RFC 7252 section 6,
    RFC 8323 section 8)."""
    connection = connection_of(request)
    secure = "coaps" if request.secure else "coap"
    if connection is None:
        return secure
    if isinstance(connection, WebSocketChannel):
        return f"{secure}+ws"
    return f"{secure}+tcp"


def peer_host(request: Request) -> str | None:
    """The requester's IP address as text (without a zone identifier), or ``None`` when
    the peer has no IP address (a UNIX socket)."""
    host = getattr(request.peer, "host", None)
    if not isinstance(host, str) or not host:
        return None
    if ":" not in host:
        return host  # Twisted gives IPv4 peers as dotted quads: nothing to normalise
    host = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # a dual-stack socket's view of an IPv4 peer
    return str(address)


def default_base(request: Request) -> str | None:
    """The base URI a registration without ``base`` gets (RFC 9176 section 5), or
    ``None`` when the requester has no IP address and port to make one from."""
    host = peer_host(request)
    port = getattr(request.peer, "port", None)
    if host is None or not isinstance(port, int):
        return None
    scheme = scheme_of(request)
    authority = f"[{host}]" if ":" in host else host
    if port != DEFAULT_PORTS[scheme]:
        authority += f":{port}"
    return f"{scheme}://{authority}"
