"""TCP connections set TCP_NODELAY: a message is written whole, and Nagle's algorithm would
hold the short last segment of a large block for the peer's ACK (docs/protocol.md)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from coaptcp.core.connection import Role
from coaptcp.transport.tcp import CoapFactory


class TcpTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.no_delay: list[bool] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay.append(enabled)

    def abortConnection(self) -> None:
        self.disconnecting = True


def test_both_roles_set_tcp_nodelay() -> None:
    for role in (Role.ACCEPTOR, Role.INITIATOR):
        factory = CoapFactory(None, role=role, reactor=MemoryReactorClock())
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5683))
        transport = TcpTransport()
        protocol.makeConnection(transport)
        assert transport.no_delay == [True]


def test_transports_without_the_option_are_fine() -> None:
    factory = CoapFactory(None, reactor=MemoryReactorClock())
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5683))
    protocol.makeConnection(StringTransport())
    assert protocol.channel is not None
