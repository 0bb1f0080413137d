"""The CoAP message format over UDP (RFC 7252 section 3), free of I/O.

One datagram holds one message: a 4-byte header (Ver = 1, Type, TKL, Code, Message ID),
the token, the options (encoded as on reliable transports, RFC 7252 section 3.1, by
:mod:`coaptcp.core.framing`) and, after a 0xFF marker, the payload.  The four message types
(section 4) are Confirmable (CON), Non-confirmable (NON), Acknowledgement (ACK) and Reset
(RST).

:func:`decode_datagram` checks the format and the combinations of type and code that
RFC 7252 Table 1 (section 4.3) allows, and raises :class:`UdpFormatError` for everything it
must reject.  The error says whether the header could be read: a rejected CON is answered
with a Reset carrying its Message ID (section 4.2), a rejected NON, ACK or RST is ignored
(sections 4.2 and 4.3), and so is a datagram too short for a header or of another version
(section 3: "silently ignored").
"""

from __future__ import annotations

import enum

from coaptcp.core.codes import Code, code_from_byte
from coaptcp.core.errors import LocalProtocolError, MessageFormatError
from coaptcp.core.framing import _encoded_options, decode_options
from coaptcp.core.message import MAX_TOKEN_LENGTH, Message

__all__ = [
    "HEADER_SIZE",
    "MessageType",
    "UdpFormatError",
    "UdpMessage",
    "datagram_size",
    "decode_datagram",
    "empty_ack",
    "encode_datagram",
    "reset_for",
]

#: The fixed header: Ver/T/TKL, Code, Message ID (RFC 7252 section 3).
HEADER_SIZE = 4
_VERSION = 1
_MAX_MESSAGE_ID = 0xFFFF


