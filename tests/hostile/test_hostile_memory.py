"""Hostile peers against the real protocol stack, in memory (no sockets, no sleeps).

Each hostile input goes to a :class:`CoapProtocol` built by ``CoapFactory(Site(demo))`` on a
``StringTransport``.  The server must write its CSM and then exactly one Abort (7.05) whose
payload is a UTF-8 diagnostic naming the problem (RFC 8323 sections 3.3, 5.3 and 5.6), start
closing the transport, ignore anything the peer sends afterwards, and go on serving a second
connection from the same factory.
"""

from __future__ import annotations

import random

import pytest
from hostile_wire import (
    ABORT,
    BAD_OPTION,
    CONTENT,
    CSM,
    EMPTY_CSM,
    FOUR_GIB,
    GET_HELLO,
    HELLO_TEXT,
    HOSTILE_CASES,
    PING,
    PONG,
    SERVER_MAX_MESSAGE_SIZE,
    Hostile,
    check_csm_then_abort,
    check_hello_answer,
    check_server_csm,
    decode_all,
    frame,
    get,
    option_bytes,
)
from twisted.internet.error import ConnectionDone
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from coaptcp.channel.channel import DEFAULT_CLOSE_TIMEOUT

LOST = Failure(ConnectionDone("peer closed"))


def timers_of(clock, channel) -> list:
    """The delayed calls that belong to ``channel`` (other connections keep their own)."""
    return [
        call for call in clock.getDelayedCalls() if getattr(call.func, "__self__", None) is channel
    ]


def assert_serves_hello(connect) -> None:
    """A fresh, well-behaved connection gets 2.05 "Hello, world!" for GET /hello."""
    peer = connect()
    token = b"\x5e\xc0\x4d"
    peer.protocol.dataReceived(EMPTY_CSM + get("hello", token))
    check_hello_answer(peer.written(), token)
    assert not peer.transport.disconnecting


def assert_no_errors_logged(events) -> None:
    bad = [
        formatEvent(e)
        for e in events
        if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)
    ]
    assert not bad, bad


def abort_log_lines(events) -> list[str]:
    return [formatEvent(e) for e in events if "Aborting connection" in formatEvent(e)]


# -- the hostile inputs -------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=[c.id for c in HOSTILE_CASES])
def test_hostile_input_gets_one_abort_with_diagnostic(case: Hostile, connect, clock, factory):
    with capturedLogs() as events:
        peer = connect()
        peer.protocol.dataReceived(case.data)

        abort = check_csm_then_abort(peer.written())
        for word in case.words:
            assert word in abort.diagnostic, (word, abort.diagnostic)
        assert abort.bad_csm_option == case.bad_csm_option
        assert peer.transport.disconnecting, "loseConnection was not called after the Abort"
        assert not peer.aborted, "the transport was dropped without letting the Abort out"

        # The server logs why it aborted, with the same diagnostic.
        lines = abort_log_lines(events)
        assert len(lines) == 1 and abort.diagnostic in lines[0], lines

        # Anything more from this peer is ignored: nothing written, nothing raised.
        before = peer.written()
        peer.protocol.dataReceived(EMPTY_CSM + GET_HELLO + frame(PING) + case.data)
        peer.protocol.dataReceived(b"\xff" * 64)
        assert peer.written() == before

        # A second connection from the same factory is served while the first is closing.
        assert_serves_hello(connect)

        # The first one finishes closing cleanly; its close timer goes away with it.
        assert clock.getDelayedCalls(), "no timer guards the closing transport"
        peer.protocol.connectionLost(LOST)
        assert not timers_of(clock, peer.protocol.channel)
        assert peer.protocol not in factory.connections
        assert peer.written() == before
    assert_no_errors_logged(events)
    # The rejected frame left in the buffer is not reported as a frame the peer cut short.
    assert not [e for e in events if "inside a frame" in formatEvent(e)]


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=[c.id for c in HOSTILE_CASES])
def test_hostile_input_byte_by_byte(case: Hostile, connect):
    """The same inputs split into single bytes: byte for byte the same CSM and Abort."""
    one_shot = connect()
    one_shot.protocol.dataReceived(case.data)
    peer = connect()
    for i in range(len(case.data)):
        peer.protocol.dataReceived(case.data[i : i + 1])
    abort = check_csm_then_abort(peer.written())
    for word in case.words:
        assert word in abort.diagnostic
    assert abort.bad_csm_option == case.bad_csm_option
    assert peer.written() == one_shot.written()
    assert peer.transport.disconnecting


