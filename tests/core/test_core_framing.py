"""Framing: draft vectors, Len-field boundaries, option encoding boundaries, WebSocket frames.

draft-ietf-core-coap-tcp-tls-07 sections 3.2 and 4.2 (figures fig-frame2, fig-ping-example,
fig-pong-example), RFC 7252 section 3.1 for the option delta/length nibbles.
"""

from __future__ import annotations

import pytest

from coaptcp.core.codes import Code
from coaptcp.core.errors import LocalProtocolError, MessageFormatError
from coaptcp.core.framing import (
    MAX_OPTION_NUMBER,
    StreamDecoder,
    decode_options,
    decode_ws_frame,
    encode_frame,
    encode_options,
    encode_ws_frame,
    frame_size,
)
from coaptcp.core.message import Message
from coaptcp.core.options import Options

BIG = 1 << 24  # a Max-Message-Size that never gets in the way


def decode_whole(data: bytes, mms: int = BIG) -> list[Message]:
    decoder = StreamDecoder(mms)
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    assert decoder.buffered == 0
    return out


# -- draft vectors --------------------------------------------------------------------------

DRAFT_VECTORS = [
    # fig-frame2: 2.03 Valid with token 7f, no options or payload.
    (Message(Code.VALID, b"\x7f"), bytes.fromhex("01437f")),
    # fig-ping-example / fig-pong-example.
    (Message(Code.PING, b"\x42"), bytes.fromhex("01e242")),
    (Message(Code.PONG, b"\x42"), bytes.fromhex("01e342")),
    # Hand-assembled from the figures: an empty-token Ping, and a CSM with MMS 1152.
    (Message(Code.PING), bytes.fromhex("00e2")),
    (Message(Code.CSM, options=Options([(2, 1152)])), bytes.fromhex("30e1220480")),
    # GET /a with token 0102 and payload "hi": body = b1 61 ff 68 69 (5 bytes).
    (
        Message(Code.GET, b"\x01\x02", Options([(11, "a")]), b"hi"),
        bytes.fromhex("52010102b161ff6869"),
    ),
]


@pytest.mark.parametrize(("message", "wire"), DRAFT_VECTORS)
def test_draft_vectors_encode(message: Message, wire: bytes) -> None:
    assert encode_frame(message) == wire


@pytest.mark.parametrize(("message", "wire"), DRAFT_VECTORS)
def test_draft_vectors_decode(message: Message, wire: bytes) -> None:
    assert decode_whole(wire) == [message]
    decoded = decode_whole(wire)[0]
    assert decoded.code is message.code
    assert type(decoded.token) is bytes
    assert type(decoded.payload) is bytes


# -- Len field boundaries -------------------------------------------------------------------


def body_message(
    body_length: int, token: bytes, code: Code = Code.CONTENT
) -> tuple[Message, bytes]:
    """A message whose body (options + marker + payload) is exactly ``body_length`` bytes."""
    if body_length == 0:
        return Message(code, token), b""
    if body_length == 1:
        # One If-Match option with an empty value: the single byte 0x10.
        return Message(code, token, Options([(1, b"")])), b"\x10"
    payload = bytes(i % 251 for i in range(body_length - 1))
    return Message(code, token, payload=payload), b"\xff" + payload


# (body length, Len nibble, extended length bytes)
LEN_BOUNDARIES = [
    (0, 0, b""),
    (1, 1, b""),
    (2, 2, b""),
    (12, 12, b""),
    (13, 13, bytes([0])),  # 13 - 13
    (14, 13, bytes([1])),
    (268, 13, bytes([255])),  # 268 - 13
    (269, 14, bytes([0, 0])),  # 269 - 269
    (270, 14, bytes([0, 1])),
    (1152, 14, (1152 - 269).to_bytes(2, "big")),
    (65804, 14, bytes([0xFF, 0xFF])),  # 65804 - 269
    (65805, 15, bytes([0, 0, 0, 0])),  # 65805 - 65805
    (65806, 15, bytes([0, 0, 0, 1])),
]
TOKENS = [b"", b"\x7f", b"\x01\x02\x03\x04\x05\x06\x07\x08"]


def _next_frame() -> bytes:
    """A Len=14 frame to follow the vector in the stream (its first bytes stay buffered)."""
    return encode_frame(Message(Code.GET, b"\xaa\xbb", Options([(11, "next")]), b"z" * 300))


