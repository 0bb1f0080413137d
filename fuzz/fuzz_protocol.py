"""Fuzz target: a whole server connection with the demo site, in memory.

The first byte picks the transport and the server's configuration:

* TCP: a :class:`~coaptcp.transport.tcp.CoapProtocol` from a
:class:`~coaptcp.transport.tcp.CoapFactory`
  on a ``StringTransport`` (flow control included: the protocol is the transport's producer);
* WebSocket: a :class:`~coaptcp.transport.websocket.common.WebSocketChannel` over a
WebSocket-framed
  :class:`~coaptcp.core.connection.Connection`, writing one frame per message;

with the demo site (resource dispatch, ``/.well-known/core``, block-wise uploads to
``/store`` and downloads of ``/big`` and ``/large``, observation of ``/time``) and
``/slow`` (answers late, observable: requests in progress, 4.29, deferred notifications) on a
``MemoryReactorClock``, default or tight limits, strict or lenient CSM, and a choice of
Max-Message-Size.  The rest is a sequence of operations: bytes from the peer (raw or built
from a structured description), the clock moving on, the transport pausing and resuming
us, requests, observations (client side), Pings, Release and Abort from our side, the
connection being lost.

Invariants checked for every input:

* No exception escapes the protocol (``dataReceived``, timers, our API calls return
  Deferreds) and nothing is logged at error or critical level (the Site turns resource
  exceptions into 5.00 *and logs them*: a logged failure counts as a crash).
* Everything written is well-formed frames, our CSM first; nothing is written after an
  Abort, and the transport is being closed once one is written; no request after our
  Release.
* Deferreds we hold fail only with the documented errors (closed, not sent, timeout).
* When the connection is gone and the clock has moved on: no timer is left, the factory
  has forgotten the connection, no observation is left on ``/time``.

Run: ``python fuzz/fuzz_protocol.py`` (see fuzz/README.md).
"""

from __future__ import annotations

import sys
from typing import Any

from fuzzlib import LogWatch, Reader, build_message, check, fuzz_main, instrumented
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

with instrumented(__name__):
    from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
    from coaptcp.channel.limits import Limits
    from coaptcp.core.codes import Code
    from coaptcp.core.connection import Connection, Role
    from coaptcp.core.errors import MessageFormatError
    from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
    from coaptcp.core.message import Message
    from coaptcp.core.options import Options
    from coaptcp.server.observe import ObservableResource
    from coaptcp.server.resource import CoapError, Request, Resource, Response, Site
    from coaptcp.tap.demo import BigResource, make_demo_site
    from coaptcp.transport.tcp import CoapFactory, CoapProtocol
    from coaptcp.transport.websocket.common import WebSocketChannel

CORPUS = "protocol"

PEER = IPv4Address("TCP", "127.0.0.1", 40123)
HOST = IPv4Address("TCP", "127.0.0.1", 5683)

#: The demo's 1 MiB body, built once per process rather than once per input.
_BIG_BODY = BigResource().body

LIMITS = (
    Limits(),
    # Tight: every timer short, one request in progress, keepalive on.
    Limits(
        csm_timeout=2.0,
        frame_timeout=2.0,
        idle_timeout=5.0,
        keepalive_interval=3.0,
        pong_timeout=1.0,
        max_inbound_requests=1,
        max_outbound_requests=2,
    ),
    Limits(csm_timeout=None, idle_timeout=None, keepalive_interval=None),
    # A server that is full: the connection is refused (aborted right after our CSM).
    Limits(max_connections_per_address=0),
)
MAX_MESSAGE_SIZES = (66048, 1152, 64, 1 << 20)
CLOCK_STEPS = (0.0, 0.5, 1.0, 1.0, 2.5, 5.0, 10.0, 61.0, 301.0)

