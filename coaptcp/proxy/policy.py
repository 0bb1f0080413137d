"""Where a forward proxy may send requests: ``--proxy NETWORK`` (RFC 7252 section 5.7).

An open proxy is an attack tool (it reaches what the attacker cannot, and hides where the
attack comes from), so the proxy forwards only to addresses in the networks it was given.
Names are resolved first and the check applies to the address actually used, so a name
that resolves into a forbidden network is refused however it is spelled, and the
connection goes to the checked address (no second resolution an attacker could change).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

__all__ = ["ANY", "ProxyPolicy", "resolve_host"]

#: The ``--proxy`` value that allows every destination.
ANY = "any"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyPolicy:
    """The destinations a forward proxy may reach.

    :param networks: CIDR networks (``"127.0.0.0/8"``, ``"fd00::/8"``), single addresses,
        or :data:`ANY` for no restriction.
    :raises ValueError: for a value that is none of these.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        self.any = False
        self.networks: list[Network] = []
        for text in networks:
            if text.strip().lower() == ANY:
                self.any = True
                continue
            self.networks.append(ipaddress.ip_network(text.strip(), strict=False))

    def allows(self, address: str) -> bool:
        """Whether requests may go to the IP address ``address``."""
        if self.any:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        return any(ip in network for network in self.networks)

    def describe(self) -> str:
        """The allowed destinations, in words, for diagnostics and logs."""
        if self.any:
            return "any destination"
        return ", ".join(str(network) for network in self.networks) or "no destination"


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