def test_http_request_is_aborted_not_answered(connect):
    """HTTP on the CoAP port: the first bytes parse as a 2.05 with a broken option list,
    which is a message format error; the server must not answer with anything but Abort."""
    peer = connect()
    peer.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    messages, leftover = decode_all(peer.written())
    assert leftover == 0
    assert [int(m.code) for m in messages] == [CSM, ABORT]
    assert b"HTTP" not in peer.written()


# -- 4 GiB announced length ---------------------------------------------------------------


@pytest.mark.parametrize("prefix", [b"", EMPTY_CSM], ids=["first", "after-csm"])
def test_4gib_length_is_rejected_as_soon_as_the_length_is_known(prefix, connect):
    peer = connect()
    peer.protocol.dataReceived(prefix)
    csm_only = peer.written()
    # Len nibble 15 and three of the four extended-length bytes: not yet known.
    for byte in FOUR_GIB[:4]:
        peer.protocol.dataReceived(bytes([byte]))
        assert peer.written() == csm_only
        assert not peer.transport.disconnecting
    # The fourth extended-length byte completes the length: Abort at once, no body needed.
    peer.protocol.dataReceived(FOUR_GIB[4:5])
    abort = check_csm_then_abort(peer.written())
    assert "Max-Message-Size" in abort.diagnostic
    assert str(SERVER_MAX_MESSAGE_SIZE) in abort.diagnostic
    assert peer.transport.disconnecting


def test_frame_exactly_at_max_message_size_is_not_aborted(connect):
    """The boundary next to ``one-byte-over-mms``: a frame announcing exactly our limit is
    buffered, and answered once complete."""
    token = b"\x01"
    uri_path = option_bytes([(11, b"hello")])
    header = 6 + len(token)
    body_length = SERVER_MAX_MESSAGE_SIZE - header
    payload = b"p" * (body_length - len(uri_path) - 1)
    body = uri_path + b"\xff" + payload
    data = frame(0x01, token, body)
    assert len(data) == SERVER_MAX_MESSAGE_SIZE and data[0] >> 4 == 15
    peer = connect()
    peer.protocol.dataReceived(EMPTY_CSM + data[:100])
    assert not peer.transport.disconnecting
    peer.protocol.dataReceived(data[100:])
    messages, _ = decode_all(peer.written())
    assert [int(m.code) for m in messages] == [CSM, CONTENT]
    assert messages[1].token == token and messages[1].payload == HELLO_TEXT


# -- truncation by the peer closing -------------------------------------------------------


TRUNCATED_STREAMS = [
    ("len13-no-ext", EMPTY_CSM + b"\xd0", 1),
    ("len14-one-ext", EMPTY_CSM + b"\xe0\x01", 2),
    ("len15-three-ext", EMPTY_CSM + b"\xf0\x00\x00\x01", 4),
    ("len13-ext-no-code", EMPTY_CSM + b"\xd0\x05", 2),
    ("len13-half-body", EMPTY_CSM + b"\xd1\x05\x01\xaa" + b"x" * 9, 13),
    ("before-csm", b"\xd0", 1),
]


@pytest.mark.parametrize(
    "data, unread",
    [(d, n) for _, d, n in TRUNCATED_STREAMS],
    ids=[i for i, _, _ in TRUNCATED_STREAMS],
)
def test_peer_closing_inside_a_frame_is_logged(data, unread, connect, clock, factory):
    """A frame cut short by the peer closing: no Abort can reach it, but the server notes
    the partial frame, does not crash, cancels nothing it needs, and keeps serving."""
    with capturedLogs() as events:
        peer = connect()
        peer.protocol.dataReceived(data)
        messages, _ = decode_all(peer.written())
        assert [int(m.code) for m in messages] == [CSM], "wrote more than the CSM"
        assert not peer.transport.disconnecting
        peer.protocol.connectionLost(LOST)
        assert [int(m.code) for m in decode_all(peer.written())[0]] == [CSM]
        assert peer.protocol not in factory.connections
        assert not timers_of(clock, peer.protocol.channel)
    notes = [formatEvent(e) for e in events if "inside a frame" in formatEvent(e)]
    assert len(notes) == 1, [formatEvent(e) for e in events]
    assert f"({unread} bytes unread)" in notes[0]
    assert_no_errors_logged(events)
    assert_serves_hello(connect)