@pytest.mark.parametrize("token", TOKENS, ids=lambda t: f"tkl{len(t)}")
@pytest.mark.parametrize(
    ("body_length", "nibble", "extended"),
    LEN_BOUNDARIES,
    ids=[str(row[0]) for row in LEN_BOUNDARIES],
)
def test_len_field_boundaries(body_length: int, nibble: int, extended: bytes, token: bytes) -> None:
    message, body = body_message(body_length, token)
    wire = encode_frame(message)
    header = bytes([nibble << 4 | len(token)]) + extended + bytes([Code.CONTENT])
    assert wire == header + token + body
    assert len(wire) == frame_size(body_length, len(token))

    # Whole.
    assert decode_whole(wire) == [message]

    # With trailing bytes: the start of the next frame stays buffered.
    following = _next_frame()
    for keep in (1, 2, 3, 4, 7):
        decoder = StreamDecoder(BIG)
        decoder.feed(wire + following[:keep])
        assert decoder.next_message() == message
        assert decoder.next_message() is None
        assert decoder.buffered == keep
        decoder.feed(following[keep:])
        assert decoder.next_message() == decode_whole(following)[0]
        assert decoder.next_message() is None
        assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("body_length", "nibble", "extended"),
    LEN_BOUNDARIES,
    ids=[str(row[0]) for row in LEN_BOUNDARIES],
)
def test_len_field_boundaries_one_byte_at_a_time(
    body_length: int, nibble: int, extended: bytes
) -> None:
    token = b"\x7f"
    message, _ = body_message(body_length, token)
    wire = encode_frame(message)
    assert wire[0] >> 4 == nibble
    decoder = StreamDecoder(BIG)
    for i in range(len(wire) - 1):
        decoder.feed(wire[i : i + 1])
        assert decoder.next_message() is None
        assert decoder.buffered == i + 1
    decoder.feed(wire[-1:])
    assert decoder.next_message() == message
    assert decoder.next_message() is None
    assert decoder.buffered == 0


def test_len_field_32_bit_extension_large_value() -> None:
    message, body = body_message(1_000_000, b"")
    wire = encode_frame(message)
    assert wire[:6] == bytes([0xF0]) + (1_000_000 - 65805).to_bytes(4, "big") + bytes(
        [Code.CONTENT]
    )
    assert wire[6:] == body
    assert decode_whole(wire) == [message]


@pytest.mark.parametrize(
    ("body_length", "token_length", "size"),
    [
        (0, 0, 2),
        (12, 8, 22),
        (13, 0, 16),
        (268, 1, 272),
        (269, 0, 273),
        (65804, 0, 65808),
        (65805, 0, 65811),
        (65805, 8, 65819),
    ],
)
def test_frame_size(body_length: int, token_length: int, size: int) -> None:
    assert frame_size(body_length, token_length) == size


def test_encode_rejects_long_token() -> None:
    with pytest.raises(LocalProtocolError, match="token"):
        encode_frame(Message(Code.GET, b"123456789"))
    with pytest.raises(LocalProtocolError, match="token"):
        encode_ws_frame(Message(Code.GET, b"123456789"))


# -- option encoding boundaries -------------------------------------------------------------

# (options, exact encoding)
OPTION_VECTORS = [
    ([], b""),
    ([(0, b"")], b"\x00"),
    ([(12, b"")], b"\xc0"),  # delta 12: literal
    ([(13, b"")], b"\xd0\x00"),  # delta 13: nibble 13, ext 0
    ([(14, b"")], b"\xd0\x01"),
    ([(268, b"")], b"\xd0\xff"),  # delta 268: nibble 13, ext 255
    ([(269, b"")], b"\xe0\x00\x00"),  # delta 269: nibble 14, ext 0
    ([(270, b"")], b"\xe0\x00\x01"),
    ([(65535, b"")], b"\xe0\xfe\xf2"),  # 65535 - 269 = 0xfef2
    ([(1, b"L" * 12)], b"\x1c" + b"L" * 12),  # length 12: literal
    ([(1, b"L" * 13)], b"\x1d\x00" + b"L" * 13),
    ([(1, b"L" * 268)], b"\x1d\xff" + b"L" * 268),
    ([(1, b"L" * 269)], b"\x1e\x00\x00" + b"L" * 269),
    ([(1, b"L" * 65804)], b"\x1e\xff\xff" + b"L" * 65804),
    # Both extended: delta ext bytes come before length ext bytes.
    ([(300, b"v" * 20)], b"\xed\x00\x1f\x07" + b"v" * 20),
    ([(13, b"v" * 269)], b"\xde\x00\x00\x00" + b"v" * 269),
    # Deltas are relative to the previous option; repeats have delta 0.
    (
        [(11, b"a"), (11, b"bc"), (12, b""), (60, b"\x10"), (65535, b"\x01")],
        b"\xb1a\x02bc\x10\xd1\x23\x10\xe1" + (65535 - 60 - 269).to_bytes(2, "big") + b"\x01",
    ),
    # The delta/length boundaries as a chain: 12, then +13, then +268, then +269.
    (
        [(12, b""), (25, b""), (293, b""), (562, b"")],
        b"\xc0\xd0\x00\xd0\xff\xe0\x00\x00",
    ),
]


@pytest.mark.parametrize(("items", "encoded"), OPTION_VECTORS)
def test_option_encoding_vectors(items: list[tuple[int, bytes]], encoded: bytes) -> None:
    assert encode_options(items) == encoded
    options, payload = decode_options(encoded, 0, len(encoded))
    assert options.items == tuple(items)
    assert payload == b""
    # And inside a complete frame, with and without payload.
    for payload in (b"", b"p"):
        message = Message(Code.POST, b"\x01", Options(items), payload)
        assert decode_whole(encode_frame(message)) == [message]


