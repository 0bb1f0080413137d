"""The CoAP-over-UDP part of ``twistd coaptcp``: ``--udp udp:5683`` (RFC 7252).

Twisted's endpoint descriptions are for streams, so UDP listeners take a description of
their own in the same style: ``udp:PORT`` with optional ``interface=ADDRESS`` (IPv4 or
IPv6, with the colons of an IPv6 address escaped as in every endpoint description:
``udp:5683:interface=\\:\\:1``).  Each listener serves the same resource tree as the TCP,
TLS and WebSocket ones, through a :class:`~coaptcp.transport.udp.CoapDatagramProtocol`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.python import usage

from coaptcp.tap.descriptions import split_description
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.udp import CoapDatagramProtocol

__all__ = ["DEFAULT_UDP_PORT", "UdpListener", "add_udp_listeners", "parse_udp_description"]

#: The default port of coap:// (RFC 7252 section 6.1).
DEFAULT_UDP_PORT = 5683


@dataclass(frozen=True)
class UdpListener:
    """Where one ``--udp`` listener binds: a port and an interface (``""``: every IPv4
    address; ``"::"``: every address, IPv6 and, where the system maps them, IPv4)."""

    port: int
    interface: str = ""


def parse_udp_description(description: str) -> UdpListener:
    """Parse ``udp:PORT[:interface=ADDRESS]``; raises :class:`usage.UsageError`."""
    parts = split_description(description)
    if parts[0] not in ("udp", "udp6") or len(parts) < 2:
        raise usage.UsageError(
            f"bad --udp description {description!r}: expected udp:PORT[:interface=ADDRESS]"
        )
    try:
        port = int(parts[1])
    except ValueError:
        raise usage.UsageError(f"bad --udp description {description!r}: port {parts[1]!r}")
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"bad --udp description {description!r}: port out of range")
    interface = "::" if parts[0] == "udp6" else ""
    for extra in parts[2:]:
        key, _, value = extra.partition("=")
        if key != "interface" or not value:
            raise usage.UsageError(
                f"bad --udp description {description!r}: unknown argument {extra!r}"
            )
        interface = value
    return UdpListener(port, interface)


def add_udp_listeners(
    service: MultiService, descriptions: list[str], factory: CoapFactory, reactor: Any = None
) -> list[CoapDatagramProtocol]:
    """Add one UDP listener per description to ``service``, each serving the site of the
    stream listeners' ``factory`` with its upload bounds and its server-wide budget."""
    protocols = []
    for description in descriptions:
        listener = parse_udp_description(description)
        protocol = CoapDatagramProtocol(
            factory.site,
            reactor=reactor,
            upload_limits=factory.limits,
            upload_budget=factory.upload_budget,
            max_body_size=factory.max_body_size,
        )
        server = UDPServer(
            listener.port, protocol, interface=listener.interface, reactor=reactor
        )
        server.setServiceParent(service)
        protocols.append(protocol)
    return protocols
