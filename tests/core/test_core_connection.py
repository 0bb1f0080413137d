"""The RFC 8323 connection state machine (coaptcp.core.connection).

CSM first (draft-07 / RFC 8323 section 3.3), Empty messages (3.4), CSM options (5.3), Ping and
Pong (5.4), Release (5.5), Abort (5.6), message format errors (5.6), Max-Message-Size (5.3.1),
WebSockets (4.4).
"""

from __future__ import annotations

import re

import pytest

from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role, State
from coaptcp.core.errors import LocalProtocolError, MessageTooLarge
from coaptcp.core.events import (
    BASE_MAX_MESSAGE_SIZE,
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    PeerSettings,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)
from coaptcp.core.framing import (
    StreamDecoder,
    decode_ws_frame,
    encode_frame,
    encode_ws_frame,
    frame_size,
)
from coaptcp.core.message import Message
from coaptcp.core.options import Options

# -- helpers --------------------------------------------------------------------------------


def frame(code: int, token: bytes = b"", options: list | tuple = (), payload: bytes = b"") -> bytes:
    return encode_frame(Message(Code(code), token, Options(options), payload))


def csm(mms: int | bytes | None = None, bwt: bool = False, extra: list | tuple = ()) -> bytes:
    items: list = list(extra)
    if mms is not None:
        items.append((2, mms))
    if bwt:
        items.append((4, None))
    return frame(Code.CSM, options=items)


def sent(conn: Connection) -> list[Message]:
    """Decode everything the connection queued for sending (one message per frame)."""
    out = []
    for data in conn.data_to_send():
        if conn.websocket:
            out.append(decode_ws_frame(data, 1 << 30))
            continue
        decoder = StreamDecoder(1 << 30)
        decoder.feed(data)
        message = decoder.next_message()
        assert message is not None
        assert decoder.buffered == 0, "one frame per data_to_send() item"
        out.append(message)
    return out


def started(role: Role = Role.ACCEPTOR, **kwargs: object) -> Connection:
    conn = Connection(role, **kwargs)  # type: ignore[arg-type]
    conn.start()
    assert [m.code for m in sent(conn)] == [Code.CSM]
    return conn


def opened(
    role: Role = Role.ACCEPTOR, peer_csm: bytes | None = None, **kwargs: object
) -> Connection:
    conn = started(role, **kwargs)
    events = conn.receive_data(csm() if peer_csm is None else peer_csm)
    assert len(events) == 1 and isinstance(events[0], CsmReceived), events
    assert conn.state is State.OPEN
    return conn


def assert_aborted(
    conn: Connection, events: list, pattern: str, bad_csm_option: int | None = None
) -> Message:
    """The last event is ConnectionAborted and the last queued frame its Abort."""
    assert events, "expected a ConnectionAborted event"
    last = events[-1]
    assert isinstance(last, ConnectionAborted), events
    assert re.search(pattern, last.diagnostic), last.diagnostic
    assert last.bad_csm_option == bad_csm_option
    assert not any(isinstance(e, ConnectionAborted) for e in events[:-1])
    assert conn.state is State.CLOSED
    assert conn.closed
    out = sent(conn)
    assert out, "an Abort must be queued"
    abort = out[-1]
    assert abort.code is Code.ABORT
    assert abort.token == b""
    assert abort.payload == last.diagnostic.encode()
    if bad_csm_option is None:
        assert abort.options.get(2) is None
    else:
        assert abort.options.get_uint(2) == bad_csm_option
    return abort


# -- start and our CSM ----------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_start_queues_our_csm_first(role: Role) -> None:
    conn = Connection(role)
    assert conn.data_to_send() == []
    conn.start()
    out = sent(conn)
    assert len(out) == 1
    ours = out[0]
    assert ours.code is Code.CSM
    assert ours.token == b""
    assert ours.payload == b""
    assert ours.options.get_uint(2) == DEFAULT_MAX_MESSAGE_SIZE
    assert 4 not in ours.options  # no Block-Wise-Transfer by default
    assert ours.options.numbers() == [2]
    assert conn.state is State.AWAITING_CSM
    assert not conn.peer_csm_received


def test_start_advertises_block_wise_and_our_mms() -> None:
    conn = Connection(Role.INITIATOR, block_wise_transfer=True, max_message_size=4096 + 512)
    conn.start()
    (ours,) = sent(conn)
    assert ours.options.get_uint(2) == 4096 + 512
    assert ours.options.get(4) == b""  # present and empty
    assert ours.options.numbers() == [2, 4]


def test_start_twice_is_refused() -> None:
    conn = Connection(Role.INITIATOR)
    conn.start()
    with pytest.raises(LocalProtocolError, match="start"):
        conn.start()
    assert len(conn.data_to_send()) == 1


def test_our_csm_precedes_messages_sent_before_the_peer_csm() -> None:
    conn = Connection(Role.INITIATOR)
    conn.start()
    conn.send(Message(Code.GET, b"\x01", Options([(11, "x")])))
    assert [m.code for m in sent(conn)] == [Code.CSM, Code.GET]


