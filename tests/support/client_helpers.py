"""In-memory connections for the client tests: no sockets, no sleeps, a fake clock.

:class:`MemoryNetwork` is a connector (``network.connector``) that links every new
client connection to a fresh server :class:`CoapProtocol` (the demo site plus
:class:`Held`, whose answers the test releases) through ``twisted.test.iosim``.  Tests
move bytes with :meth:`MemoryNetwork.flush`, freeze a link to play a dead peer, and drive
every timer with one ``MemoryReactorClock``.
"""

from __future__ import annotations

from typing import Any

from sites import Held, Seen
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from coaptcp.channel.limits import Limits
from coaptcp.client.client import Client
from coaptcp.client.connectors import ConnectOptions
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.core.message import Message
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import connected_pair
from coaptcp.transport.tcp import CoapProtocol


class Link:
    """One in-memory connection (see :func:`coaptcp.testing.connected_pair`) that can also
    play a dead peer (:meth:`freeze`)."""

    def __init__(self, network: MemoryNetwork, host: str, port: int,
                 options: ConnectOptions) -> None:
        self.host, self.port, self.options = host, port, options
        # The server keeps idle connections here, so that what the tests see of idle
        # release and keepalive is the Client's own doing.
        self.pair = connected_pair(
            network.site,
            clock=network.clock,
            limits=Limits(idle_timeout=None),
            max_message_size=network.server_max_message_size,
            client_max_message_size=options.max_message_size,
            client_site=options.site,  # what a client serves back (RFC 8323 section 3.3)
            server_address=IPv4Address("TCP", "127.0.0.1", port),
            client_address=IPv4Address("TCP", "127.0.0.1", 40000 + len(network.links)),
            greet=False,
        )
        self.server: CoapProtocol = self.pair.server
        self.client: CoapProtocol = self.pair.client
        self.server_io, self.client_io = self.pair.server_io, self.pair.client_io
        self.pump = self.pair.pump
        self.frozen = False
        self.from_client = b""  # what the client wrote while the link was frozen

    def client_output(self) -> list[Message]:
        """Decode what the client has written and nobody has delivered yet (no pumping)."""
        return self.pair.client_output()

    def flush(self) -> bool:
        if not self.frozen:
            return self.pair.flush()
        # A dead peer: it reads nothing and says nothing; only our own close completes.
        data = self.client_io.getOutBuffer() or b""
        self.from_client += data
        if self.client_io.disconnecting and not self.client_io.disconnected:
            self.client_io.disconnected = True
            self.client.connectionLost(Failure(ConnectionDone()))
            return True
        return bool(data)

    def freeze(self) -> None:
        """From now on the server neither reads nor answers (a dead or stuck peer)."""
        self.frozen = True

    def drop(self) -> None:
        """The network loses the connection: both sides see connectionLost."""
        self.pair.drop()

    @property
    def closed(self) -> bool:
        return self.pair.closed


class MemoryNetwork:
    """A connector whose connections are in-memory links to a demo server.

    :ivar refuse: fail new connection attempts with ConnectionRefusedError.
    :ivar hold: make new attempts wait until :meth:`complete` is called.
    """

    def __init__(self, clock: MemoryReactorClock | None = None) -> None:
        self.clock = clock if clock is not None else MemoryReactorClock()
        root = make_demo_site()
        self.held = Held()
        self.seen = Seen()
        root.putChild("held", self.held)
        root.putChild("seen", self.seen)
        self.root = root
        self.site = Site(root)
        self.links: list[Link] = []
        self.attempts: list[tuple[Any, str, int, ConnectOptions]] = []
        self.refuse = False
        self.hold = False
        self.server_max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self._held: list[tuple[Deferred[CoapProtocol], str, int, ConnectOptions]] = []

    def connector(self, reactor: Any, host: str, port: int,
                  options: ConnectOptions) -> Deferred[CoapProtocol]:
        self.attempts.append((reactor, host, port, options))
        if self.refuse:
            return fail(ConnectionRefusedError("nothing listens there"))
        if self.hold:
            d: Deferred[CoapProtocol] = Deferred()
            self._held.append((d, host, port, options))
            return d
        return succeed(self._link(host, port, options).client)

    def _link(self, host: str, port: int, options: ConnectOptions) -> Link:
        link = Link(self, host, port, options)
        self.links.append(link)
        return link

    def complete(self) -> None:
        """Let the held connection attempts succeed."""
        held, self._held = self._held, []
        for d, host, port, options in held:
            d.callback(self._link(host, port, options).client)

    def fail_held(self, reason: Exception) -> None:
        held, self._held = self._held, []
        for d, *_ in held:
            d.errback(Failure(reason))

    def flush(self) -> None:
        for _ in range(100):
            moved = [link.flush() for link in list(self.links)]
            self.clock.advance(0)
            if not any(moved):
                return
        raise AssertionError("the links never went quiet")


def make_client(network: MemoryNetwork, **kwargs: Any) -> Client:
    """A Client whose coap+tcp (and coap+ws) connections are in-memory links."""
    connectors = {"coap+tcp": network.connector, "coap+ws": network.connector}
    connectors.update(kwargs.pop("connectors", {}))
    return Client(network.clock, connectors=connectors, **kwargs)
