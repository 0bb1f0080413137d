"""Property tests: round trips through the encoders and decoders, and robustness on garbage.

- encode_frame -> StreamDecoder fed in random chunks gives the messages back;
- encode_ws_frame -> decode_ws_frame gives the message back;
- random bytes in random chunks through StreamDecoder only give Message / None /
  MessageFormatError;
- random bytes (and half-valid frames) through Connection.receive_data or
  receive_ws_message only give events, ending in at most one ConnectionAborted with the
  matching Abort queued; never another exception.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coaptcp.core.codes import Code
from coaptcp.core.connection import Connection, Role, State
from coaptcp.core.errors import MessageFormatError
from coaptcp.core.events import (
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)
from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG = 1 << 30

VALID_CODE_BYTES = [b for b in range(256) if b >> 5 in (0, 2, 4, 5, 7)]

codes = st.sampled_from(VALID_CODE_BYTES).map(Code)
tokens = st.binary(min_size=0, max_size=8)
option_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=65535), st.binary(min_size=0, max_size=300)),
    max_size=8,
)


def _repeat(pair: tuple[bytes, int]) -> bytes:
    pattern, size = pair
    return (pattern * (size // len(pattern) + 1))[:size]


# Large payloads are built from a short random pattern (cheap to generate) and straddle the
# Len=14 / Len=15 boundary (a body of 65804 / 65805 bytes).
payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=600),
    st.tuples(st.binary(min_size=1, max_size=16), st.integers(65_000, 67_000)).map(_repeat),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(draw(codes), draw(tokens), Options(draw(option_lists)), draw(payloads))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    start = 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@SETTINGS
@given(
    st.lists(messages(), min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=30)
)
def test_stream_round_trip(batch: list[Message], cuts: list[int]) -> None:
    frames = [encode_frame(m) for m in batch]
    for wire in frames:
        event(f"Len nibble {wire[0] >> 4}")
    decoder = StreamDecoder(BIG)
    out: list[Message] = []
    for piece in split(b"".join(frames), cuts):
        decoder.feed(piece)
        while (message := decoder.next_message()) is not None:
            out.append(message)
    assert out == batch
    assert decoder.buffered == 0
    # Canonical: re-encoding what we decoded gives the same bytes.
    assert [encode_frame(m) for m in out] == frames


@SETTINGS
@given(messages())
def test_ws_round_trip(message: Message) -> None:
    wire = encode_ws_frame(message)
    assert wire[0] >> 4 == 0
    assert wire[0] & 0xF == len(message.token)
    decoded = decode_ws_frame(wire, len(wire))
    assert decoded == message
    assert encode_ws_frame(decoded) == wire
    # Same body as on a stream.
    stream = encode_frame(message)
    body = wire[2 + len(message.token) :]
    assert stream.endswith(body)


@SETTINGS
@given(
    st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=20), st.integers(16, 2000)
)
def test_stream_decoder_on_random_bytes(data: bytes, cuts: list[int], mms: int) -> None:
    decoder = StreamDecoder(mms)
    try:
        for piece in split(data, cuts):
            decoder.feed(piece)
            while True:
                message = decoder.next_message()
                if message is None:
                    break
                assert isinstance(message, Message)
                assert len(message.token) <= 8
                assert not message.code.is_reserved
    except MessageFormatError as error:
        assert error.diagnostic
    else:
        assert 0 <= decoder.buffered <= len(data)


# -- Connection fuzzing ---------------------------------------------------------------------

ALLOWED_EVENTS = (
    RequestReceived,
    ResponseReceived,
    CsmReceived,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    AbortReceived,
    ConnectionAborted,
    UnknownSignalReceived,
)

signaling_options = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([1, 2, 3, 4, 6, 8, 9]), st.integers(min_value=0, max_value=70)),
        st.one_of(st.just(b""), st.binary(max_size=6)),
    ),
    max_size=4,
)


@st.composite
def half_valid_frames(draw: st.DrawFn, websocket: bool = False) -> bytes:
    """Mostly well-framed messages with interesting codes and options; sometimes garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    code = draw(
        st.one_of(
            st.sampled_from([0x00, 0x01, 0x45, 0x84, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6]),
            st.sampled_from(VALID_CODE_BYTES),
        )
    )
    message = Message(
        Code(code), draw(tokens), Options(draw(signaling_options)), draw(st.binary(max_size=20))
    )
    return encode_ws_frame(message) if websocket else encode_frame(message)


