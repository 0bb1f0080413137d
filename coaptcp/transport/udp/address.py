"""The address of a CoAP-over-UDP peer as resources see it (``request.peer``)."""

from __future__ import annotations

from collections.abc import Hashable

from twisted.internet.address import IPv4Address, IPv6Address

__all__ = ["peer_address"]


def peer_address(peer: Hashable) -> IPv4Address | IPv6Address | None:
    """The Twisted address for the ``(host, port)`` a datagram came from (RFC 7252
    section 4: a UDP endpoint is an IP address and a port)."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return None
    host, port = peer[0], peer[1]
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)
