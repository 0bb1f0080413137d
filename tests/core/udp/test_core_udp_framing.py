"""The CoAP-over-UDP message format (coaptcp.core.udp.framing, RFC 7252 sections 3 and 4).

Byte vectors from RFC 7252 Appendix A (Figures 16-22), every rejection rule of sections 3,
3.1, 4.1-4.3 (Table 1), and properties: canonical round trips, and random bytes only ever
giving a message or a UdpFormatError that says whether to answer with a Reset.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coaptcp.core.codes import Code
from coaptcp.core.errors import LocalProtocolError, MessageFormatError
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.framing import (
    MessageType,
    UdpFormatError,
    UdpMessage,
    decode_datagram,
    empty_ack,
    encode_datagram,
    reset_for,
)

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
TEMPERATURE = Options([(11, "temperature")])
PAYLOAD = b"22.3 C"

# (figure, type, Message ID, message, bytes) from RFC 7252 Appendix A.
VECTORS = [
    (
        "16 request",
        CON,
        0x7D34,
        Message(Code.GET, b"", TEMPERATURE),
        b"\x40\x01\x7d\x34\xbbtemperature",
    ),
    (
        "16 response",
        ACK,
        0x7D34,
        Message(Code.CONTENT, b"", payload=PAYLOAD),
        b"\x60\x45\x7d\x34\xff22.3 C",
    ),
    (
        "17 request",
        CON,
        0x7D35,
        Message(Code.GET, b"\x20", TEMPERATURE),
        b"\x41\x01\x7d\x35\x20\xbbtemperature",
    ),
    (
        "17 response",
        ACK,
        0x7D35,
        Message(Code.CONTENT, b"\x20", payload=PAYLOAD),
        b"\x61\x45\x7d\x35\x20\xff22.3 C",
    ),
    ("20 empty ACK", ACK, 0x7D38, Message(Code.EMPTY), b"\x60\x00\x7d\x38"),
    (
        "20 separate",
        CON,
        0xAD7B,
        Message(Code.CONTENT, b"\x53", payload=PAYLOAD),
        b"\x41\x45\xad\x7b\x53\xff22.3 C",
    ),
    ("20 its ACK", ACK, 0xAD7B, Message(Code.EMPTY), b"\x60\x00\xad\x7b"),
    ("21 reset", RST, 0xAD7C, Message(Code.EMPTY), b"\x70\x00\xad\x7c"),
    (
        "22 request",
        NON,
        0x7D40,
        Message(Code.GET, b"\x75", TEMPERATURE),
        b"\x51\x01\x7d\x40\x75\xbbtemperature",
    ),
    (
        "22 response",
        NON,
        0xAD7D,
        Message(Code.CONTENT, b"\x75", payload=PAYLOAD),
        b"\x51\x45\xad\x7d\x75\xff22.3 C",
    ),
]


@pytest.mark.parametrize(("name", "mtype", "mid", "message", "wire"), VECTORS, ids=lambda v: v)
def test_rfc7252_appendix_a_vectors(
    name: str, mtype: MessageType, mid: int, message: Message, wire: bytes
) -> None:
    assert encode_datagram(mtype, mid, message) == wire
    decoded = decode_datagram(wire)
    assert decoded == UdpMessage(mtype, mid, message)
    assert decoded.encode() == wire


def test_sizes_given_in_the_rfc() -> None:
    # "This request is a total of 16 bytes long ... [the response] is 11 bytes long";
    # with the token 0x20, 17 and 12 bytes (Appendix A, Figures 16 and 17).
    assert [len(v[4]) for v in VECTORS[:4]] == [16, 11, 17, 12]


def test_empty_ack_and_reset_builders() -> None:
    assert empty_ack(0x7D38) == b"\x60\x00\x7d\x38"
    assert reset_for(0xAD7C) == b"\x70\x00\xad\x7c"
    assert decode_datagram(empty_ack(0xFFFF)) == UdpMessage(ACK, 0xFFFF, Message(Code.EMPTY))


def test_a_ping_decodes() -> None:
    # An Empty CON is a "CoAP ping" (section 4.3); the endpoint answers it with a Reset.
    assert decode_datagram(b"\x40\x00\x12\x34") == UdpMessage(CON, 0x1234, Message(Code.EMPTY))


def test_large_options_and_payload() -> None:
    message = Message(
        Code.PUT, b"12345678", Options([(11, "a" * 300), (2000, b"x" * 20)]), b"p" * 1000
    )
    wire = encode_datagram(NON, 1, message)
    assert decode_datagram(wire).message == message


# -- rejections ------------------------------------------------------------------------------

SILENT = [
    ("empty datagram", b""),
    ("three bytes", b"\x40\x01\x00"),
    ("version 0", b"\x00\x01\x00\x01"),
    ("version 2", b"\x80\x01\x00\x01"),
    ("version 3 CON", b"\xc0\x01\x00\x01"),
]


@pytest.mark.parametrize(("name", "wire"), SILENT, ids=[s[0] for s in SILENT])
def test_unreadable_headers_are_silently_ignored(name: str, wire: bytes) -> None:
    # Section 3: unknown versions "MUST be silently ignored"; no Message ID to reset.
    with pytest.raises(UdpFormatError) as info:
        decode_datagram(wire)
    assert info.value.mtype is None
    assert info.value.message_id is None
    assert not info.value.answer_with_reset
    assert isinstance(info.value, MessageFormatError)


REJECTED = [
    ("token length 9", b"\x49\x01\x00\x07" + b"t" * 9, "token length 9"),
    ("token length 15", b"\x4f\x01\x00\x07", "token length 15"),
    ("class 1", b"\x40\x21\x00\x07", "reserved class"),
    ("class 3", b"\x40\x61\x00\x07", "reserved class"),
    ("class 6", b"\x40\xc1\x00\x07", "reserved class"),
    ("class 7 (signaling)", b"\x40\xe1\x00\x07", "reserved class"),
    ("empty with a token length", b"\x41\x00\x00\x07\x20", "Empty message"),
    ("empty with a byte after", b"\x40\x00\x00\x07\xff", "Empty message"),
    ("token cut short", b"\x44\x01\x00\x07\x01\x02", "inside the token"),
    ("option delta 15", b"\x40\x01\x00\x07\xf1a", "reserved option delta 15"),
    ("option length 15", b"\x40\x01\x00\x07\x1f", "reserved option length 15"),
    ("option past the end", b"\x40\x01\x00\x07\xb5ab", "runs past the end"),
    ("marker without payload", b"\x40\x01\x00\x07\xff", "payload marker"),
    ("option number above 65535", b"\x40\x01\x00\x07\xe0\xff\xff\xd0\x00", "exceeds 65535"),
]


@pytest.mark.parametrize(("name", "wire", "words"), REJECTED, ids=[r[0] for r in REJECTED])
@pytest.mark.parametrize("type_bits", [0x00, 0x10, 0x20])
def test_format_errors_reset_a_con_and_are_ignored_otherwise(
    name: str, wire: bytes, words: str, type_bits: int
) -> None:
    wire = bytes((wire[0] | type_bits,)) + wire[1:]
    if type_bits == 0x20 and 0 < wire[1] < 0x20:
        wire = wire[:1] + b"\x45" + wire[2:]  # an ACK carries a response, not a request
    with pytest.raises(UdpFormatError) as info:
        decode_datagram(wire)
    assert words in info.value.diagnostic
    assert info.value.message_id == 7
    assert info.value.mtype == MessageType(type_bits >> 4)
    # Section 4.2: a CON is rejected with a Reset; 4.2/4.3: NON and ACK are ignored.
    assert info.value.answer_with_reset is (type_bits == 0)


TABLE_1 = [
    ("empty NON", b"\x50\x00\x00\x07", NON, "Empty Non-confirmable"),
    ("request in an ACK", b"\x60\x01\x00\x07", ACK, "Acknowledgement carrying a request"),
    ("reset with a response", b"\x70\x45\x00\x07", RST, "Reset message that is not Empty"),
    ("reset with a request", b"\x70\x01\x00\x07", RST, "Reset message that is not Empty"),
    ("reset with a token", b"\x71\x00\x00\x07\x01", RST, "Empty message"),
]


@pytest.mark.parametrize(("name", "wire", "mtype", "words"), TABLE_1, ids=[t[0] for t in TABLE_1])
def test_combinations_table_1_does_not_allow(
    name: str, wire: bytes, mtype: MessageType, words: str
) -> None:
    with pytest.raises(UdpFormatError) as info:
        decode_datagram(wire)
    assert words in info.value.diagnostic
    assert info.value.mtype is mtype
    assert not info.value.answer_with_reset


def test_leading_zero_uint_values_are_accepted() -> None:
    # Section 3.2: "A recipient MUST be prepared to process values with leading zero bytes."
    decoded = decode_datagram(b"\x40\x01\x00\x07\x62\x00\x05")
    assert decoded.message.options.observe == 5


def test_encoder_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError, match="16-bit"):
        encode_datagram(CON, 0x10000, Message(Code.GET))
    with pytest.raises(LocalProtocolError, match="16-bit"):
        encode_datagram(CON, -1, Message(Code.GET))
    with pytest.raises(LocalProtocolError, match="longer than 8"):
        encode_datagram(CON, 1, Message(Code.GET, b"123456789"))
    with pytest.raises(LocalProtocolError, match="Empty"):
        encode_datagram(ACK, 1, Message(Code.EMPTY, b"\x01"))
    with pytest.raises(LocalProtocolError, match="Empty"):
        encode_datagram(ACK, 1, Message(Code.EMPTY, payload=b"x"))


def test_decoding_a_bytearray_or_memoryview() -> None:
    wire = VECTORS[2][4]
    assert decode_datagram(bytearray(wire)) == decode_datagram(wire)  # type: ignore[arg-type]
    assert decode_datagram(memoryview(wire)) == decode_datagram(wire)  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
UDP_CODES = [b for b in range(1, 256) if b >> 5 in (0, 2, 4, 5)]


@st.composite
def datagrams(draw: st.DrawFn) -> UdpMessage:
    mtype = draw(st.sampled_from(list(MessageType)))
    mid = draw(st.integers(0, 0xFFFF))
    if mtype is RST or (draw(st.booleans()) and mtype is not NON):
        return UdpMessage(mtype, mid, Message(Code.EMPTY))
    codes = [c for c in UDP_CODES if c >= 0x40] if mtype is ACK else UDP_CODES
    options = draw(
        st.lists(
            st.tuples(st.integers(0, 65535), st.binary(max_size=300)),
            max_size=6,
        )
    )
    return UdpMessage(
        mtype,
        mid,
        Message(
            Code(draw(st.sampled_from(codes))),
            draw(st.binary(max_size=8)),
            Options(options),
            draw(st.binary(max_size=1100)),
        ),
    )


@SETTINGS
@given(datagrams())
def test_round_trip_is_canonical(datagram: UdpMessage) -> None:
    wire = datagram.encode()
    decoded = decode_datagram(wire)
    assert decoded == datagram
    assert decoded.encode() == wire


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_give_a_message_or_a_format_error(data: bytes) -> None:
    try:
        decoded = decode_datagram(data)
    except UdpFormatError as error:
        assert error.diagnostic
        readable = len(data) >= 4 and data[0] >> 6 == 1
        assert (error.mtype is not None) is readable
        if readable:
            assert error.message_id == data[2] << 8 | data[3]
            assert error.answer_with_reset is (data[0] >> 4 & 3 == 0)
    else:
        message = decoded.message
        assert len(message.token) <= 8
        assert message.code >> 5 in (0, 2, 4, 5)
        if message.code == 0:
            assert decoded.mtype is not NON
        # Every accepted datagram re-encodes to the very same bytes.
        assert decoded.encode() == data