@pytest.mark.parametrize("mms", [0, 1, 15])
def test_our_max_message_size_must_be_usable(mms: int) -> None:
    with pytest.raises(ValueError):
        Connection(Role.INITIATOR, max_message_size=mms)


def test_signaling_before_start_is_refused() -> None:
    conn = Connection(Role.INITIATOR)
    for call in (
        lambda: conn.send_ping(b"\x01"),
        lambda: conn.send_pong(b"\x01"),
        lambda: conn.send_release(),
        lambda: conn.send_csm(max_message_size=2000),
    ):
        with pytest.raises(LocalProtocolError, match="start"):
            call()
    assert conn.data_to_send() == []


def test_send_before_start_is_refused() -> None:
    # Our CSM MUST be the first message we send (RFC 8323 section 3.3); a request or
    # response queued before start() would precede it on the wire.
    conn = Connection(Role.INITIATOR)
    for message in (Message(Code.GET, b"\x01"), Message(Code.CONTENT, b"\x01")):
        with pytest.raises(LocalProtocolError, match="start"):
            conn.send(message)
    assert conn.data_to_send() == []
    conn.start()
    conn.send(Message(Code.GET, b"\x01"))
    assert [m.code for m in sent(conn)] == [Code.CSM, Code.GET]


def test_acceptor_waiting_for_the_initiator_csm_still_sends_its_csm_first() -> None:
    # The acceptor MAY wait for the initiator's CSM before sending its own (RFC 8323
    # section 3.3).  If a Ping arrives with that CSM, the automatic Pong must not precede
    # our CSM on the wire.
    conn = Connection(Role.ACCEPTOR)
    events = conn.receive_data(csm(mms=2000) + frame(Code.PING, b"\x42"))
    assert events == [CsmReceived(PeerSettings(2000, False), first=True)]
    conn.start()
    assert [(m.code, m.token) for m in sent(conn)] == [(Code.CSM, b""), (Code.PONG, b"\x42")]


# -- the peer's first message ---------------------------------------------------------------

NON_CSM_FIRST = [
    ("GET", frame(Code.GET, b"\x01", [(11, "a")]), "0.01"),
    ("Content", frame(Code.CONTENT, b"\x01", payload=b"x"), "2.05"),
    ("NotFound", frame(Code.NOT_FOUND, b"\x01"), "4.04"),
    ("Ping", frame(Code.PING, b"\x01"), "7.02"),
    ("Pong", frame(Code.PONG), "7.03"),
    ("Release", frame(Code.RELEASE), "7.04"),
    ("7.06", frame(0xE6), "7.06"),
]


@pytest.mark.parametrize(
    ("wire", "dotted"), [r[1:] for r in NON_CSM_FIRST], ids=[r[0] for r in NON_CSM_FIRST]
)
def test_first_message_not_csm_aborts(wire: bytes, dotted: str) -> None:
    conn = started()
    events = conn.receive_data(wire + frame(Code.GET, b"\x02"))
    assert len(events) == 1
    assert_aborted(conn, events, rf"expected a CSM.*{dotted}")


@pytest.mark.parametrize(
    ("wire", "dotted"), [r[1:] for r in NON_CSM_FIRST], ids=[r[0] for r in NON_CSM_FIRST]
)
def test_first_message_not_csm_aborts_websocket(wire: bytes, dotted: str) -> None:
    conn = started(websocket=True)
    decoder = StreamDecoder(1 << 20)
    decoder.feed(wire)
    message = decoder.next_message()
    assert message is not None
    events = conn.receive_ws_message(encode_ws_frame(message))
    abort = assert_aborted(conn, events, rf"expected a CSM.*{dotted}")
    assert abort.code is Code.ABORT


def test_lenient_mode_accepts_a_request_first_with_base_settings() -> None:
    conn = started(require_csm=False)
    events = conn.receive_data(frame(Code.GET, b"\x01", [(11, "a")]))
    assert events == [RequestReceived(Message(Code.GET, b"\x01", Options([(11, "a")])))]
    assert conn.state is State.OPEN
    assert conn.peer == PeerSettings()
    assert conn.peer.max_message_size == BASE_MAX_MESSAGE_SIZE == 1152
    assert conn.peer.block_wise_transfer is False
    assert conn.data_to_send() == []
    # A CSM arriving later is still taken into account, and is not "first".
    events = conn.receive_data(csm(mms=9000, bwt=True))
    assert events == [CsmReceived(PeerSettings(9000, True), first=False)]


def test_lenient_mode_still_answers_a_ping_first() -> None:
    conn = started(require_csm=False)
    assert conn.receive_data(frame(Code.PING, b"\x05")) == []
    assert sent(conn) == [Message(Code.PONG, b"\x05")]
    assert conn.state is State.OPEN