def test_peer_closing_between_frames_logs_no_partial_frame(connect):
    """Control for the test above: a close on a frame boundary is not reported as cut."""
    with capturedLogs() as events:
        peer = connect()
        peer.protocol.dataReceived(EMPTY_CSM + GET_HELLO)
        peer.protocol.connectionLost(LOST)
    assert not [e for e in events if "inside a frame" in formatEvent(e)]


# -- after the Abort ----------------------------------------------------------------------


def test_peer_that_never_closes_is_dropped_after_the_close_timeout(connect, clock):
    peer = connect()
    peer.protocol.dataReceived(bytes.fromhex("10e190"))
    check_csm_then_abort(peer.written())
    assert peer.transport.disconnecting and not peer.aborted
    clock.advance(DEFAULT_CLOSE_TIMEOUT - 0.01)
    assert not peer.aborted
    clock.advance(0.02)
    assert peer.aborted == [True]
    peer.protocol.connectionLost(LOST)
    assert not clock.getDelayedCalls()


@pytest.mark.parametrize(
    "bad",
    [frame(0x60), FOUR_GIB, bytes([0x09, 0x01]) + bytes(9)],
    ids=["code-3.00", "4gib", "tkl9"],
)
def test_good_request_and_bad_frame_in_one_write(bad, connect):
    """A valid GET, then a bad frame, then more, in one read: the Abort still goes out,
    last, and nothing after the bad frame is processed.  (The GET before it is dropped:
    the core has queued the Abort by the time the channel dispatches the request.)"""
    peer = connect()
    peer.protocol.dataReceived(
        EMPTY_CSM + get("hello", b"\x01") + bad + get("hello", b"\x02") + frame(PING)
    )
    messages, leftover = decode_all(peer.written())
    assert leftover == 0
    assert [int(m.code) for m in messages] == [CSM, ABORT], messages
    assert peer.transport.disconnecting


def test_good_request_then_bad_frame_in_two_writes(connect):
    """Control: when the GET arrives in an earlier read, it is answered before the Abort."""
    peer = connect()
    peer.protocol.dataReceived(EMPTY_CSM + get("hello", b"\x01"))
    peer.protocol.dataReceived(frame(0x60) + get("hello", b"\x02"))
    messages, leftover = decode_all(peer.written())
    assert leftover == 0
    assert [(int(m.code), m.token) for m in messages] == [
        (CSM, b""),
        (CONTENT, b"\x01"),
        (ABORT, b""),
    ]


def test_peer_abort_is_not_answered_with_an_abort(connect):
    """Control: an Abort from the peer (even before its CSM) closes without an Abort back."""
    peer = connect()
    peer.protocol.dataReceived(frame(ABORT, b"", b"\xffbye"))
    messages, _ = decode_all(peer.written())
    assert [int(m.code) for m in messages] == [CSM]
    assert peer.transport.disconnecting


# -- controls: things that look odd but are allowed ---------------------------------------


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"\x00\x00" + EMPTY_CSM, id="empty-before-csm"),
        pytest.param(frame(CSM, b"", option_bytes([(6, b"x")])), id="csm-unknown-elective-6"),
        pytest.param(
            frame(CSM, b"", option_bytes([(2, b"\x00\x00\x04\x00")])), id="csm-mms-padded"
        ),
        pytest.param(frame(CSM, b"\x01\x02"), id="csm-with-token"),
    ],
)
def test_allowed_openings_are_served(opening, connect):
    peer = connect()
    peer.protocol.dataReceived(opening + get("hello", b"\x0a"))
    messages, _ = decode_all(peer.written())
    assert [int(m.code) for m in messages] == [CSM, CONTENT], messages
    assert not peer.transport.disconnecting


# -- hostile but well-formed: the connection must survive ----------------------------------


@pytest.mark.parametrize(
    "option",
    [
        pytest.param((11, b"\xff"), id="uri-path"),
        pytest.param((3, b"\xc3\x28"), id="uri-host"),
        pytest.param((15, b"a=\xe2\x82"), id="uri-query"),
    ],
)
def test_uri_option_that_is_not_utf8_gets_an_error_response(option, connect):
    """A Uri-Host/Path/Query value that is not UTF-8 is the request's problem (4.xx), not
    a crash of the connection: the next request on it is still answered."""
    with capturedLogs() as events:
        peer = connect()
        bad = frame(0x01, b"\x01", option_bytes([option]))
        peer.protocol.dataReceived(EMPTY_CSM + bad + get("hello", b"\x02"))
    messages, leftover = decode_all(peer.written())
    assert leftover == 0
    assert [(int(m.code), m.token) for m in messages] == [
        (CSM, b""),
        (BAD_OPTION, b"\x01"),
        (CONTENT, b"\x02"),
    ], messages
    assert messages[1].payload.decode("utf-8")
    assert not peer.transport.disconnecting
    assert_no_errors_logged(events)