class MessageType(enum.IntEnum):
    """The Type field (RFC 7252 section 3, semantics in section 4)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


_CON, _NON, _ACK, _RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
_TYPES = (_CON, _NON, _ACK, _RST)


def _is_reserved_over_udp(code: Code) -> bool:
    # RFC 7252 section 3: classes 0, 2, 4 and 5 only ("all other class values are
    # reserved"); section 4.2 names 1, 6 and 7.  Class 7 (signaling, RFC 8323) has no
    # meaning over UDP.
    return (code >> 5) not in (0, 2, 4, 5)


#: The code for each header byte, or ``None`` when its class is reserved over UDP.
_UDP_CODES: tuple[Code | None, ...] = tuple(
    None if _is_reserved_over_udp(code) else code for code in map(code_from_byte, range(256))
)


class UdpFormatError(MessageFormatError):
    """A datagram the recipient must reject (RFC 7252 sections 3, 4.2 and 4.3).

    :ivar mtype: the message's type when the header was readable (version 1, at least four
        bytes), else ``None``: then the datagram is silently ignored.
    :ivar message_id: the Message ID, with the same condition.
    """

    def __init__(
        self, diagnostic: str, mtype: MessageType | None = None, message_id: int | None = None
    ) -> None:
        super().__init__(diagnostic)
        self.mtype = mtype
        self.message_id = message_id

    @property
    def answer_with_reset(self) -> bool:
        """Whether the rejection is a Reset: the message was a CON (RFC 7252 section 4.2)."""
        return self.mtype is _CON and self.message_id is not None


class UdpMessage:
    """One message as it travels over UDP: its type, Message ID and :class:`Message`.

    The :class:`Message` (code, token, options, payload) is the one the reliable
    transports use, so requests and responses look the same to the layers above.
    """

    __slots__ = ("message", "message_id", "mtype")

    mtype: MessageType
    message_id: int
    message: Message

    def __init__(self, mtype: MessageType, message_id: int, message: Message) -> None:
        self.mtype = mtype
        self.message_id = message_id
        self.message = message

    def encode(self) -> bytes:
        """The datagram (see :func:`encode_datagram`)."""
        return encode_datagram(self.mtype, self.message_id, self.message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UdpMessage):
            return NotImplemented
        return (
            self.mtype == other.mtype
            and self.message_id == other.message_id
            and self.message == other.message
        )

    def __hash__(self) -> int:
        return hash((self.mtype, self.message_id, self.message))

    def __repr__(self) -> str:
        return f"UdpMessage({self.mtype.name}, mid={self.message_id:#06x}, {self.message!r})"


def encode_datagram(mtype: MessageType, message_id: int, message: Message) -> bytes:
    """Serialize one message into one datagram (RFC 7252 section 3).

    Raises :class:`LocalProtocolError` for a Message ID outside 0-65535, a token longer
    than 8 bytes, or an Empty message (0.00) carrying a token, options or a payload
    (section 4.1).  The encoding is canonical: decoding and re-encoding gives the same bytes.
    """
    if not 0 <= message_id <= _MAX_MESSAGE_ID:
        raise LocalProtocolError(f"Message ID {message_id} is not a 16-bit unsigned integer")
    token = message.token
    tkl = len(token)
    if tkl > MAX_TOKEN_LENGTH:
        raise LocalProtocolError(f"token of {tkl} bytes is longer than {MAX_TOKEN_LENGTH}")
    code = message.code
    first = 0x40 | mtype << 4 | tkl
    if code == 0 and (tkl or message.options or message.payload):
        raise LocalProtocolError("an Empty message has no token, options or payload")
    options = message.options._encoded
    if options is None:
        options = _encoded_options(message.options)
    if message.payload:
        return b"%c%c%c%c%b%b\xff%b" % (
            first,
            code,
            message_id >> 8,
            message_id & 0xFF,
            token,
            options,
            message.payload,
        )
    return b"%c%c%c%c%b%b" % (first, code, message_id >> 8, message_id & 0xFF, token, options)


def datagram_size(message: Message) -> int:
    """The size of ``message`` in one datagram (RFC 7252 section 3): what a message size
    limit of RFC 7252 section 4.6 is compared with."""
    return len(encode_datagram(MessageType.CON, 0, message))


def empty_ack(message_id: int) -> bytes:
    """An Empty ACK for the CON with ``message_id`` (RFC 7252 sections 4.2 and 5.2.2)."""
    return bytes((0x60, 0, message_id >> 8, message_id & 0xFF))


def reset_for(message_id: int) -> bytes:
    """The Reset rejecting the message with ``message_id`` (RFC 7252 sections 4.2, 4.3)."""
    return bytes((0x70, 0, message_id >> 8, message_id & 0xFF))


def decode_datagram(data: bytes) -> UdpMessage:
    """Parse one datagram into a :class:`UdpMessage` (RFC 7252 sections 3 and 4).

    Raises :class:`UdpFormatError` for anything the recipient must reject:

    - shorter than the header, or a version other than 1: ``mtype`` is ``None`` (ignore);
    - a token length of 9-15, a code in a reserved class (1, 3, 6, 7), an option format
      error, a payload marker with no payload, an Empty message with anything after the
      Message ID (sections 3, 3.1, 4.1);
    - a combination Table 1 (section 4.3) does not allow: an Empty NON, a request in an
      ACK, a Reset that is not Empty.

    An Empty CON (a "CoAP ping") is returned; the endpoint answers it with a Reset.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        raise UdpFormatError(f"datagram of {size} bytes is shorter than the CoAP header")
    first = data[0]
    if first >> 6 != _VERSION:
        raise UdpFormatError(f"CoAP version {first >> 6} is unknown")
    mtype = _TYPES[(first >> 4) & 0x03]
    message_id = data[2] << 8 | data[3]
    tkl = first & 0x0F
    if tkl > MAX_TOKEN_LENGTH:
        raise UdpFormatError(f"token length {tkl} is reserved", mtype, message_id)
    code = _UDP_CODES[data[1]]
    if code is None:
        raise UdpFormatError(
            f"code {code_from_byte(data[1]).dotted} is in a reserved class", mtype, message_id
        )
    if code == 0:
        if size > HEADER_SIZE:
            raise UdpFormatError(
                "an Empty message has bytes after the Message ID", mtype, message_id
            )
        if mtype is _NON:
            raise UdpFormatError("an Empty Non-confirmable message", mtype, message_id)
        return UdpMessage(mtype, message_id, Message(code))
    if mtype is _RST:
        raise UdpFormatError("a Reset message that is not Empty", mtype, message_id)
    if mtype is _ACK and code < 0x20:
        raise UdpFormatError("an Acknowledgement carrying a request", mtype, message_id)
    body = HEADER_SIZE + tkl
    if size < body:
        raise UdpFormatError("datagram ends inside the token", mtype, message_id)
    token = data[HEADER_SIZE:body]
    if body == size:
        return UdpMessage(mtype, message_id, Message(code, token))
    try:
        options, payload = decode_options(data, body, size)
    except MessageFormatError as error:
        raise UdpFormatError(error.diagnostic, mtype, message_id) from None
    return UdpMessage(mtype, message_id, Message(code, token, options, payload))
