"""Abandoned Block1 uploads against the real ``twistd coaptcp`` over loopback (issue 12,
item 2), scaled down: 4 connections x 8 uploads x 1 MiB, never finished, against a server
with ``--upload-timeout 2``, a connection budget of 2 MiB and a server budget of 4 MiB.

Before the fix the server held every byte (here 32 MiB; 542 MB for 4 x 8 x 15 MiB) until
another Block1 arrived on the same connection, and Pings kept the connections alive. Now:
the first two connections fill their own budgets (5.03, "connection"), the others find
the server's full (5.03, "server"), each with Max-Age; the server's memory grows by the
budget, not by what was sent; another client is still served; the loss of a connection
mid-upload gives its bytes back; the uploads of the others expire on the clock while they
keep Pinging, and their later blocks get 4.08. Every wait is bounded by a socket timeout or
a deadline; no figure of time is asserted.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from hostile_wire import (
    CONTENT,
    EMPTY_CSM,
    PING,
    PONG,
    Server,
    check_server_csm,
    frame,
    get,
    option_bytes,
)

from coaptcp.core.blockwise import Block
from coaptcp.core.framing import StreamDecoder
from coaptcp.core.message import Message

pytestmark = pytest.mark.hostile

MIB = 1 << 20
CHUNK = 64 * 1024  # one BERT message: 64 blocks of 1024 bytes
UPLOAD = MIB
CONNECTION_BUDGET = 2 * MIB
SERVER_BUDGET = 4 * MIB
IO_TIMEOUT = 10.0  # seconds a single socket operation may block
DEADLINE = 30.0  # seconds a wait for the server may last in all, before failing
PUT, CONTINUE, CHANGED, INCOMPLETE, UNAVAILABLE = 0x03, 0x5F, 0x44, 0x88, 0xA3


@pytest.fixture(scope="module")
def upload_server(start_server) -> Iterator[Server]:
    with start_server(
        "--upload-timeout", "2",
        "--max-body-size", str(CONNECTION_BUDGET),
        "--max-upload-bytes-per-connection", str(CONNECTION_BUDGET),
        "--max-upload-bytes", str(SERVER_BUDGET),
    ) as server:
        yield server


def uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def put_block(tag: int, offset: int, size: int, *, more: bool = True) -> bytes:
    """One BERT block of the upload to /store with Request-Tag ``tag``."""
    block1 = Block(offset // 1024, more, 7).encode()
    options = option_bytes([(11, b"store"), (27, uint(block1)), (292, bytes([tag]))])
    token = struct.pack(">BI", tag, offset)
    return frame(PUT, token, options + b"\xff" + b"a" * size if size else options)


def vm_rss(server: Server) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Peer:
    """One client connection; what it reads is decoded into messages."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
        self.decoder = StreamDecoder(1 << 30)
        self.sock.sendall(EMPTY_CSM)
        (server_csm,) = self.read(1)
        check_server_csm(server_csm)

    def read(self, count: int) -> list[Message]:
        messages: list[Message] = []
        while len(messages) < count:
            message = self.decoder.next_message()
            if message is not None:
                messages.append(message)
                continue
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                pytest.fail(f"only {len(messages)} of {count} answers within {IO_TIMEOUT} s")
            if not data:
                pytest.fail(f"the server closed after {len(messages)} of {count} answers")
            self.decoder.feed(data)
        return messages

    def ask(self, data: bytes) -> Message:
        self.sock.sendall(data)
        (answer,) = self.read(1)
        return answer

    def ping(self) -> None:
        assert int(self.ask(frame(PING)).code) == PONG

    def lose(self) -> None:
        """Reset the connection (SO_LINGER 0): a client gone mid-upload."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def wait_a_little(peers: list[Peer]) -> None:
    """Pace a poll: wait on the peers' sockets (nothing is due on them) for a moment."""
    select.select([p.sock for p in peers], [], [], 0.1)


def assert_serves_hello(server: Server) -> None:
    peer = Peer(server)
    answer = peer.ask(get("hello", b"\x42"))
    assert (int(answer.code), answer.payload) == (CONTENT, b"Hello, world!")
    peer.sock.close()