OP_RAW = 0
OP_MESSAGE = 1
OP_MESSAGE2 = 2  # structured messages are the most useful op: twice as likely
OP_CLOCK = 3
OP_PAUSE = 4
OP_RESUME = 5
OP_REQUEST = 6
OP_PING = 7
OP_RELEASE = 8
OP_ABORT = 9
OP_CLOSED = 10  # the transport finished closing (if we asked it to) or was lost
OP_VIOLATION = 11  # WebSocket: a text message (close code 1003)
OP_OBSERVE = 12  # we observe a resource of the peer's (the client side of RFC 7641)
OP_CANCEL = 13  # we deregister the oldest observation we hold
OP_COUNT = 14

_EXPECTED_FAILURES = (ConnectionClosedError, RequestNotSent, TimeoutError, CancelledError)


class SlowResource(ObservableResource):
    """``/slow``: answers after a delay on the fuzzer's clock (the demo site answers at
    once, which would leave requests in progress, 4.29, custody Pongs and deferred
    notifications unexercised).  GET: 2.05 after 1 s; PUT: 2.04 at once and a
    notification to every observer (rendered late); POST: 4.00 after 0.5 s; DELETE: never
    answers."""

    max_age = 5

    def __init__(self, clock: MemoryReactorClock) -> None:
        super().__init__()
        self.clock = clock
        self.value = b"slow"

    def render_GET(self, request: Request) -> Deferred[Response]:
        return deferLater(self.clock, 1.0, lambda: Response(Code.CONTENT, self.value))

    def render_PUT(self, request: Request) -> Response:
        self.value = request.payload
        self.notify()
        return Response(Code.CHANGED)

    def render_POST(self, request: Request) -> Deferred[Response]:
        def refuse() -> Response:
            raise CoapError(Code.BAD_REQUEST, "slow refusal")

        return deferLater(self.clock, 0.5, refuse)

    def render_DELETE(self, request: Request) -> Deferred[Response]:
        return Deferred()  # a render that never finishes: Release and idle must cope


def _site(clock: MemoryReactorClock) -> Site:
    root: Resource = make_demo_site(clock)
    big = root.children["big"]
    big.__dict__["body"] = _BIG_BODY  # fill the cached_property: same bytes, no rebuild
    root.putChild("slow", SlowResource(clock))
    return Site(root)


