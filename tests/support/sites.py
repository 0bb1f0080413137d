"""Shared helpers for the Twisted glue tests (no sockets, no sleeps, no real clock)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options, PingPongOption
from coaptcp.server.resource import Request, Resource, Response, Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory, CoapProtocol

PEER_ADDRESS = IPv4Address("TCP", "192.0.2.7", 40000)
HOST_ADDRESS = IPv4Address("TCP", "198.51.100.1", 5683)

_NOT_FIRED = object()


def result_of(d: Deferred[Any]) -> list[Any]:
    """Collect what ``d`` fires with (a value or a Failure) into a list."""
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def success(results: list[Any]) -> Any:
    """The single success value collected by :func:`result_of`."""
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert not isinstance(value, Failure), value.getTraceback()
    return value


def failure(results: list[Any], *types: type[BaseException]) -> Failure:
    """The single Failure collected by :func:`result_of`, checked against ``types``."""
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert isinstance(value, Failure), f"expected a failure, got {value!r}"
    if types:
        assert value.check(*types), value.getTraceback()
    return value


def decode_all(data: bytes) -> list[Message]:
    """Decode a whole byte stream of frames; fails if a frame is left incomplete."""
    decoder = StreamDecoder(1 << 30)
    decoder.feed(data)
    out: list[Message] = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    assert decoder.buffered == 0, f"{decoder.buffered} bytes of an incomplete frame"
    return out


def frames(*messages: Message) -> bytes:
    return b"".join(encode_frame(m) for m in messages)


def csm(max_message_size: int | None = None) -> Message:
    items = [] if max_message_size is None else [(2, max_message_size)]
    return Message(Code.CSM, options=Options(items))


def custody_ping(token: bytes) -> Message:
    """A Ping with the Custody option (RFC 8323 section 5.4.1)."""
    return Message(Code.PING, token, Options([(PingPongOption.CUSTODY, None)]))


def get(token: bytes, *path: str, query: tuple[str, ...] = (), extra=()) -> Message:
    options = Options.build(uri_path=path, uri_query=query)
    for number, value in extra:
        options = options.add(number, value)
    return Message(Code.GET, token, options)


class RecordingTransport(StringTransport):
    """A StringTransport that records the order of writes and close calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.calls.append("write")
        super().write(data)

    def writeSequence(self, seq: Any) -> None:
        self.calls.append("write")
        StringTransport.write(self, b"".join(seq))

    def loseConnection(self) -> None:
        self.calls.append("loseConnection")
        super().loseConnection()

    def abortConnection(self) -> None:
        self.calls.append("abortConnection")
        self.aborted = True
        self.disconnected = True
        self.disconnecting = True


class Harness:
    """One :class:`CoapProtocol` on a :class:`RecordingTransport`; we play the peer."""

    def __init__(
        self,
        site: Any = None,
        *,
        role: Role = Role.ACCEPTOR,
        factory: CoapFactory | None = None,
        clock: MemoryReactorClock | None = None,
        transport: RecordingTransport | None = None,
        **factory_kwargs: Any,
    ) -> None:
        self.clock = clock if clock is not None else MemoryReactorClock()
        if factory is None:
            factory = CoapFactory(site, role=role, reactor=self.clock, **factory_kwargs)
        elif clock is None:
            self.clock = factory.reactor
        self.factory = factory
        self.protocol: CoapProtocol = factory.buildProtocol(PEER_ADDRESS)
        if transport is None:
            transport = RecordingTransport(hostAddress=HOST_ADDRESS, peerAddress=PEER_ADDRESS)
        self.transport = transport
        self.protocol.makeConnection(self.transport)
        self._read = 0

    @property
    def channel(self) -> Any:
        return self.protocol.channel

    def feed(self, *messages: Message) -> None:
        self.feed_bytes(frames(*messages))

    def feed_bytes(self, data: bytes, *, turns: bool = True) -> None:
        """Deliver ``data`` as one read; with ``turns``, also run the reactor turns that
        the channel asks for (a read beyond its per-turn budget goes on in later ones)."""
        self.protocol.dataReceived(data)
        if turns:
            self.clock.advance(0)

    def sent(self) -> list[Message]:
        """Messages written since the last call."""
        value = self.transport.value()
        new = value[self._read :]
        self._read = len(value)
        return decode_all(new)

    def all_sent(self) -> list[Message]:
        return decode_all(self.transport.value())

    def open(self, max_message_size: int | None = None) -> None:
        """Send the peer's CSM and drop our own from the unread output."""
        self.feed(csm(max_message_size))
        sent = self.sent()
        assert sent and sent[0].code == Code.CSM

    def lose(self, reason: Failure | None = None) -> None:
        self.protocol.connectionLost(reason or Failure(ConnectionDone()))


class Slow(Resource):
    """GET returns a Deferred the test fires later (``waiting`` holds them in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[Response]] = []

    def render_GET(self, request: Request) -> Deferred[Response]:
        d: Deferred[Response] = Deferred()
        self.waiting.append(d)
        return d


def slow_site() -> tuple[Site, Slow]:
    """The demo site with a :class:`Slow` resource at ``/slow``."""
    root = make_demo_site()
    slow = Slow()
    root.putChild("slow", slow)
    return Site(root), slow