def test_first_csm_opens_and_reports_first() -> None:
    conn = started()
    events = conn.receive_data(csm(mms=2048, bwt=True))
    assert events == [CsmReceived(PeerSettings(2048, True), first=True)]
    assert conn.state is State.OPEN
    assert conn.peer_csm_received
    assert conn.peer.bert
    assert conn.data_to_send() == []


def test_option_less_csm_keeps_base_values() -> None:
    conn = started()
    events = conn.receive_data(csm())
    assert events == [CsmReceived(PeerSettings(1152, False), first=True)]


def test_csm_and_request_in_one_chunk() -> None:
    conn = started()
    events = conn.receive_data(csm(mms=5000) + frame(Code.GET, b"\x01"))
    assert events == [
        CsmReceived(PeerSettings(5000, False), first=True),
        RequestReceived(Message(Code.GET, b"\x01")),
    ]


# -- Empty messages -------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before-csm", "after-csm"])
def test_empty_messages_are_ignored(when: str) -> None:
    conn = started() if when == "before-csm" else opened()
    state = conn.state
    events = conn.receive_data(frame(Code.EMPTY) * 3)
    assert events == []
    assert conn.data_to_send() == []  # nothing sent back (no 4.05, no Pong, no Abort)
    assert conn.state is state
    # The connection still works afterwards.
    if when == "before-csm":
        assert isinstance(conn.receive_data(csm())[0], CsmReceived)
    assert conn.receive_data(frame(Code.GET, b"\x01")) == [
        RequestReceived(Message(Code.GET, b"\x01"))
    ]


def test_empty_message_over_websocket_is_ignored() -> None:
    conn = started(websocket=True)
    assert conn.receive_ws_message(encode_ws_frame(Message(Code.EMPTY))) == []
    assert conn.data_to_send() == []
    assert conn.state is State.AWAITING_CSM


# -- Ping / Pong ----------------------------------------------------------------------------

TOKENS = [b"", b"\x42", b"\x00", b"\x01\x02\x03\x04", b"\xff" * 8]


@pytest.mark.parametrize("token", TOKENS, ids=lambda t: t.hex() or "empty")
def test_ping_is_answered_with_pong_same_token(token: bytes) -> None:
    conn = opened()
    assert conn.receive_data(frame(Code.PING, token)) == []
    assert sent(conn) == [Message(Code.PONG, token)]


def test_draft_ping_vector_gets_draft_pong_vector() -> None:
    conn = opened()
    conn.receive_data(bytes.fromhex("01e242"))
    assert conn.data_to_send() == [bytes.fromhex("01e342")]


def test_ping_with_unknown_elective_option_is_answered() -> None:
    conn = opened()
    assert conn.receive_data(frame(Code.PING, b"\x07", [(4, b"x"), (100, b"")])) == []
    assert sent(conn) == [Message(Code.PONG, b"\x07")]


def test_ping_with_unknown_critical_option_aborts() -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.PING, b"\x07", [(3, b"")]))
    assert_aborted(conn, events, r"unknown critical option 3 in 7\.02")


@pytest.mark.parametrize("token", TOKENS, ids=lambda t: t.hex() or "empty")
def test_ping_with_custody_is_reported_not_answered(token: bytes) -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.PING, token, [(2, None)]))
    assert events == [PingReceived(token)]
    assert conn.data_to_send() == []
    conn.send_pong(token, custody=True)
    (pong,) = sent(conn)
    assert pong.code is Code.PONG
    assert pong.token == token
    assert pong.options.items == ((2, b""),)


def test_send_pong_without_custody() -> None:
    conn = opened()
    conn.send_pong(b"\x01")
    assert sent(conn) == [Message(Code.PONG, b"\x01")]


@pytest.mark.parametrize(
    ("options", "custody"),
    [((), False), ([(2, None)], True), ([(2, None), (8, b"x")], True), ([(8, b"")], False)],
)
@pytest.mark.parametrize("token", [b"", b"\x09\x08"])
def test_pong_is_reported(options: list, custody: bool, token: bytes) -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.PONG, token, options))
    assert events == [PongReceived(token, custody)]
    assert conn.data_to_send() == []


def test_send_ping_queues_ping() -> None:
    conn = opened()
    conn.send_ping(b"\x11")
    conn.send_ping(custody=True)
    assert sent(conn) == [
        Message(Code.PING, b"\x11"),
        Message(Code.PING, options=Options([(2, None)])),
    ]


# -- CSM options ----------------------------------------------------------------------------

