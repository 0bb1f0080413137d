"""One of our protocols on a recording transport, with the test playing its peer in raw
frames: :class:`Harness`.

The test writes the peer's side by hand (any frame, in any order, malformed if it likes)
with :meth:`Harness.feed` and reads back what the protocol wrote with
:meth:`Harness.sent`.  So it can check the wire as RFC 8323 section 3 describes it: that
the CSM comes first (section 3.3), what a Pong carries (5.4), when Release and Abort are
written (5.5, 5.6).  Timers run on a :class:`MemoryReactorClock`: no sockets, no sleeps.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from coaptcp.channel.channel import Channel
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.message import Message
from coaptcp.server.resource import Resource, Site
from coaptcp.testing.frames import csm, decode_all, frames
from coaptcp.testing.transports import HOST_ADDRESS, PEER_ADDRESS, RecordingTransport
from coaptcp.transport.tcp import CoapFactory, CoapProtocol

__all__ = ["Harness"]


class Harness:
    """One :class:`CoapProtocol`, connected to a :class:`RecordingTransport`; the test is
    the peer.

    :param site: what the protocol serves (a :class:`Site` or its root
        :class:`Resource`; ``None`` answers every request 5.01).
    :param role: ``Role.ACCEPTOR`` (a server: the test is its client) or
        ``Role.INITIATOR`` (a client: the test is its server).
    :param factory: a factory of your own instead of one built from ``site``, ``role``
        and ``factory_kwargs`` (any other :class:`CoapFactory` argument, ``limits=`` for
        one); its reactor is then the clock, unless ``clock`` is given.
    :param clock: the reactor for every timer; by default a new
        :class:`MemoryReactorClock`, advanced only by the test (and by :meth:`feed`,
        which runs the turns due now).
    :param transport: a transport of your own instead of a new recording one.
    """

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        role: Role = Role.ACCEPTOR,
        factory: CoapFactory | None = None,
        clock: MemoryReactorClock | None = None,
        transport: RecordingTransport | None = None,
        **factory_kwargs: Any,
    ) -> None:
        self.clock: Any = clock if clock is not None else MemoryReactorClock()
        if factory is None:
            factory = CoapFactory(site, role=role, reactor=self.clock, **factory_kwargs)
        elif clock is None:
            self.clock = factory.reactor
        self.factory = factory
        protocol = factory.buildProtocol(PEER_ADDRESS)
        assert isinstance(protocol, CoapProtocol), protocol
        self.protocol: CoapProtocol = protocol
        if transport is None:
            transport = RecordingTransport(hostAddress=HOST_ADDRESS, peerAddress=PEER_ADDRESS)
        self.transport: RecordingTransport = transport
        self.protocol.makeConnection(self.transport)
        self._read: int = 0

    @property
    def channel(self) -> Channel:
        """The protocol's :class:`Channel` (the connection's state and its API)."""
        return self.protocol.channel

    def feed(self, *messages: Message) -> None:
        """Deliver ``messages`` from the peer, as one read (see :meth:`feed_bytes`)."""
        self.feed_bytes(frames(*messages))

    def feed_bytes(self, data: bytes, *, turns: bool = True) -> None:
        """Deliver ``data`` as one read; with ``turns``, also run the reactor turns that
        the channel asks for (a read beyond its per-turn budget goes on in later ones)."""
        self.protocol.dataReceived(data)
        if turns:
            self.clock.advance(0)

    def sent(self) -> list[Message]:
        """The messages the protocol wrote since the last call (decoded)."""
        value = self.transport.value()
        new = value[self._read :]
        self._read = len(value)
        return decode_all(new)

    def all_sent(self) -> list[Message]:
        """Every message the protocol wrote since it was connected."""
        return decode_all(self.transport.value())

    def open(self, max_message_size: int | None = None) -> None:
        """Send the peer's CSM (RFC 8323 section 3.3) and take the protocol's own CSM off
        the unread output; ``max_message_size`` goes into the peer's CSM."""
        self.feed(csm(max_message_size))
        sent = self.sent()
        assert sent and sent[0].code == Code.CSM, sent

    def lose(self, reason: Failure | None = None) -> None:
        """The connection is gone (``ConnectionDone`` unless ``reason`` says otherwise)."""
        self.protocol.connectionLost(reason or Failure(ConnectionDone()))