def test_decode_options_honours_start_and_end() -> None:
    data = b"JUNK" + b"\xb1a\xff" + b"payload" + b"TRAILER"
    options, payload = decode_options(data, 4, len(data) - len(b"TRAILER"))
    assert options.items == ((11, b"a"),)
    assert payload == b"payload"


def test_option_number_65535_is_the_maximum() -> None:
    assert MAX_OPTION_NUMBER == 65535
    ok = Message(Code.GET, options=Options([(65535, b"x")]))
    assert decode_whole(encode_frame(ok)) == [ok]
    with pytest.raises(LocalProtocolError, match="65536"):
        encode_frame(Message(Code.GET, options=Options([(65536, b"")])))
    with pytest.raises(LocalProtocolError, match="65536"):
        encode_ws_frame(Message(Code.GET, options=Options([(65536, b"")])))
    with pytest.raises(LocalProtocolError):
        encode_options([(1, b""), (65536, b"")])


def test_option_value_length_limit() -> None:
    # 65804 = 65535 + 269 is the longest value the nibble scheme can express.
    assert encode_options([(1, b"v" * 65804)])[:3] == b"\x1e\xff\xff"
    with pytest.raises(LocalProtocolError, match="too long"):
        encode_options([(1, b"v" * 65805)])


def test_encode_options_rejects_unsorted() -> None:
    with pytest.raises(LocalProtocolError, match="sorted"):
        encode_options([(11, b"a"), (3, b"h")])


# -- WebSocket frames -----------------------------------------------------------------------

WS_CASES = [
    Message(Code.VALID, b"\x7f"),
    Message(Code.PING, b"\x42"),
    Message(Code.CSM, options=Options([(2, 1152), (4, None)])),
    body_message(12, b"\x01")[0],
    body_message(13, b"")[0],
    body_message(269, b"12345678")[0],
    body_message(65805, b"\x01\x02")[0],
]


@pytest.mark.parametrize("message", WS_CASES, ids=lambda m: f"{m.code.dotted}-{len(m.payload)}")
def test_ws_frame_has_len_zero(message: Message) -> None:
    wire = encode_ws_frame(message)
    assert wire[0] == len(message.token)  # Len nibble 0, TKL in the low nibble
    assert wire[1] == message.code
    assert wire[2 : 2 + len(message.token)] == message.token
    # Same body as the stream frame, only the header differs.
    stream = encode_frame(message)
    assert (
        wire[2 + len(message.token) :]
        == stream[len(stream) - (len(wire) - 2 - len(message.token)) :]
    )
    assert decode_ws_frame(wire, BIG) == message
    assert decode_ws_frame(wire, len(wire)) == message


def test_ws_draft_vectors() -> None:
    assert encode_ws_frame(Message(Code.VALID, b"\x7f")) == bytes.fromhex("01437f")
    assert encode_ws_frame(Message(Code.PING, b"\x42")) == bytes.fromhex("01e242")
    assert decode_ws_frame(bytes.fromhex("01e342"), 1152) == Message(Code.PONG, b"\x42")


@pytest.mark.parametrize("nibble", range(1, 16))
def test_ws_rejects_nonzero_len(nibble: int) -> None:
    wire = bytes([nibble << 4, Code.GET]) + b"x" * 20
    with pytest.raises(MessageFormatError, match=rf"Len is {nibble}\b.*must be 0"):
        decode_ws_frame(wire, BIG)


@pytest.mark.parametrize("tkl", range(9, 16))
def test_ws_rejects_reserved_tkl(tkl: int) -> None:
    wire = bytes([tkl, Code.GET]) + b"t" * tkl
    with pytest.raises(MessageFormatError, match=rf"token length {tkl}\b"):
        decode_ws_frame(wire, BIG)


@pytest.mark.parametrize(("tkl", "present"), [(1, 0), (4, 3), (8, 0), (8, 7)])
def test_ws_rejects_truncated_token(tkl: int, present: int) -> None:
    wire = bytes([tkl, Code.GET]) + b"t" * present
    with pytest.raises(MessageFormatError, match="token"):
        decode_ws_frame(wire, BIG)


@pytest.mark.parametrize("wire", [b"", b"\x00"])
def test_ws_rejects_short_messages(wire: bytes) -> None:
    with pytest.raises(MessageFormatError, match="shorter"):
        decode_ws_frame(wire, BIG)


def test_ws_rejects_too_large_messages() -> None:
    message = Message(Code.POST, b"\x01", payload=b"x" * 1200)
    wire = encode_ws_frame(message)
    assert decode_ws_frame(wire, len(wire)) == message
    with pytest.raises(
        MessageFormatError, match=rf"{len(wire)} bytes exceeds .* {len(wire) - 1} bytes"
    ):
        decode_ws_frame(wire, len(wire) - 1)
    with pytest.raises(MessageFormatError, match="Max-Message-Size of 1152"):
        decode_ws_frame(wire, 1152)