# (id, CSM options, diagnostic pattern, Bad-CSM-Option)
BAD_CSMS = [
    ("critical-9", [(9, b"")], r"unknown critical option 9 in 7\.01", 9),
    ("critical-1", [(1, b"\x01")], r"unknown critical option 1", 1),
    ("critical-65535", [(65535, b"")], r"unknown critical option 65535", 65535),
    ("critical-9-with-valid", [(2, 2000), (4, None), (9, b"")], r"unknown critical option 9", 9),
    ("mms-5-bytes", [(2, b"\x00\x00\x00\x04\x80")], r"Max-Message-Size value of 5 bytes", 2),
    ("mms-8-bytes", [(2, b"\x01" * 8)], r"Max-Message-Size value of 8 bytes", 2),
    ("mms-0", [(2, 0)], r"Max-Message-Size 0 is too small", 2),
    ("mms-0-explicit-zero-byte", [(2, b"\x00")], r"Max-Message-Size 0 is too small", 2),
    ("mms-15", [(2, 15)], r"Max-Message-Size 15 is too small", 2),
    ("bwt-with-value", [(4, b"\x01")], r"Block-Wise-Transfer must be empty", 4),
    ("bwt-with-zero-byte", [(4, b"\x00")], r"Block-Wise-Transfer must be empty", 4),
]


@pytest.mark.parametrize(
    ("options", "pattern", "bad"), [r[1:] for r in BAD_CSMS], ids=[r[0] for r in BAD_CSMS]
)
@pytest.mark.parametrize("which", ["first", "later"])
def test_bad_csm_aborts_with_bad_csm_option(
    options: list, pattern: str, bad: int, which: str
) -> None:
    conn = started() if which == "first" else opened()
    peer_before = conn.peer
    events = conn.receive_data(frame(Code.CSM, options=options) + frame(Code.GET, b"\x01"))
    assert len(events) == 1
    assert_aborted(conn, events, pattern, bad_csm_option=bad)
    assert conn.peer == peer_before  # the bad CSM changed nothing


@pytest.mark.parametrize("number", [6, 8, 10, 100, 65534])
def test_unknown_elective_csm_option_is_ignored(number: int) -> None:
    conn = started()
    events = conn.receive_data(frame(Code.CSM, options=[(2, 3000), (number, b"\x01\x02")]))
    assert events == [CsmReceived(PeerSettings(3000, False), first=True)]
    assert conn.data_to_send() == []


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"\x00\x10", 16), (b"\x04\x80", 1152), (b"\x00\x00\x04\x80", 1152), (b"\xff" * 4, 2**32 - 1)],
)
def test_mms_values_accepted(raw: bytes, value: int) -> None:
    conn = started()
    assert conn.receive_data(csm(mms=raw)) == [CsmReceived(PeerSettings(value, False), first=True)]


def test_duplicate_mms_uses_the_first() -> None:
    conn = started()
    events = conn.receive_data(frame(Code.CSM, options=[(2, 4000), (2, 100), (2, 50000)]))
    assert events == [CsmReceived(PeerSettings(4000, False), first=True)]
    assert conn.peer.max_message_size == 4000


def test_later_csms_are_cumulative() -> None:
    conn = started()
    assert conn.receive_data(csm(mms=2000)) == [CsmReceived(PeerSettings(2000, False), True)]
    # A CSM with only BWT keeps the earlier MMS.
    assert conn.receive_data(csm(bwt=True)) == [CsmReceived(PeerSettings(2000, True), False)]
    assert conn.peer.bert
    # An option-less CSM is a no-op.
    assert conn.receive_data(csm()) == [CsmReceived(PeerSettings(2000, True), False)]
    # A later MMS <= 1152 keeps BWT but ends BERT.
    assert conn.receive_data(csm(mms=1152)) == [CsmReceived(PeerSettings(1152, True), False)]
    assert not conn.peer.bert
    assert conn.peer.block_wise_transfer
    assert conn.state is State.OPEN
    assert conn.data_to_send() == []


@pytest.mark.parametrize(
    ("mms", "bwt", "bert"),
    [(1152, True, False), (1153, True, True), (100000, False, False), (100000, True, True)],
)
def test_bert_flag(mms: int, bwt: bool, bert: bool) -> None:
    assert PeerSettings(mms, bwt).bert is bert


@pytest.mark.parametrize("mms", [0, 15])
def test_send_csm_refuses_an_unusable_limit(mms: int) -> None:
    # The constructor refuses these; a later CSM must not advertise them either (the
    # peer would abort with Bad-CSM-Option, and we could not receive anything).
    conn = opened()
    with pytest.raises(ValueError):
        conn.send_csm(max_message_size=mms)
    assert conn.data_to_send() == []
    assert conn.max_message_size == DEFAULT_MAX_MESSAGE_SIZE
    assert conn.receive_data(frame(Code.GET, b"\x01")) == [
        RequestReceived(Message(Code.GET, b"\x01"))
    ]


def test_send_csm_updates_our_limit() -> None:
    conn = opened()
    conn.send_csm(max_message_size=2000, block_wise_transfer=True)
    (ours,) = sent(conn)
    assert ours.code is Code.CSM
    assert ours.options.get_uint(2) == 2000
    assert ours.options.get(4) == b""
    # Incoming frames are now held to the new limit.
    events = conn.receive_data(frame(Code.POST, b"\x01", payload=b"x" * 2000))
    assert_aborted(conn, events, r"exceeds our Max-Message-Size of 2000")


