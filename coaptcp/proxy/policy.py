"""Where a forward proxy may send requests: ``--proxy NETWORK`` (RFC 7252 section 5.7).

An open proxy is an attack tool (it reaches what the attacker cannot, and hides where the
attack comes from), so the proxy forwards only to addresses in the networks it was given.
Names are resolved first and the check applies to the address actually used, so a name
that resolves into a forbidden network is refused however it is spelled, and the
connection goes to the checked address (no second resolution an attacker could change).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ANY", "ProxyPolicy"]

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