class Server:
    """One server connection (TCP or WebSocket) and the record of what it wrote."""

    def __init__(self, config: int) -> None:
        self.clock = MemoryReactorClock()
        self.site = _site(self.clock)
        self.websocket = bool(config & 1)
        limits = LIMITS[(config >> 1) % len(LIMITS)]
        require_csm = not config & 8
        max_message_size = MAX_MESSAGE_SIZES[(config >> 4) % len(MAX_MESSAGE_SIZES)]
        self.decoder = StreamDecoder(1 << 40)
        self.frames: list[Message] = []
        self.abort_written = False
        self.release_written = False
        self.close_requested = False
        self.dropped = False
        self.lost = False
        self.failures: list[Failure] = []
        self.observations: list[Any] = []
        self.ended: list[object] = []
        self.factory: CoapFactory | None = None
        self.protocol: CoapProtocol | None = None
        self.transport: StringTransport | None = None
        if self.websocket:
            connection = Connection(
                Role.ACCEPTOR,
                max_message_size=max_message_size,
                block_wise_transfer=True,
                require_csm=require_csm,
                websocket=True,
            )
            self.channel = WebSocketChannel(
                connection,
                write=self._write_ws,
                close=self._close_ws,
                abort=self._abort_ws,
                reactor=self.clock,
                site=self.site,
                peer=PEER,
                default_host="127.0.0.1",
                limits=limits,
            )
            self.channel.start()
        else:
            self.factory = CoapFactory(
                self.site,
                max_message_size=max_message_size,
                require_csm=require_csm,
                reactor=self.clock,
                limits=limits,
            )
            protocol = self.factory.buildProtocol(PEER)
            assert isinstance(protocol, CoapProtocol)
            self.protocol = protocol
            self.transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
            self.transport.abortConnection = self._abort_tcp  # type: ignore[method-assign]
            protocol.makeConnection(self.transport)
            self.channel = protocol.channel
        # Our request tokens start at a random number; start them at 1 so that an input
        # can answer our requests (and a crash reproduces).
        self.channel._next_token = 0
        self.encode = encode_ws_frame if self.websocket else encode_frame
        self.check_output()

    # -- the transport's side -------------------------------------------------------------

    def _write_ws(self, frames: list[bytes]) -> None:
        check(not self.lost, "the channel wrote after the connection was lost")
        for frame in frames:
            try:
                message = decode_ws_frame(frame, 1 << 40)
            except MessageFormatError as error:
                raise AssertionError(f"we wrote a malformed WebSocket message {frame!r}: {error}")
            self._written(message)

    def _close_ws(self) -> None:
        self.close_requested = True

    def _abort_ws(self) -> None:
        self.dropped = True

    def _abort_tcp(self) -> None:
        self.dropped = True

    def check_output(self) -> None:
        """Decode what the TCP transport holds (WebSocket frames are checked as written)."""
        if self.transport is None:
            return
        data = self.transport.value()
        self.transport.clear()
        if self.transport.disconnecting:
            self.close_requested = True
        self.decoder.feed(data)
        while True:
            try:
                message = self.decoder.next_message()
            except MessageFormatError as error:
                raise AssertionError(f"we wrote a malformed frame: {error}")
            if message is None:
                break
            self._written(message)
        if self.lost:
            check(self.decoder.buffered == 0, "an incomplete frame written before the close")

    def _written(self, message: Message) -> None:
        check(not self.abort_written, lambda: f"{message!r} written after our Abort")
        if not self.frames:
            check(message.code == Code.CSM, lambda: f"first frame written is {message!r}")
        if message.code == Code.ABORT:
            self.abort_written = True
            check(message.payload, "our Abort carries no diagnostic")
            message.payload.decode("utf-8")
        elif message.code == Code.RELEASE:
            self.release_written = True
        elif message.code.is_request:
            check(not self.release_written, "a request written after our Release")
        self.frames.append(message)

    # -- operations -----------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.lost:
            return
        if self.protocol is not None:
            self.protocol.dataReceived(data)
        else:
            self.channel.ws_message_received(data)

    def collect(self, d: Any) -> None:
        """Keep an eye on a Deferred from our API: it may only fail in documented ways."""

        def failed(failure: Failure) -> None:
            if not failure.check(*_EXPECTED_FAILURES):
                self.failures.append(failure)

        d.addErrback(failed)

    def lose(self) -> None:
        if self.lost:
            return
        self.check_output()
        self.lost = True
        reason = Failure(ConnectionDone() if self.close_requested else ConnectionLost())
        if self.protocol is not None:
            self.protocol.connectionLost(reason)
        else:
            self.channel.connection_lost(reason)

    def after_step(self) -> None:
        self.check_output()
        if self.abort_written:
            check(
                self.close_requested or self.dropped or self.lost,
                "an Abort was written but the transport is not being closed",
            )
        if self.failures:
            failure = self.failures[0]
            raise AssertionError("a Deferred failed unexpectedly:\n" + failure.getTraceback())


def _request_options(reader: Reader) -> Options:
    message = build_message(reader)
    return message.options


def test_one_input(data: bytes) -> None:
    logs = LogWatch()
    try:
        _run(data, logs)
    finally:
        logs.close()


