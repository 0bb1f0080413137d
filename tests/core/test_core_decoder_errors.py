"""Malformed input: every format error raises MessageFormatError with a useful diagnostic.

RFC 7252 section 3 / 3.1 (TKL 9-15, nibble 15, payload marker with no payload), RFC 8323
section 5.6 / draft-07 section 5.6 (format errors abort), section 5.3.1 (Max-Message-Size).
"""

from __future__ import annotations

import re

import pytest

from coaptcp.core.codes import Code
from coaptcp.core.errors import MessageFormatError, RemoteProtocolError
from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

BIG = 1 << 24


def stream_frame(body: bytes, code: int = Code.GET, token: bytes = b"\x01") -> bytes:
    """Hand-assemble a stream frame around ``body`` (whatever it holds)."""
    length = len(body)
    assert length < 13 + 256
    if length < 13:
        header = bytes([length << 4 | len(token), code])
    else:
        header = bytes([0xD0 | len(token), length - 13, code])
    return header + token + body


def ws_frame(body: bytes, code: int = Code.GET, token: bytes = b"\x01") -> bytes:
    return bytes([len(token), code]) + token + body


def check_diagnostic(error: MessageFormatError, pattern: str) -> None:
    assert isinstance(error, RemoteProtocolError)
    assert error.diagnostic == str(error)
    assert error.diagnostic.strip()
    assert error.bad_csm_option is None
    assert re.search(pattern, error.diagnostic), error.diagnostic


# (id, body after the token, diagnostic pattern): errors inside options/payload.
BODY_ERRORS = [
    ("delta-15", b"\xf0", r"reserved option delta 15"),
    ("delta-15-len-1", b"\xf1x", r"reserved option delta 15"),
    ("delta-15-len-14", b"\xfe\x00\x00", r"reserved option delta 15"),
    ("delta-15-after-option", b"\xb1a\xf0", r"reserved option delta 15"),
    ("length-15", b"\x0f", r"reserved option length 15"),
    ("length-15-delta-1", b"\x1f" + b"x" * 15, r"reserved option length 15"),
    ("length-15-delta-13", b"\xdf\x00", r"reserved option length 15"),
    ("length-15-delta-14", b"\xef\x00\x00", r"reserved option length 15"),
    ("value-past-end", b"\x13ab", r"option 1 value of 3 bytes runs past the end"),
    ("value-past-end-second", b"\xb1a\x05abcd", r"option 11 value of 5 bytes runs past"),
    ("ext8-value-past-end", b"\x1d\x05" + b"x" * 17, r"option 1 value of 18 bytes runs past"),
    ("ext16-value-past-end", b"\x1e\x00\x00" + b"x" * 20, r"value of 269 bytes runs past"),
    ("delta-ext8-missing", b"\xd0", r"option delta extension runs past"),
    ("delta-ext16-missing", b"\xe0", r"option delta extension runs past"),
    ("delta-ext16-half", b"\xe0\x00", r"option delta extension runs past"),
    ("length-ext8-missing", b"\x1d", r"option length extension runs past"),
    ("length-ext16-missing", b"\x1e", r"option length extension runs past"),
    ("length-ext16-half", b"\x1e\x00", r"option length extension runs past"),
    ("length-ext-after-delta-ext", b"\xdd\x00", r"option length extension runs past"),
    ("marker-no-payload", b"\xff", r"payload marker followed by no payload"),
    ("marker-after-option", b"\xb1a\xff", r"payload marker followed by no payload"),
    ("number-above-65535", b"\xe0\xfe\xf3", r"option number 65536 exceeds 65535"),
    ("number-sum-above-65535", b"\xe0\xfe\xf2\x10", r"option number 65536 exceeds 65535"),
]


@pytest.mark.parametrize(
    ("body", "pattern"), [r[1:] for r in BODY_ERRORS], ids=[r[0] for r in BODY_ERRORS]
)
def test_body_errors_stream_whole(body: bytes, pattern: str) -> None:
    decoder = StreamDecoder(BIG)
    decoder.feed(stream_frame(body))
    with pytest.raises(MessageFormatError) as info:
        decoder.next_message()
    check_diagnostic(info.value, pattern)


@pytest.mark.parametrize(
    ("body", "pattern"), [r[1:] for r in BODY_ERRORS], ids=[r[0] for r in BODY_ERRORS]
)
def test_body_errors_stream_byte_by_byte_after_a_good_frame(body: bytes, pattern: str) -> None:
    good = Message(Code.CONTENT, b"\x01", Options([(12, 0)]), b"ok")
    wire = encode_frame(good) + stream_frame(body)
    decoder = StreamDecoder(BIG)
    got: list[Message] = []
    with pytest.raises(MessageFormatError) as info:
        for i in range(len(wire)):
            decoder.feed(wire[i : i + 1])
            while (message := decoder.next_message()) is not None:
                got.append(message)
    check_diagnostic(info.value, pattern)
    assert got == [good]


@pytest.mark.parametrize(
    ("body", "pattern"), [r[1:] for r in BODY_ERRORS], ids=[r[0] for r in BODY_ERRORS]
)
def test_body_errors_websocket(body: bytes, pattern: str) -> None:
    with pytest.raises(MessageFormatError) as info:
        decode_ws_frame(ws_frame(body), BIG)
    check_diagnostic(info.value, pattern)


def test_option_byte_0xff_is_only_the_marker() -> None:
    # Every first byte with a 15 nibble other than 0xff is an error; 0xff starts the payload.
    for byte in range(256):
        if byte == 0xFF or (byte >> 4 != 15 and byte & 0xF != 15):
            continue
        body = bytes([byte]) + b"\x00" * 20
        with pytest.raises(MessageFormatError, match=r"reserved option (delta|length) 15"):
            decode_ws_frame(ws_frame(body), BIG)
    assert decode_ws_frame(ws_frame(b"\xffp"), BIG).payload == b"p"


