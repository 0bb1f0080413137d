"""Two protocols connected in memory by ``twisted.test.iosim``: :func:`join` for any
pair (TLS or WebSocket wrappers included), :func:`connected_pair` for our own
CoAP-over-TCP client and server (RFC 8323 section 3).

Bytes move only when the test calls :meth:`MemoryLink.flush`, and every timer (the
channel's, the pump's turns) runs on one :class:`MemoryReactorClock`: no sockets, no
threads, no sleeps, the same outcome on every run::

    pair = connected_pair(Site(root))
    results = result_of(pair.client.request(Code.GET, Options.build(uri_path=["hello"])))
    pair.flush()
    assert success(results).payload == b"Hello"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from coaptcp.channel.limits import CLIENT_LIMITS, DEFAULT_LIMITS, Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Role
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site
from coaptcp.testing.frames import decode_all
from coaptcp.testing.transports import HOST_ADDRESS, PEER_ADDRESS
from coaptcp.transport.tcp import CoapFactory, CoapProtocol

__all__ = ["ConnectedPair", "MemoryLink", "connected_pair", "join"]


@dataclass
class MemoryLink:
    """A server protocol and a client protocol on two iosim transports and a pump.

    ``server_io`` and ``client_io`` are the transports each protocol writes to;
    ``pump`` moves what they hold to the other side.
    """

    clock: MemoryReactorClock
    server_io: FakeTransport
    client_io: FakeTransport
    pump: IOPump

    def flush(self) -> bool:
        """Move bytes both ways, running the reactor turns due now in between, until
        neither side has anything left to say; whether anything moved."""
        moved: bool = self.pump.flush()
        return moved

    def client_output(self) -> list[Message]:
        """Decode what the client wrote and the pump has not delivered yet."""
        return decode_all(b"".join(self.client_io.stream))

    def server_output(self) -> list[Message]:
        """Decode what the server wrote and the pump has not delivered yet."""
        return decode_all(b"".join(self.server_io.stream))

    def drop(self) -> None:
        """The network loses the connection: both sides see ``connectionLost`` at once,
        with nothing more delivered (no Release, no close handshake)."""
        self.client_io.disconnected = self.server_io.disconnected = True
        self.client_io.protocol.connectionLost(Failure(ConnectionDone()))
        self.server_io.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        """Whether the client's side of the connection is closed."""
        return bool(self.client_io.disconnected)


def join(
    server: IProtocol,
    client: IProtocol,
    *,
    clock: MemoryReactorClock | None = None,
    server_address: IPv4Address = HOST_ADDRESS,
    client_address: IPv4Address = PEER_ADDRESS,
    greet: bool = True,
) -> MemoryLink:
    """Connect two already built protocols in memory.

    Either may be a wrapper (a TLS or WebSocket protocol around ours).  With ``greet``
    both are connected and their first words (our CSM, RFC 8323 section 3.3) delivered
    before this returns; without, nothing moves until the first
    :meth:`MemoryLink.flush`.
    """
    clock = clock if clock is not None else MemoryReactorClock()
    server_io = FakeTransport(server, True, server_address, client_address)
    client_io = FakeTransport(client, False, client_address, server_address)
    pump = connect(server, server_io, client, client_io, greet=greet, clock=clock)
    return MemoryLink(clock, server_io, client_io, pump)


@dataclass
class ConnectedPair(MemoryLink):
    """Our CoAP-over-TCP client and server joined in memory (see :func:`connected_pair`).

    ``client`` and ``server`` are the two :class:`CoapProtocol` instances: either can
    send requests (RFC 8323 section 3.3), ``client.request(...)`` being the usual.
    """

    server_factory: CoapFactory
    client_factory: CoapFactory
    server: CoapProtocol
    client: CoapProtocol

    def request(
        self, code: Code, *path: str, query: Iterable[str] = (), payload: bytes = b""
    ) -> Deferred[Response]:
        """Send a request for ``path`` (Uri-Path segments) and Uri-Query items from the
        client; its Deferred fires on a :meth:`flush` (see ``coaptcp.testing.result_of``)."""
        options = Options.build(uri_path=path, uri_query=tuple(query))
        return self.client.request(code, options, payload)


def connected_pair(
    site: Site | Resource | None = None,
    *,
    clock: MemoryReactorClock | None = None,
    limits: Limits = DEFAULT_LIMITS,
    client_limits: Limits = CLIENT_LIMITS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    client_max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    client_site: Site | Resource | None = None,
    server_factory: CoapFactory | None = None,
    client_factory: CoapFactory | None = None,
    server_address: IPv4Address = HOST_ADDRESS,
    client_address: IPv4Address = PEER_ADDRESS,
    greet: bool = True,
) -> ConnectedPair:
    """Our client connected to our server serving ``site``, in memory.

    The server's factory gets ``limits`` and ``max_message_size`` (what ``twistd
    coaptcp`` would configure), the client's ``client_limits`` (by default those of
    :class:`coaptcp.Client`: no idle release, no keepalive) and
    ``client_max_message_size``; a ``client_site`` lets the server send requests to the
    client too.  Pass ``server_factory`` or ``client_factory`` to use factories of your
    own; their reactor should be ``clock``.  With ``greet`` (the default) both CSMs have
    been exchanged when this returns (RFC 8323 section 3.3).
    """
    clock = clock if clock is not None else MemoryReactorClock()
    if server_factory is None:
        server_factory = CoapFactory(
            site, reactor=clock, limits=limits, max_message_size=max_message_size
        )
    if client_factory is None:
        client_factory = CoapFactory(client_site, role=Role.INITIATOR, reactor=clock,
                                     limits=client_limits,
                                     max_message_size=client_max_message_size)
    server: Any = server_factory.buildProtocol(client_address)
    client: Any = client_factory.buildProtocol(server_address)
    link = join(server, client, clock=clock, server_address=server_address,
                client_address=client_address, greet=greet)
    return ConnectedPair(
        link.clock, link.server_io, link.client_io, link.pump,
        server_factory, client_factory, server, client,
    )