def _run(data: bytes, logs: LogWatch) -> None:
    reader = Reader(data)
    server = Server(reader.u8())
    clock = server.clock
    channel = server.channel
    steps = 0
    while reader and not server.lost and steps < 100:
        steps += 1
        op = reader.u8() % OP_COUNT
        if op == OP_RAW:
            server.receive(reader.blob())
        elif op in (OP_MESSAGE, OP_MESSAGE2):
            count = 1 + reader.u8() % 3
            wire = [server.encode(build_message(reader)) for _ in range(count)]
            if server.websocket:
                for frame in wire:
                    server.receive(frame)
            else:
                server.receive(b"".join(wire))
        elif op == OP_CLOCK:
            clock.advance(reader.choice(CLOCK_STEPS))
        elif op == OP_PAUSE:
            # StringTransport refuses pause/resume once closing (a real one does not care).
            transport = server.transport
            if server.protocol is not None and transport is not None:
                if transport.producerState == "producing" and not transport.disconnecting:
                    server.protocol.pauseProducing()
            else:
                channel.pause()
        elif op == OP_RESUME:
            transport = server.transport
            if server.protocol is not None and transport is not None:
                if transport.producerState == "paused" and not transport.disconnecting:
                    server.protocol.resumeProducing()
            else:
                channel.resume()
        elif op == OP_REQUEST:
            flags = reader.u8()
            method = Code(1 + flags % 4)
            options = _request_options(reader)
            timeout = (None, 1.0, 30.0)[(flags >> 4) % 3]
            payload = reader.take(flags >> 6 << 4)
            server.collect(channel.request(method, options, payload, timeout=timeout))
        elif op == OP_PING:
            flags = reader.u8()
            server.collect(
                channel.ping(custody=bool(flags & 1), timeout=(None, 2.0)[flags >> 1 & 1])
            )
        elif op == OP_RELEASE:
            server.collect(channel.release("fuzz release"))
        elif op == OP_ABORT:
            channel.abort("fuzz abort")
        elif op == OP_CLOSED:
            if server.close_requested or server.dropped or reader.u8() & 1:
                server.lose()
        elif op == OP_OBSERVE:
            options = _request_options(reader)
            try:
                observation = channel.observe(
                    options,
                    on_notification=lambda response: None,
                    on_end=server.ended.append,
                )
            except (ConnectionClosedError, RequestNotSent):
                pass
            else:
                server.observations.append(observation)
        elif op == OP_CANCEL:
            if server.observations:
                observation = server.observations.pop(0)
                server.collect(observation.cancel(timeout=(None, 2.0)[reader.u8() & 1]))
        elif op == OP_VIOLATION:
            if server.websocket:
                channel.violation_with_close_code(1003, "text WebSocket message")  # type: ignore[attr-defined]
            else:
                server.receive(reader.blob())
        server.after_step()
        problems = logs.take()
        check(not problems, lambda problems=problems: "logged errors:\n" + "\n".join(problems))

    # The connection ends (if nothing ended it); every timer must then run out.
    server.lose()
    for _ in range(50):
        calls = clock.getDelayedCalls()
        if not calls:
            break
        clock.advance(max(call.getTime() for call in calls) - clock.seconds() + 1)
    server.after_step()
    problems = logs.take()
    check(not problems, lambda: "logged errors:\n" + "\n".join(problems))
    left = clock.getDelayedCalls()
    check(not left, lambda: f"timers left after the connection closed: {left!r}")
    if server.factory is not None:
        check(not server.factory.connections, "the factory still counts the connection")
        check(not server.factory.gate.per_address, "the factory still counts the peer's address")
    for name in ("time", "slow"):
        resource = server.site.root.children[name]
        check(
            resource.observer_count == 0,  # type: ignore[attr-defined]
            f"an observation of /{name} outlived its connection",
        )
    check(channel.observation_count == 0, "the channel still holds observations")
    check(channel.observing == 0, "the channel still holds observations of the peer's")
    for observation in server.observations:
        check(observation.state.name == "ENDED", f"an observation of ours is {observation.state}")
    check(
        all(e is None or isinstance(e, ConnectionClosedError) for e in server.ended),
        lambda: f"an observation of ours ended with {server.ended!r}",
    )
    check(channel.pending_requests == 0, "the channel still holds requests")


if __name__ == "__main__":
    fuzz_main(test_one_input, CORPUS)
    sys.exit(0)