# -- Release --------------------------------------------------------------------------------


def test_release_received() -> None:
    conn = opened()
    release = frame(
        Code.RELEASE,
        options=[(2, "alt.example:5683"), (2, "[2001:db8::1]:5683"), (4, 30)],
        payload=b"going away",
    )
    events = conn.receive_data(release)
    assert events == [ReleaseReceived(("alt.example:5683", "[2001:db8::1]:5683"), 30, "going away")]
    assert conn.state is State.CLOSING
    assert conn.release_received
    assert conn.data_to_send() == []
    # Requests (and responses) that follow are still delivered.
    events = conn.receive_data(frame(Code.GET, b"\x01") + frame(Code.CONTENT, b"\x02"))
    assert events == [
        RequestReceived(Message(Code.GET, b"\x01")),
        ResponseReceived(Message(Code.CONTENT, b"\x02")),
    ]
    # We may still answer them.
    conn.send(Message(Code.CONTENT, b"\x01", payload=b"answer"))
    assert sent(conn) == [Message(Code.CONTENT, b"\x01", payload=b"answer")]


def test_release_without_options() -> None:
    conn = opened()
    assert conn.receive_data(frame(Code.RELEASE)) == [ReleaseReceived((), None, "")]
    assert conn.state is State.CLOSING


def test_release_with_hold_off_zero_and_bad_utf8_diagnostic() -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.RELEASE, options=[(4, 0)], payload=b"bad \xff utf8"))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ReleaseReceived)
    assert event.hold_off == 0
    assert event.diagnostic.startswith("bad ")


def test_release_with_unknown_critical_option_aborts() -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.RELEASE, options=[(5, b"")]))
    assert_aborted(conn, events, r"unknown critical option 5 in 7\.04")


def test_send_release_then_no_new_requests() -> None:
    conn = opened()
    conn.send_release("maintenance", alternative_addresses=["other:5683"], hold_off=60)
    (release,) = sent(conn)
    assert release.code is Code.RELEASE
    assert release.options.get_all(2) == (b"other:5683",)
    assert release.options.get_uint(4) == 60
    assert release.payload == b"maintenance"
    assert conn.state is State.CLOSING
    assert conn.release_sent
    with pytest.raises(LocalProtocolError, match="Release"):
        conn.send(Message(Code.GET, b"\x01"))
    # Responses to earlier requests are still allowed.
    conn.send(Message(Code.CONTENT, b"\x09"))
    assert sent(conn) == [Message(Code.CONTENT, b"\x09")]
    # And incoming responses still arrive.
    assert conn.receive_data(frame(Code.CONTENT, b"\x03")) == [
        ResponseReceived(Message(Code.CONTENT, b"\x03"))
    ]


def test_release_sent_before_the_peer_csm_still_requires_the_csm() -> None:
    # Sending Release early (e.g. shutting down right after connecting) must not waive the
    # rule that the peer's first message is a CSM (RFC 8323 section 3.3).
    conn = started(Role.INITIATOR)
    conn.send_release("shutting down")
    assert [m.code for m in sent(conn)] == [Code.RELEASE]
    assert not conn.peer_csm_received
    events = conn.receive_data(frame(Code.CONTENT, b"\x01"))
    assert_aborted(conn, events, r"expected a CSM.*2\.05")


def test_peer_csm_after_our_early_release_is_its_first() -> None:
    conn = started(Role.INITIATOR)
    conn.send_release()
    conn.data_to_send()
    events = conn.receive_data(csm(mms=3000) + frame(Code.CONTENT, b"\x01"))
    assert events == [
        CsmReceived(PeerSettings(3000, False), first=True),
        ResponseReceived(Message(Code.CONTENT, b"\x01")),
    ]
    assert conn.peer_csm_received
    assert conn.state is State.CLOSING  # not reopened by the CSM
    with pytest.raises(LocalProtocolError, match="Release"):
        conn.send(Message(Code.GET, b"\x02"))


def test_lenient_peer_after_our_early_release_stays_closing() -> None:
    conn = started(Role.INITIATOR, require_csm=False)
    conn.send_release()
    events = conn.receive_data(frame(Code.CONTENT, b"\x01"))
    assert events == [ResponseReceived(Message(Code.CONTENT, b"\x01"))]
    assert conn.state is State.CLOSING


