"""Bounded load against a coaptcp server on loopback: the soak test's client side.

An asyncio client over plain sockets, framing with :mod:`coaptcp.core` (frames built with
``encode_frame``, read with ``StreamDecoder``).  Every connection runs one *scenario*
(say hello and close, Release, observe ``/time``, upload block-wise to ``/store``, leave an
upload half done, Abort, send garbage, never send a CSM, ...) and checks what the server
answers; :func:`run_round` runs a round of them (a churn of short connections, then a set
held open together while they observe and upload) and returns counts and failures.

Only 127.0.0.1 is ever contacted; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

HOST = "127.0.0.1"
#: Seconds any single wait for the server may take before the scenario counts as failed.
WAIT = 20.0

HELLO = b"Hello, world!"
CSM = Message(Code.CSM, options=Options([(2, 66048), (4, None)]))
BLOCK_SZX = 6  # 1024-byte blocks
BLOCK = 1024


class ScenarioFailed(Exception):
    """The server did not behave as the scenario expects."""


class Peer:
    """One client connection: a reader task sorting the server's messages by token."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = StreamDecoder(1 << 24)
        self.queues: dict[bytes, asyncio.Queue[Message]] = {}
        self.signals: asyncio.Queue[Message] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int) -> Peer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), WAIT)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.decoder.feed(data)
                while (message := self.decoder.next_message()) is not None:
                    if message.code.is_signaling:
                        if message.code == Code.PING:
                            self.send(Message(Code.PONG, message.token))
                        self.signals.put_nowait(message)
                    else:
                        self.queue(message.token).put_nowait(message)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def queue(self, token: bytes) -> asyncio.Queue[Message]:
        return self.queues.setdefault(token, asyncio.Queue())

    def send(self, message: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_frame(message))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def next_for(self, token: bytes) -> Message:
        return await asyncio.wait_for(self.queue(token).get(), WAIT)

    async def request(
        self, code: Code, token: bytes, options: Options, payload: bytes = b""
    ) -> Message:
        self.send(Message(code, token, options, payload))
        return await self.next_for(token)

    async def signal(self) -> Message:
        return await asyncio.wait_for(self.signals.get(), WAIT)

    async def wait_closed_by_server(self) -> None:
        await asyncio.wait_for(self.closed.wait(), WAIT)

    async def close(self, *, reset: bool = False) -> None:
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                import socket
                import struct

                # SO_LINGER 0: close sends RST, as a crashing client would.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except (ConnectionError, OSError):
            pass
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def expect(condition: object, what: str) -> None:
    if not condition:
        raise ScenarioFailed(what)


async def _started(port: int) -> Peer:
    """Connect, send our CSM and check that the server's CSM comes first."""
    peer = await Peer.open(port)
    peer.send(CSM)
    csm = await peer.signal()
    expect(csm.code == Code.CSM, f"first message {csm!r} is not a CSM")
    return peer


def _path(*segments: str, **extra: object) -> Options:
    items: list[tuple[int, object]] = [(11, s) for s in segments]
    items += [(int(k[1:]), v) for k, v in extra.items()]  # o6=..., o27=...
    return Options(items)  # type: ignore[arg-type]


# -- scenarios ------------------------------------------------------------------------------


async def hello(port: int, i: int) -> None:
    peer = await _started(port)
    response = await peer.request(Code.GET, b"h", _path("hello"))
    expect(response.code == Code.CONTENT and response.payload == HELLO, f"hello: {response!r}")
    await peer.close(reset=i % 2 == 0)


async def release(port: int, i: int) -> None:
    peer = await _started(port)
    response = await peer.request(Code.GET, b"i", _path("info"))
    expect(response.code == Code.CONTENT, f"info: {response!r}")
    json.loads(response.payload)
    peer.send(Message(Code.RELEASE, payload=b"soak done"))
    await peer.wait_closed_by_server()  # the server closes once nothing is in flight
    await peer.close()


def _upload_body(i: int) -> bytes:
    return bytes((i + k) & 0xFF for k in range(3 * BLOCK + 100))


