"""Addresses of CoAP-over-UDP peers: as resources see them (``request.peer``), and from
host names (RFC 7252 section 6.1: a ``coap`` URI names a host to resolve)."""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

__all__ = ["MAX_CACHED_ADDRESSES", "AddressCache", "peer_address", "resolve_host"]

#: Client addresses whose Twisted address object is kept for reuse; beyond this the
#: oldest is dropped.
MAX_CACHED_ADDRESSES = 1024


def peer_address(peer: Hashable) -> IPv4Address | IPv6Address | None:
    """The Twisted address for the ``(host, port)`` a datagram came from (RFC 7252
    section 4: a UDP endpoint is an IP address and a port)."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return None
    host, port = peer[0], peer[1]
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)


class AddressCache:
    """The :func:`peer_address` of recent peers, at most :data:`MAX_CACHED_ADDRESSES`
    (the oldest is dropped first), so a busy client costs no address object per request
    (RFC 7252 section 4: an endpoint is an IP address and a port).  Resources must treat
    ``request.peer`` as read-only: requests from one peer share it."""

    def __init__(self) -> None:
        self._addresses: dict[Hashable, IPv4Address | IPv6Address | None] = {}

    def __len__(self) -> int:
        return len(self._addresses)

    def get(self, peer: Hashable) -> IPv4Address | IPv6Address | None:
        """The address object of ``peer``, made and kept if it is not kept yet."""
        addresses = self._addresses
        try:
            return addresses[peer]
        except KeyError:
            pass
        address = peer_address(peer)
        if len(addresses) >= MAX_CACHED_ADDRESSES:
            del addresses[next(iter(addresses))]
        addresses[peer] = address
        return address


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self) -> None:
        self.found: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        host = getattr(address, "host", None)
        if isinstance(host, str) and host not in self.found:
            self.found.append(host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolve_host(reactor: Any, host: str, port: int = 0) -> Deferred[Sequence[str]]:
    """The IP addresses of ``host`` (itself when it is an address), through the reactor's
    name resolver: a Deferred firing with a possibly empty list."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return succeed([host])
    receiver = _Addresses()
    reactor.nameResolver.resolveHostName(receiver, host, port)
    result: Deferred[Sequence[str]] = receiver.done  # type: ignore[assignment]
    return result
