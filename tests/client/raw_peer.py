"""A connector whose far end is the test itself: it reads every message the client wrote
and writes back whatever frames it likes (odd Observe values, a smaller SZX, 4.08, ...).

No sockets and no sleeps: a StringTransport and the test's MemoryReactorClock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from coaptcp.channel.limits import CLIENT_LIMITS
from coaptcp.client.connectors import ConnectOptions
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.transport.tcp import CoapFactory, CoapProtocol

SERVER = IPv4Address("TCP", "127.0.0.1", 5683)


class RawTransport(StringTransport):
    """A StringTransport that can also be aborted."""

    def abortConnection(self) -> None:
        self.disconnecting = True


def csm(max_message_size: int = 1152, block_wise: bool = False) -> Message:
    items: list[tuple[int, Any]] = [(2, max_message_size)]
    if block_wise:
        items.append((4, None))
    return Message(Code.CSM, options=Options(items))


class RawPeer:
    """``peer.connector`` for a Client; ``peer.received()`` and ``peer.send()`` for the test."""

    def __init__(self, clock: MemoryReactorClock | None = None) -> None:
        self.clock = clock if clock is not None else MemoryReactorClock()
        self.protocol: CoapProtocol | None = None
        self.transport: RawTransport | None = None
        self.connections = 0
        self._decoder = StreamDecoder(1 << 30)

    def connector(
        self, reactor: Any, host: str, port: int, options: ConnectOptions
    ) -> Deferred[CoapProtocol]:
        factory = CoapFactory(None, role=Role.INITIATOR, reactor=self.clock,
                              max_message_size=options.max_message_size,
                              limits=CLIENT_LIMITS)
        protocol = factory.buildProtocol(SERVER)
        transport = RawTransport(peerAddress=SERVER)
        protocol.makeConnection(transport)
        self.protocol, self.transport = protocol, transport
        self._decoder = StreamDecoder(1 << 30)
        self.connections += 1
        return succeed(protocol)

    def received(self) -> list[Message]:
        """The messages the client wrote since the last call."""
        assert self.transport is not None
        data = self.transport.value()
        self.transport.clear()
        self._decoder.feed(data)
        out: list[Message] = []
        while (message := self._decoder.next_message()) is not None:
            out.append(message)
        return out

    def send(self, *messages: Message) -> None:
        """Deliver ``messages`` to the client, then let its timers at zero run."""
        assert self.protocol is not None
        self.protocol.dataReceived(b"".join(encode_frame(m) for m in messages))
        self.clock.advance(0)

    def lose(self) -> None:
        """The connection goes away."""
        assert self.protocol is not None
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(0)