# -- Abort ----------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before-csm", "after-csm", "closing"])
def test_abort_received(when: str) -> None:
    conn = started() if when == "before-csm" else opened()
    if when == "closing":
        conn.receive_data(frame(Code.RELEASE))
    events = conn.receive_data(
        frame(Code.ABORT, options=[(2, 2)], payload=b"bad MMS") + frame(Code.GET, b"\x01")
    )
    assert events == [AbortReceived(2, "bad MMS")]
    assert conn.state is State.CLOSED
    assert conn.data_to_send() == []  # never answered with an Abort
    # Later data is ignored.
    assert conn.receive_data(frame(Code.GET, b"\x02")) == []
    assert conn.receive_data(b"\x0f garbage that would be a format error") == []
    assert conn.data_to_send() == []


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ((), None),
        ([(2, 0)], 0),
        ([(2, 65535)], 65535),
        ([(9, b"")], None),
        ([(2, 9), (3, b"x")], 9),
    ],
)
def test_abort_is_never_answered_whatever_its_options(options: list, bad: int | None) -> None:
    conn = opened()
    events = conn.receive_data(frame(Code.ABORT, options=options))
    assert events == [AbortReceived(bad, "")]
    assert conn.data_to_send() == []
    assert conn.closed


def test_send_abort() -> None:
    conn = opened()
    conn.send_abort("bye", bad_csm_option=4)
    (abort,) = sent(conn)
    assert abort == Message(Code.ABORT, options=Options([(2, 4)]), payload=b"bye")
    assert conn.closed
    conn.send_abort("again")  # a second abort is a no-op
    assert conn.data_to_send() == []


# -- unknown signaling codes ----------------------------------------------------------------


@pytest.mark.parametrize("code", [0xE0, 0xE6, 0xEF, 0xFF])
def test_unknown_signaling_code(code: int) -> None:
    conn = opened()
    wire = frame(code, b"\x01", [(2, b"x"), (3, b"")], b"diag")
    events = conn.receive_data(wire)
    assert events == [
        UnknownSignalReceived(Message(Code(code), b"\x01", Options([(2, b"x"), (3, b"")]), b"diag"))
    ]
    assert conn.state is State.OPEN
    assert conn.data_to_send() == []


# -- requests and responses -----------------------------------------------------------------


def test_requests_and_responses_are_delivered() -> None:
    conn = opened()
    messages = [
        Message(Code.GET, b"\x01", Options([(11, "a")])),
        Message(Code.CONTENT, b"\x02", Options([(12, 0)]), b"hello"),
        Message(Code.NOT_FOUND, b"\x03"),
        Message(Code.INTERNAL_SERVER_ERROR, b""),
        Message(Code.IPATCH, b"\x04", payload=b"x"),
        Message(Code(0x46), b"\x05"),  # unknown 2.06 is still a response
        Message(Code(0x08), b"\x06"),  # unknown 0.08 is still a request
    ]
    events = conn.receive_data(b"".join(encode_frame(m) for m in messages))
    expected = [RequestReceived(m) if m.code.is_request else ResponseReceived(m) for m in messages]
    assert events == expected


# -- send() ---------------------------------------------------------------------------------


def payload_for_frame_size(target: int, token: bytes = b"") -> bytes:
    """A payload making a Content frame exactly ``target`` bytes long (target >= 274)."""
    for body in range(target, 0, -1):
        if frame_size(body, len(token)) == target:
            return b"p" * (body - 1)
    raise AssertionError(target)


@pytest.mark.parametrize("websocket", [False, True])
def test_send_respects_base_mms_before_peer_csm(websocket: bool) -> None:
    conn = started(websocket=websocket)
    limit = 1152
    if websocket:
        exact = Message(Code.CONTENT, b"\x01", payload=b"p" * (limit - 4))  # 2 + 1 + 1 + n
    else:
        exact = Message(Code.CONTENT, b"\x01", payload=payload_for_frame_size(limit, b"\x01"))
    assert conn.encoded_size(exact) == limit
    conn.send(exact)
    assert sent(conn) == [exact]
    bigger = exact.replace(payload=exact.payload + b"p")
    assert conn.encoded_size(bigger) == limit + 1
    with pytest.raises(MessageTooLarge) as info:
        conn.send(bigger)
    assert info.value.size == limit + 1
    assert info.value.limit == limit
    assert isinstance(info.value, LocalProtocolError)
    assert conn.data_to_send() == []
    assert conn.state is State.AWAITING_CSM


@pytest.mark.parametrize("limit", [16, 300, 1000, 2000, 70000])
def test_send_respects_peer_mms_after_csm(limit: int) -> None:
    conn = opened(peer_csm=csm(mms=limit))
    assert conn.peer.max_message_size == limit
    if limit >= 274:
        exact = Message(Code.CONTENT, payload=payload_for_frame_size(limit))
    else:
        exact = Message(
            Code.CONTENT, payload=b"p" * (limit - 2 - 1 - (1 if limit - 2 >= 13 else 0))
        )
    assert conn.encoded_size(exact) == limit
    conn.send(exact)
    assert sent(conn) == [exact]
    bigger = exact.replace(payload=exact.payload + b"p")
    with pytest.raises(MessageTooLarge) as info:
        conn.send(bigger)
    assert info.value.limit == limit
    assert info.value.size == conn.encoded_size(bigger) > limit
    assert conn.data_to_send() == []


