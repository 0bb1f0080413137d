"""A connector whose far end is the test itself: it reads every message the client wrote
and writes back whatever frames it likes (odd Observe values, a smaller SZX, 4.08, ...).

Each connection is a :class:`coaptcp.testing.Harness` in the initiator role: no sockets
and no sleeps, a recording transport and the test's MemoryReactorClock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from coaptcp.channel.limits import CLIENT_LIMITS
from coaptcp.client.client import Client
from coaptcp.client.connectors import ConnectOptions
from coaptcp.core.connection import Role
from coaptcp.core.message import Message
from coaptcp.testing import Harness
from coaptcp.testing import csm as _csm
from coaptcp.transport.tcp import CoapProtocol


def csm(max_message_size: int = 1152, block_wise: bool = False) -> Message:
    """The server's CSM, always with Max-Message-Size (RFC 8323 section 5.3.1)."""
    return _csm(max_message_size, block_wise=block_wise)


class RawPeer:
    """``peer.connector`` for a Client; ``peer.received()`` and ``peer.send()`` for the test."""

    def __init__(self, clock: MemoryReactorClock | None = None) -> None:
        self.clock = clock if clock is not None else MemoryReactorClock()
        self.harness: Harness | None = None
        self.connections = 0

    def make_client(self, **kwargs: Any) -> Client:
        """A Client (on this peer's clock) whose coap+tcp connections come to this peer."""
        return Client(self.clock, connectors={"coap+tcp": self.connector}, **kwargs)

    @property
    def protocol(self) -> CoapProtocol | None:
        return None if self.harness is None else self.harness.protocol

    def connector(
        self, reactor: Any, host: str, port: int, options: ConnectOptions
    ) -> Deferred[CoapProtocol]:
        self.harness = Harness(role=Role.INITIATOR, clock=self.clock,
                               max_message_size=options.max_message_size,
                               limits=CLIENT_LIMITS)
        self.connections += 1
        return succeed(self.harness.protocol)

    def received(self) -> list[Message]:
        """The messages the client wrote since the last call."""
        assert self.harness is not None
        return self.harness.sent()

    def send(self, *messages: Message) -> None:
        """Deliver ``messages`` to the client, then let its timers at zero run."""
        assert self.harness is not None
        self.harness.feed(*messages)

    def lose(self) -> None:
        """The connection goes away."""
        assert self.harness is not None
        self.harness.lose()
        self.clock.advance(0)
