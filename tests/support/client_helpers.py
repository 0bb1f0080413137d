"""In-memory connections for the client tests: no sockets, no sleeps, a fake clock.

:class:`MemoryNetwork` is a connector (``network.connector``) that links every new
client connection to a fresh server :class:`CoapProtocol` (the demo site plus
:class:`Held`, whose answers the test releases) through ``twisted.test.iosim``.  Tests
move bytes with :meth:`MemoryNetwork.flush`, freeze a link to play a dead peer, and drive
every timer with one ``MemoryReactorClock``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from coaptcp.channel.limits import CLIENT_LIMITS, Limits
from coaptcp.client.client import Client
from coaptcp.client.connectors import ConnectOptions
from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Role
from coaptcp.core.framing import StreamDecoder
from coaptcp.core.message import Message
from coaptcp.server.resource import Request, Resource, Response, Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory, CoapProtocol


class Held(Resource):
    """GET answers only when the test calls :meth:`answer`, with the request's query."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[Request, Deferred[Response]]] = []

    def render_GET(self, request: Request) -> Deferred[Response]:
        d: Deferred[Response] = Deferred()
        self.waiting.append((request, d))
        return d

    def answer(self, index: int) -> None:
        request, d = self.waiting.pop(index)
        d.callback(Response.text("&".join(request.query)))


class Seen(Resource):
    """GET answers at once and records the request's options."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> Response:
        self.requests.append(request)
        return Response.text("seen")

    def render_POST(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(Code.CHANGED, request.payload)


def decode_stream(data: bytes) -> list[Message]:
    decoder = StreamDecoder(1 << 30)
    decoder.feed(data)
    out: list[Message] = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


class Link:
    """One in-memory connection: a server protocol, a client protocol, a pump."""

    def __init__(self, network: MemoryNetwork, host: str, port: int,
                 options: ConnectOptions) -> None:
        self.host, self.port, self.options = host, port, options
        clock = network.clock
        # The server keeps idle connections here, so that what the tests see of idle
        # release and keepalive is the Client's own doing.
        server_factory = CoapFactory(network.site, reactor=clock,
                                     max_message_size=network.server_max_message_size,
                                     limits=Limits(idle_timeout=None))
        client_factory = CoapFactory(None, role=Role.INITIATOR, reactor=clock,
                                     max_message_size=options.max_message_size,
                                     limits=CLIENT_LIMITS)
        address = IPv4Address("TCP", "127.0.0.1", port)
        client_address = IPv4Address("TCP", "127.0.0.1", 40000 + len(network.links))
        self.server: CoapProtocol = server_factory.buildProtocol(client_address)
        self.client: CoapProtocol = client_factory.buildProtocol(address)
        self.server_io = FakeTransport(self.server, True, address, client_address)
        self.client_io = FakeTransport(self.client, False, client_address, address)
        self.pump: IOPump = connect(self.server, self.server_io, self.client, self.client_io,
                                    greet=False, clock=clock)
        self.frozen = False
        self.from_client = b""  # what the client wrote while the link was frozen

    def client_output(self) -> list[Message]:
        """Decode what the client has written and nobody has delivered yet (no pumping)."""
        return decode_stream(b"".join(self.client_io.stream))

    def flush(self) -> bool:
        if not self.frozen:
            return self.pump.flush()
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
        self.client_io.disconnected = self.server_io.disconnected = True
        self.client.connectionLost(Failure(ConnectionDone()))
        self.server.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return bool(self.client_io.disconnected)


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


def result_of(d: Deferred[Any]) -> list[Any]:
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def success(results: list[Any]) -> Any:
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert not isinstance(value, Failure), value.getTraceback()
    return value


def failure(results: list[Any], *types: type[BaseException]) -> Failure:
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert isinstance(value, Failure), f"expected a failure, got {value!r}"
    if types:
        assert value.check(*types), value.getTraceback()
    return value