async def upload(port: int, i: int) -> None:
    """PUT /store in three 1024-byte blocks and a tail, then read it back block-wise."""
    peer = await _started(port)
    body = _upload_body(i)
    token = i.to_bytes(4, "big")
    blocks = [body[k : k + BLOCK] for k in range(0, len(body), BLOCK)]
    for num, chunk in enumerate(blocks):
        more = num < len(blocks) - 1
        value = num << 4 | (8 if more else 0) | BLOCK_SZX
        answer = await peer.request(Code.PUT, token, _path("store", o27=value), chunk)
        wanted = Code.CONTINUE if more else Code.CHANGED
        expect(answer.code == wanted, f"block {num}: {answer!r}")
    # Read back: another upload may have replaced it meanwhile, so only the size and the
    # block-wise mechanics are checked; the content when nobody else wrote.
    received = b""
    num = 0
    while True:
        answer = await peer.request(Code.GET, token, _path("store", o23=num << 4 | BLOCK_SZX))
        expect(answer.code == Code.CONTENT, f"GET /store block {num}: {answer!r}")
        received += answer.payload
        block2 = answer.options.get(23)
        expect(block2 is not None, f"GET /store answered without Block2: {answer!r}")
        assert block2 is not None
        if not int.from_bytes(block2, "big") & 8:
            break
        num += 1
        expect(num < 64, "GET /store never ends")
    expect(len(received) == len(body), f"read back {len(received)} bytes, not {len(body)}")
    await peer.close(reset=i % 3 == 0)


async def partial_upload(port: int, i: int) -> None:
    """Send the first block of an upload and go away: the server must drop the upload."""
    peer = await _started(port)
    value = 0 << 4 | 8 | BLOCK_SZX
    answer = await peer.request(Code.POST, b"p", _path("store", o27=value), bytes(BLOCK))
    expect(answer.code == Code.CONTINUE, f"first block: {answer!r}")
    await peer.close(reset=i % 2 == 0)


async def abort(port: int, i: int) -> None:
    peer = await _started(port)
    peer.send(Message(Code.ABORT, payload=b"soak abort"))
    await peer.wait_closed_by_server()
    await peer.close()


async def garbage(port: int, i: int) -> None:
    """Random bytes (after a CSM or instead of one): we get an Abort and the close."""
    peer = await Peer.open(port)
    rng = random.Random(i)
    if i % 2:
        peer.send(CSM)
    peer.send_raw(b"\x0d\xe1" + bytes(rng.randrange(256) for _ in range(64)))
    seen = [await peer.signal()]
    while seen[-1].code != Code.ABORT:
        seen.append(await peer.signal())
    expect(seen[0].code == Code.CSM, f"garbage: {seen!r}")
    await peer.wait_closed_by_server()
    await peer.close()


async def half_frame(port: int, i: int) -> None:
    """A CSM, then a frame cut short, then the close."""
    peer = await _started(port)
    peer.send_raw(encode_frame(Message(Code.GET, b"x", _path("hello")))[:-2])
    await peer.close(reset=i % 2 == 0)


async def silent(port: int, i: int) -> None:
    """Never send a CSM: the server aborts us after its CSM timeout."""
    peer = await Peer.open(port)
    first = await peer.signal()
    expect(first.code == Code.CSM, f"silent: first {first!r}")
    second = await peer.signal()
    expect(second.code == Code.ABORT and b"CSM" in second.payload, f"silent: {second!r}")
    await peer.wait_closed_by_server()
    await peer.close()


@dataclass
class Hold:
    """Coordinates the held observers: paced opening, all registered, time to leave."""

    expected: int
    opening: asyncio.Semaphore
    registered: int = 0
    failed: int = 0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    leave: asyncio.Event = field(default_factory=asyncio.Event)
    notifications: int = 0

    def count(self, *, ok: bool) -> None:
        if ok:
            self.registered += 1
        else:
            self.failed += 1
        if self.registered + self.failed >= self.expected:
            self.all_in.set()


async def observer(port: int, i: int, hold: Hold) -> None:
    """Observe /time, keep getting notifications until told to leave, then go."""
    counted = False
    try:
        async with hold.opening:
            peer = await _started(port)
            token = b"o" + i.to_bytes(4, "big")
            first = await peer.request(Code.GET, token, _path("time", o6=0))
        expect(
            first.code == Code.CONTENT and first.options.get(6) is not None, f"observe: {first!r}"
        )
        hold.count(ok=True)
        counted = True
    finally:
        if not counted:
            hold.count(ok=False)
    await _observing(peer, i, token, hold)