@pytest.mark.parametrize("code", [0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xFF])
def test_send_refuses_signaling_codes(code: int) -> None:
    conn = opened()
    with pytest.raises(LocalProtocolError, match="signaling"):
        conn.send(Message(Code(code)))
    assert conn.data_to_send() == []


@pytest.mark.parametrize("how", ["send_abort", "peer_abort", "protocol_error", "connection_lost"])
def test_send_after_close_is_refused(how: str) -> None:
    conn = opened()
    if how == "send_abort":
        conn.send_abort("x")
    elif how == "peer_abort":
        conn.receive_data(frame(Code.ABORT))
    elif how == "protocol_error":
        conn.receive_data(b"\x0f")
    else:
        assert conn.connection_lost() is None
    conn.data_to_send()
    assert conn.closed
    for call in (
        lambda: conn.send(Message(Code.CONTENT, b"\x01")),
        lambda: conn.send(Message(Code.GET, b"\x01")),
        lambda: conn.send_ping(),
        lambda: conn.send_pong(b""),
        lambda: conn.send_release(),
        lambda: conn.send_csm(),
    ):
        with pytest.raises(LocalProtocolError, match="closed"):
            call()
    assert conn.data_to_send() == []


# -- format errors inside a chunk -----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (b"\x09\x01" + b"t" * 9, r"token length 9"),
        (b"\x10\x21\xf0", r"code 1\.01 is in a reserved class"),
        (b"\x10\x01\xb2", r"option 11 value of 2 bytes runs past"),
        (b"\x10\x45\xff", r"payload marker"),
        (b"\x10\x01\xf0", r"reserved option delta 15"),
        (b"\x10\x01\x1f", r"reserved option length 15"),
        (bytes([0xF0, 0xFF, 0xFF, 0xFF, 0xFF]), r"exceeds our Max-Message-Size"),
    ],
)
def test_messages_before_a_format_error_are_delivered(bad: bytes, pattern: str) -> None:
    conn = started()
    good_request = Message(Code.GET, b"\x01", Options([(11, "a")]))
    good_response = Message(Code.CONTENT, b"\x02", payload=b"ok")
    after = frame(Code.GET, b"\x03")
    chunk = csm(mms=5000) + encode_frame(good_request) + encode_frame(good_response) + bad + after
    events = conn.receive_data(chunk)
    assert events[:3] == [
        CsmReceived(PeerSettings(5000, False), first=True),
        RequestReceived(good_request),
        ResponseReceived(good_response),
    ]
    assert len(events) == 4
    assert_aborted(conn, events, pattern)
    # Receiving more afterwards does nothing at all.
    assert conn.receive_data(after) == []
    assert conn.receive_data(b"\x0f\x0f") == []
    assert conn.data_to_send() == []


def test_format_error_split_across_chunks() -> None:
    conn = opened()
    assert conn.receive_data(frame(Code.GET, b"\x01")[:1]) == []
    events = conn.receive_data(frame(Code.GET, b"\x01")[1:] + b"\x0d")
    assert events[0] == RequestReceived(Message(Code.GET, b"\x01"))
    assert_aborted(conn, events, r"token length 13")


def test_oversized_announcement_aborts_from_the_header() -> None:
    conn = opened(max_message_size=1024)
    events = conn.receive_data(bytes([0xE0]) + (1024 - 269 - 3).to_bytes(2, "big"))  # total 1025
    assert_aborted(conn, events, r"message of 1025 bytes exceeds our Max-Message-Size of 1024")


def test_abort_for_violation() -> None:
    conn = opened()
    events = conn.abort_for_violation("text frame received")
    assert_aborted(conn, events, r"^text frame received$")
    assert conn.abort_for_violation("again") == []
    assert conn.data_to_send() == []


# -- connection_lost ------------------------------------------------------------------------


def test_connection_lost_clean() -> None:
    conn = opened()
    conn.receive_data(frame(Code.GET, b"\x01"))
    assert conn.connection_lost() is None
    assert conn.closed
    assert conn.receive_data(frame(Code.GET, b"\x02")) == []


@pytest.mark.parametrize("cut", [1, 2, 5, 20])
def test_connection_lost_reports_a_cut_frame(cut: int) -> None:
    conn = opened()
    wire = frame(Code.POST, b"\x01", [(11, "x")], b"y" * 100)
    assert conn.receive_data(wire[:cut]) == []
    note = conn.connection_lost()
    assert note is not None
    assert "inside a frame" in note
    assert f"{cut} bytes" in note
    assert conn.closed


# -- WebSockets -----------------------------------------------------------------------------