def test_abandoned_uploads_are_bounded_and_expire(upload_server: Server) -> None:
    assert_serves_hello(upload_server)
    before = vm_rss(upload_server)
    attackers = [Peer(upload_server) for _ in range(4)]
    blocks = UPLOAD // CHUNK
    for peer in attackers:
        peer.sock.sendall(
            b"".join(put_block(tag, n * CHUNK, CHUNK) for tag in range(8) for n in range(blocks))
        )
    answers = [peer.read(8 * blocks) for peer in attackers]
    held = vm_rss(upload_server) - before

    # The first two connections hold two uploads each, up to their budget; their other
    # uploads get 5.03 at block 0. The other two find the server's budget spent.
    seen = [Counter(int(m.code) for m in a) for a in answers]
    first_blocks = [[a[tag * blocks] for tag in range(8)] for a in answers]
    for peer_seen, firsts in zip(seen[:2], first_blocks[:2], strict=True):
        assert peer_seen[CONTINUE] == 2 * blocks
        assert [int(m.code) for m in firsts] == [CONTINUE] * 2 + [UNAVAILABLE] * 6
        assert firsts[2].payload == (
            b"the partial uploads of this connection would exceed 2097152 bytes; retry later"
        )
    for firsts in first_blocks[2:]:
        assert [int(m.code) for m in firsts] == [UNAVAILABLE] * 8
        assert firsts[0].payload == b"the server holds too many partial uploads; retry later"
    for firsts in first_blocks:
        assert all(m.options.max_age == 10 for m in firsts if int(m.code) == UNAVAILABLE)
    # A refused upload is not kept: its later blocks are 4.08.
    assert all(s[INCOMPLETE] == s[UNAVAILABLE] * (blocks - 1) for s in seen)
    # The server holds its budget, not the 32 MiB sent (margin: the interpreter's own).
    assert held < SERVER_BUDGET + 12 * MIB, held

    # Another client is served meanwhile, and its upload does not fit now.
    assert_serves_hello(upload_server)
    other = Peer(upload_server)
    refused = other.ask(put_block(99, 0, CHUNK))
    assert int(refused.code) == UNAVAILABLE and refused.options.max_age == 10

    # A connection lost mid-upload gives its bytes back: the other client's upload fits.
    attackers.pop(1).lose()
    deadline = time.monotonic() + DEADLINE
    while int(other.ask(put_block(99, 0, CHUNK)).code) != CONTINUE:
        assert time.monotonic() < deadline, "the lost connection's uploads were kept"
        wait_a_little([other])
    assert int(other.ask(put_block(99, CHUNK, 10, more=False)).code) == CHANGED

    # The first connection's 2 MiB expire on the clock although it keeps Pinging: fill the
    # rest of the server's budget, then poll with one block until it fits.
    filler, probe = Peer(upload_server), Peer(upload_server)
    filler.sock.sendall(b"".join(put_block(7, n * CHUNK, CHUNK) for n in range(2 * blocks)))
    assert {int(m.code) for m in filler.read(2 * blocks)} == {CONTINUE}
    deadline = time.monotonic() + DEADLINE
    while int(probe.ask(put_block(5, 0, CHUNK)).code) != CONTINUE:
        assert time.monotonic() < deadline, "abandoned uploads did not expire"
        for peer in attackers:
            peer.ping()
        wait_a_little(attackers)
    # Its upload is gone: the next block is 4.08 (the connection itself is still open).
    late = attackers[0].ask(put_block(0, UPLOAD, 10, more=False))
    assert int(late.code) == INCOMPLETE
    attackers[0].ping()
    assert_serves_hello(upload_server)
    for peer in [*attackers, other, filler, probe]:
        peer.sock.close()

    # Logged once per connection for its budget, once per episode for the server's: the
    # attack's, and the one the filler started once the lost connection's bytes had
    # brought the server's down to half its budget.
    log = upload_server.log()
    assert log.count("a connection's budget is 2097152 bytes") == 2, log
    assert log.count("the server's budget is 4194304 bytes") == 2, log