def peer_csm(draw: st.DrawFn, websocket: bool) -> list[bytes]:
    if not draw(st.booleans()):
        return []
    items = [(2, draw(st.integers(0, 5000)))] if draw(st.booleans()) else []
    message = Message(Code.CSM, options=Options(items))
    return [encode_ws_frame(message) if websocket else encode_frame(message)]


@st.composite
def fuzz_streams(draw: st.DrawFn) -> bytes:
    return b"".join(peer_csm(draw, False) + draw(st.lists(half_valid_frames(), max_size=8)))


@st.composite
def fuzz_ws_messages(draw: st.DrawFn) -> list[bytes]:
    return peer_csm(draw, True) + draw(st.lists(half_valid_frames(websocket=True), max_size=8))


def check_connection_outcome(conn: Connection, events: list, out: list[bytes]) -> None:
    for item in events:
        assert isinstance(item, ALLOWED_EVENTS), item
        event(type(item).__name__)  # shown by --hypothesis-show-statistics
    aborted = [i for i, e in enumerate(events) if isinstance(e, ConnectionAborted)]
    received_abort = [i for i, e in enumerate(events) if isinstance(e, AbortReceived)]
    assert len(aborted) + len(received_abort) <= 1
    if aborted or received_abort:
        assert (aborted + received_abort)[0] == len(events) - 1, "nothing may follow an abort"
        assert conn.state is State.CLOSED
    sent = [_decode_one(conn, data) for data in out]
    if aborted:
        last = events[-1]
        assert sent, "ConnectionAborted without an Abort frame"
        abort = sent.pop()
        assert abort.code is Code.ABORT
        assert abort.payload == last.diagnostic.encode()
        assert abort.options.get_uint(2) == last.bad_csm_option
    # Apart from that Abort, the core only ever sends Pongs on its own.
    assert all(m.code is Code.PONG for m in sent), sent
    if received_abort:
        assert not any(m.code is Code.ABORT for m in sent), "an Abort must never be answered"


def _decode_one(conn: Connection, data: bytes) -> Message:
    if conn.websocket:
        return decode_ws_frame(data, BIG)
    decoder = StreamDecoder(BIG)
    decoder.feed(data)
    message = decoder.next_message()
    assert message is not None
    assert decoder.buffered == 0
    return message


@SETTINGS
@given(
    st.one_of(st.binary(max_size=300), fuzz_streams()),
    st.lists(st.integers(min_value=0), max_size=20),
    st.booleans(),
    st.booleans(),
)
def test_connection_random_bytes_only_give_events(
    data: bytes, cuts: list[int], require_csm: bool, start_late: bool
) -> None:
    # start_late: an acceptor that waits for the initiator's CSM before sending its own.
    conn = Connection(Role.ACCEPTOR, require_csm=require_csm, max_message_size=1024)
    if not start_late:
        conn.start()
        assert [_decode_one(conn, d).code for d in conn.data_to_send()] == [Code.CSM]
    events: list = []
    for piece in split(data, cuts):
        events.extend(conn.receive_data(piece))
        if conn.state is State.CLOSED:
            # Once closed, nothing more comes out.
            assert conn.receive_data(b"\x00\xe2" + piece) == []
            break
    if start_late:
        # Whatever was queued meanwhile (Pongs, an Abort), our CSM goes out first.
        conn.start()
        out = conn.data_to_send()
        first = _decode_one(conn, out.pop(0))
        assert first.code is Code.CSM, "our CSM must be the first message we send"
    else:
        out = conn.data_to_send()
    check_connection_outcome(conn, events, out)


@SETTINGS
@given(st.one_of(st.lists(st.binary(max_size=60), max_size=4), fuzz_ws_messages()), st.booleans())
def test_connection_random_ws_messages_only_give_events(
    datas: list[bytes], require_csm: bool
) -> None:
    conn = Connection(Role.ACCEPTOR, websocket=True, require_csm=require_csm, max_message_size=1024)
    conn.start()
    conn.data_to_send()
    events: list = []
    for data in datas:
        events.extend(conn.receive_ws_message(data))
        if conn.state is State.CLOSED:
            assert conn.receive_ws_message(b"\x00\xe2") == []
            break
    check_connection_outcome(conn, events, conn.data_to_send())
