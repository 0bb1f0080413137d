"""Hostile peers against the real ``twistd -n coaptcp`` over loopback sockets.

One server process serves the whole module (see ``coap_server`` in conftest.py).  Each
hostile connection must get the server's CSM, exactly one Abort with a diagnostic, and then
EOF; a well-behaved connection opened afterwards must still get "Hello, world!".  At the
end the server's log must show every abort and no traceback.

Every blocking socket call is bounded by a socket timeout; there are no sleeps.
"""

from __future__ import annotations

import random
import socket

import hostile_wire
import pytest
from hostile_wire import (
    ABORT,
    BAD_OPTION,
    CONTENT,
    CSM,
    EMPTY_CSM,
    HELLO_TEXT,
    HOSTILE_CASES,
    Hostile,
    Server,
    check_csm_then_abort,
    check_server_csm,
    decode_all,
    frame,
    get,
    log_problems,
    option_bytes,
    read_until_eof,
)

from coaptcp.core.framing import StreamDecoder

pytestmark = pytest.mark.hostile

IO_TIMEOUT = 5.0  # seconds any single socket operation may block


def open_connection(server: Server) -> socket.socket:
    return hostile_wire.open_connection(server.port, IO_TIMEOUT)


def read_messages(sock: socket.socket, count: int) -> list:
    """Read until ``count`` complete messages have arrived (bounded by the I/O timeout)."""
    decoder = StreamDecoder(1 << 40)
    messages: list = []
    while len(messages) < count:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"only {len(messages)} of {count} messages within {IO_TIMEOUT}s")
        if not chunk:
            pytest.fail(f"server closed after {len(messages)} of {count} messages: {messages}")
        decoder.feed(chunk)
        while (message := decoder.next_message()) is not None:
            messages.append(message)
    return messages


def assert_serves_hello(server: Server) -> None:
    token = b"\x4e\x11\x0a"
    with open_connection(server) as sock:
        sock.sendall(EMPTY_CSM + get("hello", token))
        messages = read_messages(sock, 2)
        assert len(messages) == 2, messages
        check_server_csm(messages[0])
        assert int(messages[1].code) == CONTENT
        assert messages[1].token == token
        assert messages[1].payload == HELLO_TEXT


def hostile_exchange(server: Server, data: bytes) -> bytes:
    with open_connection(server) as sock:
        sock.sendall(data)
        return read_until_eof(sock)


#: Diagnostics the server sent, for the log check at the end of the module.
SENT_DIAGNOSTICS: list[str] = []


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=[c.id for c in HOSTILE_CASES])
def test_hostile_peer_is_aborted_and_server_keeps_serving(case: Hostile, coap_server):
    received = hostile_exchange(coap_server, case.data)
    abort = check_csm_then_abort(received)  # CSM, one Abort, nothing else, then EOF
    for word in case.words:
        assert word in abort.diagnostic, (word, abort.diagnostic)
    assert abort.bad_csm_option == case.bad_csm_option
    SENT_DIAGNOSTICS.append(abort.diagnostic)
    assert_serves_hello(coap_server)


