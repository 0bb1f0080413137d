"""What a peer that floods, never reads or half-closes costs the real server (issue 12).

Each test runs ``twistd coaptcp`` over loopback and plays the attacker with plain sockets;
memory is the server process's resident set (``VmRSS``).  Socket timeouts here only bound
how long a test waits for an answer that must come: they measure nothing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import running_server
from hostile_wire import CONTENT, CSM, HELLO_TEXT, Server, frame, get, option_bytes

from coaptcp.core.framing import StreamDecoder
from coaptcp.core.message import Message

pytestmark = pytest.mark.hostile

MIB = 1024 * 1024
ANSWER_WAIT = 20.0  # seconds an answer that must come may take on a loaded machine


def rss_kib(server: Server) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settled_rss(server: Server, deadline: float = 15.0) -> int:
    """The server's RSS once it stops growing (bounded wait)."""
    end = time.monotonic() + deadline
    last = rss_kib(server)
    while time.monotonic() < end:
        time.sleep(0.5)  # polling another process's memory: no event to wait on
        now = rss_kib(server)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def csm(max_message_size: int) -> bytes:
    size = max_message_size.to_bytes(4, "big").lstrip(b"\0")
    return frame(CSM, b"", option_bytes([(2, size)]))


def connect(server: Server, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a small window: the peer's kernel holds little for it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(ANSWER_WAIT)
    sock.connect(("127.0.0.1", server.port))
    return sock


class Reader:
    """Decodes what the server sends on one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = StreamDecoder(1 << 30)

    def messages(self, count: int) -> list[Message]:
        out: list[Message] = []
        while len(out) < count:
            message = self.decoder.next_message()
            if message is not None:
                out.append(message)
                continue
            data = self.sock.recv(1 << 20)
            if not data:
                break
            self.decoder.feed(data)
        return out

    def until_closed(self) -> list[Message]:
        out: list[Message] = []
        while True:
            while (message := self.decoder.next_message()) is not None:
                out.append(message)
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return out
            if not data:
                return out
            self.decoder.feed(data)


def hello_from_a_new_client(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(csm(1152) + get("hello", b"h"))
        answers = [m for m in Reader(sock).messages(2) if m.code != CSM]
        assert answers and answers[0].code == CONTENT and answers[0].payload == HELLO_TEXT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    here = str(Path(__file__).parent)
    with running_server(
        tmp_path_factory.mktemp("flow"),
        "--resource",
        "hostile_site.make_root",
        pythonpath=here,
    ) as running:
        yield running


def test_pipelined_big_answers_to_a_client_that_never_reads_cost_bounded_memory(server):
    before = settled_rss(server)
    attackers = []
    for _ in range(10):
        sock = connect(server, rcvbuf=4096)
        sock.sendall(csm(4 * MIB) + b"".join(get("big", n.to_bytes(2, "big")) for n in range(500)))
        attackers.append(sock)
    held = settled_rss(server) - before
    # Before the bound: every answer of every read (500 MiB a connection) was built and
    # queued.  Now each connection holds about one answer (1 MiB) and a turn's output.
    assert held < 64 * 1024, f"the server holds {held} KiB more for 10 non-reading clients"
    hello_from_a_new_client(server)
    # Nothing was dropped: a client that starts reading gets every answer, in order.
    reader = Reader(attackers[0])
    answers = [m for m in reader.messages(501) if m.code != CSM]
    assert [int.from_bytes(m.token, "big") for m in answers] == list(range(500))
    assert all(len(m.payload) == MIB for m in answers)
    for sock in attackers:
        sock.close()


def test_a_ping_flood_that_is_never_read_does_not_stop_other_clients(server):
    ping = frame(0xE2)
    with connect(server, rcvbuf=4096) as flooder:
        flooder.sendall(csm(1152))
        flooder.settimeout(0.5)
        sent = 0
        try:
            while sent < 64 * MIB:  # until the server stops reading us
                flooder.sendall(ping * 32768)
                sent += 2 * 32768
        except TimeoutError:
            pass
        assert sent < 64 * MIB, "the server kept reading a peer that reads nothing"
        hello_from_a_new_client(server)


def test_requests_before_a_fin_are_all_answered(server):
    with connect(server) as sock:
        sock.sendall(csm(1152) + b"".join(get("hello", n.to_bytes(2, "big")) for n in range(2000)))
        sock.shutdown(socket.SHUT_WR)
        answers = [m for m in Reader(sock).until_closed() if m.code != CSM]
    assert [int.from_bytes(m.token, "big") for m in answers] == list(range(2000))
    assert all(m.code == CONTENT for m in answers)


def test_custody_pings_behind_slow_requests_do_not_freeze_the_server(server):
    custody_ping = frame(0xE2, b"", option_bytes([(2, b"")]))
    count = 3 * MIB // len(custody_ping)
    with connect(server) as sock:
        sock.sendall(csm(1152) + b"".join(get("slow", n.to_bytes(2, "big")) for n in range(250)))
        pongs: list[Message] = []
        answered_at_once = 1 + count - 64  # our CSM, then a Pong for each Ping but 64
        reading = threading.Thread(
            target=lambda: pongs.extend(Reader(sock).messages(answered_at_once))
        )
        reading.start()
        sock.sendall(custody_ping * count)
        # Meanwhile every other client is served as usual.
        hello_from_a_new_client(server)
        reading.join(ANSWER_WAIT * 3)
        assert not reading.is_alive()
    # All but the 64 that wait for the slow requests are answered at once, without
    # Custody (3 MB of them once took the reactor 18 s to rescan on every answer).
    assert [m.code for m in pongs[1:]] == [0xE3] * (count - 64)
    assert all(not m.options.items for m in pongs[1:])


@pytest.fixture(scope="module")
def short_keepalive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("keepalive"),
        # Long enough for the 157 attackers to register all their observations, even on
        # a loaded machine (the test checks the slots are taken before it waits for them
        # to be freed; with a 2 s write timeout the first attackers were aborted for
        # leaving their notifications unread before the last had registered).
        "--keepalive",
        "15",
        "--pong-timeout",
        "1",
        "--write-timeout",
        "15",
    ) as running:
        yield running


def observe(token: bytes) -> bytes:
    return frame(0x01, token, option_bytes([(6, b""), (11, b"time")]))


def test_observers_that_never_read_are_dropped_and_free_their_slots(short_keepalive):
    server = short_keepalive
    # 157 x 64 = 10,048 observations: more than the 10,000 one resource accepts.
    attackers = []
    for _ in range(157):
        sock = connect(server, rcvbuf=4096)
        sock.sendall(csm(1152) + b"".join(observe(n.to_bytes(2, "big")) for n in range(64)))
        attackers.append(sock)
    def registers() -> bool:
        with connect(server) as sock:
            sock.sendall(csm(1152) + observe(b"me"))
            (answer,) = [m for m in Reader(sock).messages(2) if m.code != CSM]
            return 6 in answer.options  # Observe in the answer: registered

    # First the attack takes hold: the resource's 10,000 slots are taken, which the
    # server logs once when it declines the first registration beyond them.  (Waiting
    # for that rather than probing: a probe registered while the attackers' requests are
    # still being read takes a slot that the attacker declined meanwhile never gets back.)
    deadline = time.monotonic() + 2 * ANSWER_WAIT
    while "Not registering further observers" not in server.log():
        assert time.monotonic() < deadline, "the attackers' observations never took the slots"
        time.sleep(0.2)  # the server is still reading the attackers' registrations
    assert not registers()
    # ... then the keepalive Pings they never answer end them (Abort "no Pong within
    # 1 s"), and the slots are free again.
    # The watchdog checks every keepalive period (15 s), so a connection silent since
    # just after one check is Pinged at the second: up to 2 x 15 s, plus the Pong's 1 s.
    deadline = time.monotonic() + ANSWER_WAIT + 31
    while not registers():
        assert time.monotonic() < deadline, "the observation slots were never freed"
        time.sleep(0.5)  # the attackers' keepalive has not run out yet
    for sock in attackers:
        sock.close()
    log = server.log()
    assert "no Pong within 1 s" in log or "read nothing of our output" in log