async def _observing(peer: Peer, i: int, token: bytes, hold: Hold) -> None:
    if i % 4 == 0:
        # Upload while observing.
        value = 0 << 4 | 8 | BLOCK_SZX
        answer = await peer.request(Code.PUT, b"u", _path("store", o27=value), bytes(BLOCK))
        expect(answer.code == Code.CONTINUE, f"upload while observing: {answer!r}")
    notifications = 0
    queue = peer.queue(token)
    while not hold.leave.is_set():
        try:
            message = await asyncio.wait_for(queue.get(), 0.5)
        except TimeoutError:
            continue
        expect(message.code == Code.CONTENT, f"notification {message!r}")
        notifications += 1
    hold.notifications += notifications
    if i % 2 == 0:
        # Deregister (RFC 8323 section 7.4): the answer carries no Observe option.
        answer = await peer.request(Code.GET, token, _path("time", o6=1))
        while answer.options.get(6) is not None:  # a notification crossed our GET
            answer = await peer.next_for(token)
        expect(answer.code == Code.CONTENT, f"deregister: {answer!r}")
    await peer.close(reset=i % 3 == 0)


CHURN: list[tuple[str, Callable[[int, int], Awaitable[None]]]] = [
    ("hello", hello),
    ("hello", hello),
    ("release", release),
    ("upload", upload),
    ("partial_upload", partial_upload),
    ("abort", abort),
    ("garbage", garbage),
    ("half_frame", half_frame),
]


@dataclass
class RoundResult:
    """What one round did."""

    connections: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    held: int = 0
    notifications: int = 0


async def _guard(
    name: str, coro: Awaitable[None], result: RoundResult, limit: asyncio.Semaphore | None
) -> None:
    try:
        if limit is None:
            await coro
        else:
            async with limit:
                await coro
        result.connections[name] += 1
    except Exception as error:
        result.failures.append(f"{name}: {type(error).__name__}: {error}")


async def run_round(
    port: int,
    *,
    churn: int,
    hold: int,
    hold_seconds: float,
    silent_count: int,
    concurrency: int,
    offset: int = 0,
    on_held: Callable[[], None] | None = None,
) -> RoundResult:
    """One round: ``churn`` short connections, then ``hold`` observers held together.

    ``on_held`` is called once all the observers are registered, before they leave.
    """
    result = RoundResult()
    limit = asyncio.Semaphore(concurrency)
    tasks = [
        asyncio.create_task(_guard("silent", silent(port, offset + k), result, None))
        for k in range(silent_count)
    ]
    for k in range(churn):
        name, scenario = CHURN[k % len(CHURN)]
        tasks.append(asyncio.create_task(_guard(name, scenario(port, offset + k), result, limit)))
    await asyncio.gather(*tasks)

    hold_state = Hold(hold, asyncio.Semaphore(concurrency))
    observers = [
        asyncio.create_task(_guard("observe", observer(port, offset + k, hold_state), result, None))
        for k in range(hold)
    ]
    if hold:
        await asyncio.wait_for(hold_state.all_in.wait(), WAIT * 3)
    result.held = hold_state.registered
    if on_held is not None:
        on_held()  # e.g. sample the server's memory with every observer connected
    # All registered and held open at once: let /time tick over them for a while (the load
    # generator's own pacing, not a wait for the server).
    await asyncio.sleep(hold_seconds)
    hold_state.leave.set()
    await asyncio.gather(*observers)
    result.notifications = hold_state.notifications
    return result


async def stats(port: int, *, trim: bool = True) -> dict[str, int]:
    """GET /soak/stats from the server, on a connection of its own."""
    peer = await _started(port)
    options = _path("soak", "stats")
    if trim:
        options = options.add(15, "trim")
    response = await peer.request(Code.GET, b"s", options)
    await peer.close()
    if response.code != Code.CONTENT:
        raise ScenarioFailed(f"/soak/stats: {response!r}")
    return json.loads(response.payload)  # type: ignore[no-any-return]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