def test_hostile_bytes_split_across_segments(coap_server):
    """The 4 GiB header sent one byte per send() (TCP_NODELAY): still one Abort."""
    with open_connection(coap_server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in EMPTY_CSM + bytes.fromhex("f0ffffffff"):
            sock.sendall(bytes([byte]))
        abort = check_csm_then_abort(read_until_eof(sock))
    assert "Max-Message-Size" in abort.diagnostic
    assert_serves_hello(coap_server)


def test_peer_closing_inside_a_frame(coap_server):
    """Truncated extended length: the peer sends Len=13 and closes before the extension
    byte.  The server cannot Abort a closed peer; it must note the cut frame and go on."""
    with open_connection(coap_server) as sock:
        sock.sendall(EMPTY_CSM + b"\xd0")
        check_server_csm(read_messages(sock, 1)[0])
        sock.shutdown(socket.SHUT_WR)
        rest = read_until_eof(sock)
    assert rest == b"", f"the server answered a cut frame with {rest!r}"
    # The server handles one event at a time: once it has answered this later connection,
    # it has also finished handling the close above (and logged it).
    assert_serves_hello(coap_server)
    assert "connection closed inside a frame (1 bytes unread)" in coap_server.log()


def test_stalled_and_idle_peers_do_not_block_others(coap_server):
    """A peer that announced a large (allowed) frame and stalls, and one that sent nothing
    at all, are held open while a third connection is served."""
    request = frame(0x01, b"\x01", b"\xff" + b"x" * 200)  # GET / with a 200-byte payload
    ping = frame(0xE2, b"\x77")
    with open_connection(coap_server) as stalled, open_connection(coap_server) as idle:
        stalled.sendall(EMPTY_CSM + request[:-100])
        check_server_csm(read_messages(stalled, 1)[0])
        check_server_csm(read_messages(idle, 1)[0])
        assert_serves_hello(coap_server)
        # Both are still open and usable.
        idle.sendall(EMPTY_CSM + ping)
        pong = read_messages(idle, 1)[0]
        assert (int(pong.code), pong.token) == (0xE3, b"\x77")
        stalled.sendall(request[-100:] + ping)
        # The core answers a Ping at once, the request on dispatch: the Pong may come first
        # (allowed without Custody, RFC 8323 section 5.4).
        answers = {(int(m.code), m.token) for m in read_messages(stalled, 2)}
        assert answers == {(CONTENT, b"\x01"), (0xE3, b"\x77")}


def test_good_request_then_bad_frame_in_one_write(coap_server):
    """A valid GET and a reserved-class frame arrive together: the Abort must still go out
    (the server must not crash on the request it can no longer answer)."""
    received = hostile_exchange(coap_server, EMPTY_CSM + get("hello", b"\x01") + frame(0x60))
    messages, leftover = decode_all(received)
    assert leftover == 0
    codes = [int(m.code) for m in messages]
    assert codes[0] == CSM and codes[-1] == ABORT and codes.count(ABORT) == 1, messages
    assert all(c == CONTENT for c in codes[1:-1]), messages
    SENT_DIAGNOSTICS.append(messages[-1].payload.decode("utf-8"))
    assert_serves_hello(coap_server)


def test_tiny_peer_max_message_size_with_pipelined_requests(coap_server):
    """Max-Message-Size 16 leaves no room for any response: Abort, and no crash on the
    requests and Custody Ping queued behind the first."""
    csm16 = frame(CSM, b"", option_bytes([(2, b"\x10")]))
    custody_ping = frame(0xE2, b"", option_bytes([(2, b"")]))
    received = hostile_exchange(coap_server, csm16 + get("hello") * 3 + custody_ping)
    abort = check_csm_then_abort(received)
    assert "Max-Message-Size" in abort.diagnostic
    assert_serves_hello(coap_server)


def test_uri_path_not_utf8_gets_bad_option_and_connection_survives(coap_server):
    with open_connection(coap_server) as sock:
        bad = frame(0x01, b"\x01", option_bytes([(11, b"\xff\xfe")]))
        sock.sendall(EMPTY_CSM + bad + get("hello", b"\x02"))
        csm, error, hello = read_messages(sock, 3)
    check_server_csm(csm)
    assert (int(error.code), error.token) == (BAD_OPTION, b"\x01")
    assert error.payload.decode("utf-8")
    assert (int(hello.code), hello.token, hello.payload) == (CONTENT, b"\x02", HELLO_TEXT)
    assert_serves_hello(coap_server)


def in_memory_answer(data: bytes) -> tuple[bytes, bool]:
    """What the protocol writes for ``data`` in memory, and whether it starts closing."""
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from coaptcp.server.resource import Site
    from coaptcp.tap.demo import make_demo_site
    from coaptcp.transport.tcp import CoapFactory

    factory = CoapFactory(Site(make_demo_site()), reactor=MemoryReactorClock())
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value(), transport.disconnecting


def summary(data: bytes) -> list[tuple[int, bytes, bytes]]:
    messages, leftover = decode_all(data)
    assert leftover == 0
    return [(int(m.code), m.token, m.payload) for m in messages]


def garbage_for(seed: int) -> bytes:
    rng = random.Random(1000 + seed)
    return rng.randbytes(rng.randint(16, 300))


@pytest.mark.parametrize("seed", range(20))
def test_random_garbage(seed, coap_server):
    """Random garbage as the first bytes: the server over TCP does what the protocol does
    in memory; when that is an Abort, the socket gets exactly those frames and then EOF."""
    garbage = garbage_for(seed)
    expected, aborts = in_memory_answer(garbage)
    with open_connection(coap_server) as sock:
        sock.sendall(garbage)
        if aborts:
            received = read_until_eof(sock)
        else:  # garbage ends inside a frame: the server waits; we read its CSM and leave
            received = b""
            while len(received) < len(expected):
                chunk = sock.recv(65536)
                assert chunk, "server closed without an Abort"
                received += chunk
    assert summary(received) == summary(expected)
    codes = [code for code, _, _ in summary(received)]
    assert codes[0] == CSM and codes.count(ABORT) == (1 if aborts else 0)
    if aborts:
        assert codes[-1] == ABORT
        diagnostic = summary(received)[-1][2].decode("utf-8")
        assert diagnostic.strip()
        SENT_DIAGNOSTICS.append(diagnostic)
    assert_serves_hello(coap_server)


def test_random_garbage_mostly_aborts():
    """The seeds above exercise the Abort path (not only the waiting one)."""
    outcomes = [in_memory_answer(garbage_for(seed))[1] for seed in range(20)]
    assert sum(outcomes) >= 15, outcomes


def test_thousands_of_get_frames_in_one_write(coap_server):
    n = 5000
    tokens = [i.to_bytes(2, "big") for i in range(n)]
    data = EMPTY_CSM + b"".join(get("hello", t) for t in tokens)
    with open_connection(coap_server) as sock:
        sock.sendall(data)
        messages = read_messages(sock, n + 1)
        sock.shutdown(socket.SHUT_WR)
        extra = read_until_eof(sock)
    assert extra == b"", "more answers than requests"
    check_server_csm(messages[0])
    responses = messages[1:]
    assert all(int(m.code) == CONTENT and m.payload == HELLO_TEXT for m in responses)
    assert sorted(m.token for m in responses) == tokens  # each token answered exactly once


def test_zz_server_log_is_clean(coap_server):
    """Runs last in this module: every Abort was logged, and nothing unhandled was."""
    assert_serves_hello(coap_server)  # makes sure all earlier closes are processed
    log = coap_server.log()
    assert "Aborting connection from" in log, log[-2000:]
    missing = [d for d in SENT_DIAGNOSTICS if d not in log]
    assert not missing, missing
    assert not log_problems(log), log