def test_websocket_mode_end_to_end() -> None:
    conn = Connection(Role.INITIATOR, websocket=True, block_wise_transfer=True)
    conn.start()
    (raw_csm,) = conn.data_to_send()
    assert raw_csm[0] >> 4 == 0  # Len = 0
    ours = decode_ws_frame(raw_csm, 1 << 20)
    assert ours.code is Code.CSM
    assert ours.options.get_uint(2) == DEFAULT_MAX_MESSAGE_SIZE
    assert ours.options.get(4) == b""

    peer_csm = encode_ws_frame(Message(Code.CSM, options=Options([(2, 3000)])))
    assert conn.receive_ws_message(peer_csm) == [CsmReceived(PeerSettings(3000, False), True)]

    assert conn.receive_ws_message(encode_ws_frame(Message(Code.PING, b"\x42"))) == []
    out = conn.data_to_send()
    assert out == [bytes.fromhex("01e342")]

    big = Message(Code.POST, b"\x01\x02", Options([(11, "fw")]), b"b" * 500)
    conn.send(big)
    (wire,) = conn.data_to_send()
    assert wire[0] == 2  # Len 0, TKL 2, even though the body is > 12 bytes
    assert decode_ws_frame(wire, 1 << 20) == big

    request = Message(Code.GET, b"\x07", Options([(11, "x")]))
    assert conn.receive_ws_message(encode_ws_frame(request)) == [RequestReceived(request)]


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (bytes([0x10, Code.GET, 0x00]), r"Len is 1"),  # a stream frame sent over WS
        (bytes([0x09, Code.GET]) + b"t" * 9, r"token length 9"),
        (bytes([0x04, Code.GET, 1, 2]), r"token"),
        (b"\x00", r"shorter"),
        (bytes([0x00, 0x60]), r"reserved"),
    ],
)
def test_websocket_format_errors_abort(data: bytes, pattern: str) -> None:
    conn = started(websocket=True)
    assert conn.receive_ws_message(encode_ws_frame(Message(Code.CSM)))[0] == CsmReceived(
        PeerSettings(), True
    )
    events = conn.receive_ws_message(data)
    abort = assert_aborted(conn, events, pattern)
    assert abort.code is Code.ABORT
    assert conn.receive_ws_message(encode_ws_frame(Message(Code.GET))) == []


def test_websocket_too_large_message_aborts() -> None:
    conn = started(websocket=True, max_message_size=100)
    conn.receive_ws_message(encode_ws_frame(Message(Code.CSM)))
    ok = Message(Code.POST, payload=b"x" * 97)  # 2 + 1 + 97 = 100
    assert conn.receive_ws_message(encode_ws_frame(ok)) == [RequestReceived(ok)]
    events = conn.receive_ws_message(encode_ws_frame(ok.replace(payload=b"x" * 98)))
    assert_aborted(conn, events, r"message of 101 bytes exceeds our Max-Message-Size of 100")


@pytest.mark.parametrize(
    "chunk",
    [
        frame(Code.ABORT, payload=b"bye") + frame(Code.GET, b"\x01"),  # data after their Abort
        b"\x0d\x01",  # our Abort for a reserved TKL; the bad frame stays unread
    ],
    ids=["peer-abort", "format-error"],
)
def test_connection_lost_after_an_abort_reports_no_cut_frame(chunk: bytes) -> None:
    conn = opened()
    conn.receive_data(chunk)
    assert conn.closed
    assert conn.connection_lost() is None


# -- WebSocket messages one after the other ---------------------------------------------------


def ws_message(code: int, token: bytes = b"", options: list | tuple = ()) -> bytes:
    return encode_ws_frame(Message(Code(code), token, Options(options)))


def test_ws_messages_give_their_events_in_order() -> None:
    conn = started(websocket=True)
    events = [
        event
        for data in (
            ws_message(Code.CSM),
            ws_message(Code.GET, b"a", [(11, "x")]),
            ws_message(Code.PING, b"p"),
            ws_message(Code.POST, b"b"),
            ws_message(Code.CONTENT, b"c"),
        )
        for event in conn.receive_ws_message(data)
    ]
    assert [type(e) for e in events] == [
        CsmReceived,
        RequestReceived,
        RequestReceived,
        ResponseReceived,
    ]
    assert [e.message.token for e in events[1:]] == [b"a", b"b", b"c"]  # type: ignore[attr-defined]
    assert events[1] == RequestReceived(Message(Code.GET, b"a", Options([(11, "x")])))
    assert [(m.code, m.token) for m in sent(conn)] == [(Code.PONG, b"p")]  # answered at once


def test_ws_messages_after_an_abort_are_ignored() -> None:
    conn = started(websocket=True)
    assert [type(e) for e in conn.receive_ws_message(ws_message(Code.CSM))] == [CsmReceived]
    assert [type(e) for e in conn.receive_ws_message(ws_message(Code.GET, b"a"))] == [
        RequestReceived
    ]
    events = conn.receive_ws_message(bytes([0x10, 0x01]))  # Len must be 0 over WebSockets
    assert_aborted(conn, events, "Len is 1")
    assert conn.receive_ws_message(ws_message(Code.GET, b"b")) == []


def test_a_ws_request_before_the_csm_aborts() -> None:
    conn = started(websocket=True)
    events = conn.receive_ws_message(ws_message(Code.GET, b"a"))
    assert_aborted(conn, events, "expected a CSM")