@pytest.mark.parametrize("tkl", range(9, 16))
def test_reserved_tkl_stream_raises_on_first_byte(tkl: int) -> None:
    decoder = StreamDecoder(BIG)
    decoder.feed(bytes([tkl]))  # only the Len/TKL byte: enough to know
    with pytest.raises(MessageFormatError) as info:
        decoder.next_message()
    check_diagnostic(info.value, rf"token length {tkl} is reserved")


@pytest.mark.parametrize("tkl", range(9, 16))
def test_reserved_tkl_stream_whole_frame(tkl: int) -> None:
    decoder = StreamDecoder(BIG)
    decoder.feed(bytes([0x30 | tkl, Code.GET]) + b"t" * tkl + b"\xb1a\x00")
    with pytest.raises(MessageFormatError, match=rf"token length {tkl}\b"):
        decoder.next_message()


RESERVED_CODE_BYTES = [b for b in range(256) if b >> 5 in (1, 3, 6)]


@pytest.mark.parametrize("code", RESERVED_CODE_BYTES, ids=lambda b: f"{b >> 5}.{b & 31:02d}")
def test_reserved_code_classes(code: int) -> None:
    dotted = f"{code >> 5}.{code & 31:02d}"
    decoder = StreamDecoder(BIG)
    decoder.feed(stream_frame(b"\xb1a\xffp", code=code))
    with pytest.raises(MessageFormatError) as info:
        decoder.next_message()
    check_diagnostic(info.value, rf"code {dotted} is in a reserved class")
    with pytest.raises(MessageFormatError, match=rf"code {dotted} is in a reserved class"):
        decode_ws_frame(ws_frame(b"", code=code), BIG)


def test_reserved_code_after_good_frames_delivers_the_good_ones_first() -> None:
    good = [Message(Code.GET, b"\x01"), Message(Code.CONTENT, b"\x02", payload=b"x")]
    decoder = StreamDecoder(BIG)
    decoder.feed(b"".join(encode_frame(m) for m in good) + stream_frame(b"", code=0x20))
    assert decoder.next_message() == good[0]
    assert decoder.next_message() == good[1]
    with pytest.raises(MessageFormatError, match=r"1\.00"):
        decoder.next_message()


# -- oversized frames: rejected from the header alone ---------------------------------------

# (id, the header bytes a peer sends first, Max-Message-Size, announced total size)
OVERSIZED_HEADERS = [
    # Len=15 with ext 0xffffffff: body 4294967295 + 65805 bytes, about 4 GiB.
    ("len15-4GiB", bytes([0xF0, 0xFF, 0xFF, 0xFF, 0xFF]), 1152, 6 + 0xFFFFFFFF + 65805),
    (
        "len15-4GiB-tkl8",
        bytes([0xF8, 0xFF, 0xFF, 0xFF, 0xFF]),
        65536 + 512,
        14 + 0xFFFFFFFF + 65805,
    ),
    ("len15-min", bytes([0xF0, 0, 0, 0, 0]), 65810, 6 + 65805),
    ("len14-max", bytes([0xE0, 0xFF, 0xFF]), 1152, 4 + 65804),
    ("len14-just-over", bytes([0xE0]) + (1152 - 4 - 269 + 1).to_bytes(2, "big"), 1152, 1153),
    ("len13-max", bytes([0xD0, 0xFF]), 100, 3 + 268),
    ("len12-tkl8", bytes([0xC8]), 21, 2 + 8 + 12),
]


@pytest.mark.parametrize(
    ("header", "mms", "total"),
    [r[1:] for r in OVERSIZED_HEADERS],
    ids=[r[0] for r in OVERSIZED_HEADERS],
)
def test_oversized_frame_rejected_from_header_alone(header: bytes, mms: int, total: int) -> None:
    # Feed only the Len/TKL byte and the extended length: no code, no token, no body.
    decoder = StreamDecoder(mms)
    for byte in header[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_message() is None  # the length is not known yet
    decoder.feed(header[-1:])
    with pytest.raises(MessageFormatError) as info:
        decoder.next_message()
    check_diagnostic(
        info.value, rf"message of {total} bytes exceeds our Max-Message-Size of {mms} bytes"
    )


def test_oversized_4gib_announcement_first_five_bytes_in_one_feed() -> None:
    decoder = StreamDecoder(1152)
    decoder.feed(bytes([0xF0, 0xFF, 0xFF, 0xFF, 0xFF]))
    with pytest.raises(MessageFormatError, match="exceeds our Max-Message-Size of 1152"):
        decoder.next_message()
    assert decoder.buffered <= 5  # nothing beyond what we fed was waited for


@pytest.mark.parametrize("token", [b"", b"\x01\x02\x03"])
@pytest.mark.parametrize("body_length", [0, 12, 13, 268, 269, 1000, 65805])
def test_max_message_size_counts_the_whole_frame(body_length: int, token: bytes) -> None:
    # RFC 8323 5.3.1: the size runs from the first header byte to the end of the payload.
    if body_length == 0:
        message = Message(Code.CONTENT, token)
    else:
        message = Message(Code.CONTENT, token, payload=b"x" * (body_length - 1))
    wire = encode_frame(message)
    exact = StreamDecoder(len(wire))
    exact.feed(wire)
    assert exact.next_message() == message
    short = StreamDecoder(len(wire) - 1)
    short.feed(wire)
    with pytest.raises(MessageFormatError, match=rf"message of {len(wire)} bytes exceeds"):
        short.next_message()