@pytest.mark.parametrize("requests", [1, 2, 3])
def test_peer_max_message_size_too_small_for_any_response(requests, connect):
    """A peer advertising Max-Message-Size 16 cannot receive "Hello, world!": the server
    aborts; requests pipelined behind the first (and a Custody Ping) must not crash it."""
    with capturedLogs() as events:
        peer = connect()
        csm16 = frame(CSM, b"", option_bytes([(2, b"\x10")]))
        custody_ping = frame(PING, b"", option_bytes([(2, b"")]))
        peer.protocol.dataReceived(csm16 + GET_HELLO * requests + custody_ping)
        abort = check_csm_then_abort(peer.written())
        assert "Max-Message-Size" in abort.diagnostic
        assert peer.transport.disconnecting
        assert_serves_hello(connect)
    assert_no_errors_logged(events)


def test_thousands_of_pipelined_requests_in_one_write(connect, clock):
    n = 5000
    tokens = [i.to_bytes(2, "big") for i in range(n)]
    peer = connect()
    peer.protocol.dataReceived(EMPTY_CSM + b"".join(get("hello", t) for t in tokens))
    clock.advance(0)  # one budget of them per reactor turn
    messages, leftover = decode_all(peer.written())
    assert leftover == 0
    check_server_csm(messages[0])
    responses = messages[1:]
    assert len(responses) == n
    assert all(int(m.code) == CONTENT and m.payload == HELLO_TEXT for m in responses)
    assert [m.token for m in responses] == tokens


def test_pings_are_answered_and_do_not_open_a_hole(connect):
    peer = connect()
    peer.protocol.dataReceived(EMPTY_CSM + frame(PING, b"\x09") * 3)
    messages, _ = decode_all(peer.written())
    assert [(int(m.code), m.token) for m in messages] == [(CSM, b"")] + [(PONG, b"\x09")] * 3


# -- random garbage -----------------------------------------------------------------------


def _feed_garbage(peer, data: bytes, rng: random.Random) -> None:
    i = 0
    while i < len(data):
        step = rng.randint(1, 64)
        peer.protocol.dataReceived(data[i : i + step])
        i += step


@pytest.mark.parametrize("after_csm", [False, True], ids=["first", "after-csm"])
def test_random_garbage(after_csm, connect, factory):
    """Random bytes in random splits, 300 seeds: never an exception, the output is always
    well-formed, and either there is exactly one Abort (last, with a diagnostic) and the
    transport is closing, or there is none and the connection is open (the garbage ends
    inside a frame, which the close then reports, or happened to be valid frames)."""
    outcomes = {"aborted": 0, "inside-frame": 0, "valid": 0}
    for seed in range(300):
        rng = random.Random(seed)
        garbage = rng.randbytes(rng.randint(1, 400))
        with capturedLogs() as events:
            peer = connect()
            _feed_garbage(peer, (EMPTY_CSM if after_csm else b"") + garbage, rng)
            messages, leftover = decode_all(peer.written())
            peer.protocol.connectionLost(LOST)
        assert leftover == 0, seed
        check_server_csm(messages[0])
        codes = [int(m.code) for m in messages]
        assert codes.count(CSM) == 1 and codes.count(ABORT) <= 1, (seed, messages)
        cut = [e for e in events if "inside a frame" in formatEvent(e)]
        if ABORT in codes:
            outcomes["aborted"] += 1
            assert codes[-1] == ABORT, (seed, messages)
            assert messages[-1].payload.decode("utf-8").strip()
            assert peer.transport.disconnecting, seed
            assert len(abort_log_lines(events)) == 1, seed
        else:
            outcomes["inside-frame" if cut else "valid"] += 1
            assert not peer.transport.disconnecting, seed
            assert not abort_log_lines(events), seed
        assert_no_errors_logged(events)
    assert_serves_hello(connect)
    assert len(factory.connections) == 1  # only the well-behaved one is left
    # Aborting is by far the common outcome, and the buffering one is exercised too.
    assert outcomes["aborted"] > 250 and outcomes["inside-frame"] > 0, outcomes
