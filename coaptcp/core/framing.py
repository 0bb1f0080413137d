"""Message framing for reliable transports (RFC 8323 sections 3.2 and 4.4, draft-07 3.2/4.3).

Over TCP and TLS each message starts with a Len/TKL byte whose Len nibble is 0-12 (the
length of options and payload), 13 (one extended byte, Len - 13), 14 (two, Len - 269) or 15
(four, Len - 65805); then the code, the token, the options and the payload.  Over
WebSockets each message travels in one binary WebSocket message and Len is always 0.

:class:`StreamDecoder` is incremental: feed it any split of the byte stream and pull
messages out.  It rejects a frame whose announced size exceeds our Max-Message-Size as soon
as the length bytes are in, before any of its body is buffered, and it never re-copies the
unread buffer per frame.
"""

from __future__ import annotations

from collections.abc import Iterable

from coaptcp.core.codes import Code, code_from_byte
from coaptcp.core.errors import LocalProtocolError, MessageFormatError
from coaptcp.core.message import MAX_TOKEN_LENGTH, Message
from coaptcp.core.options import EMPTY_OPTIONS, Options

__all__ = [
    "MAX_OPTION_NUMBER",
    "PAYLOAD_MARKER",
    "StreamDecoder",
    "decode_options",
    "decode_ws_frame",
    "encode_frame",
    "encode_options",
    "encode_ws_frame",
    "frame_size",
]

PAYLOAD_MARKER = 0xFF
MAX_OPTION_NUMBER = 0xFFFF

_EXT13 = 13
_EXT14 = 269
_EXT15 = 65805
_MAX_LENGTH = 0xFFFFFFFF + _EXT15


def _nibble(value: int, out: bytearray) -> int:
    """Return the nibble for ``value`` and append its extended bytes to ``out``."""
    if value < _EXT13:
        return value
    if value < _EXT14:
        out.append(value - _EXT13)
        return 13
    out += (value - _EXT14).to_bytes(2, "big")
    return 14


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """Encode sorted options with delta/length nibbles (RFC 7252 section 3.1)."""
    out = bytearray()
    previous = 0
    for number, value in options:
        delta = number - previous
        if delta < 0:
            raise LocalProtocolError("options must be sorted by number")
        if number > MAX_OPTION_NUMBER:
            raise LocalProtocolError(f"option number {number} exceeds {MAX_OPTION_NUMBER}")
        previous = number
        length = len(value)
        if length > 0xFFFF + _EXT14:
            raise LocalProtocolError(f"option {number} value of {length} bytes is too long")
        if delta < _EXT13 and length < _EXT13:
            out.append(delta << 4 | length)
        else:
            extended = bytearray()
            delta_nibble = _nibble(delta, extended)
            length_nibble = _nibble(length, extended)
            out.append(delta_nibble << 4 | length_nibble)
            out += extended
        out += value
    return bytes(out)


def _encoded_options(options: Options) -> bytes:
    """``options`` on the wire, encoded once per (immutable) :class:`Options` instance."""
    encoded = options._encoded
    if encoded is None:
        encoded = options._encoded = encode_options(options.items) if options.items else b""
    return encoded


def _body(message: Message) -> bytes:
    options = _encoded_options(message.options)
    if message.payload:
        return b"".join((options, b"\xff", message.payload))
    return options


def _check_token(token: bytes) -> int:
    tkl = len(token)
    if tkl > MAX_TOKEN_LENGTH:
        raise LocalProtocolError(f"token of {tkl} bytes is longer than {MAX_TOKEN_LENGTH}")
    return tkl


def encode_frame(message: Message) -> bytes:
    """Serialize a message for a TCP or TLS byte stream (RFC 8323 section 3.2)."""
    token = message.token
    tkl = len(token)
    if tkl > MAX_TOKEN_LENGTH:
        _check_token(token)
    options = message.options._encoded
    if options is None:
        options = _encoded_options(message.options)
    payload = message.payload
    code = message.code
    if payload:
        length = len(options) + 1 + len(payload)
        # Small frames in one formatting operation (one allocation, no intermediates).
        if length < _EXT13:
            return b"%c%c%b%b\xff%b" % (length << 4 | tkl, code, token, options, payload)
        if length < _EXT14:
            return b"%c%c%c%b%b\xff%b" % (
                0xD0 | tkl,
                length - _EXT13,
                code,
                token,
                options,
                payload,
            )
        body = options + b"\xff" + payload
    else:
        length = len(options)
        body = options
    if length < _EXT13:
        header = bytes((length << 4 | tkl, code))
    elif length < _EXT14:
        header = bytes((0xD0 | tkl, length - _EXT13, code))
    elif length < _EXT15:
        header = bytes((0xE0 | tkl, (length - _EXT14) >> 8, (length - _EXT14) & 0xFF, code))
    elif length <= _MAX_LENGTH:
        header = bytes((0xF0 | tkl,)) + (length - _EXT15).to_bytes(4, "big") + bytes((code,))
    else:
        raise LocalProtocolError(f"message body of {length} bytes cannot be framed")
    return header + token + body


def encode_ws_frame(message: Message) -> bytes:
    """Serialize a message for one binary WebSocket message: Len = 0 (RFC 8323 section 4.4)."""
    token = message.token
    tkl = len(token)
    if tkl > MAX_TOKEN_LENGTH:
        _check_token(token)
    options = message.options._encoded
    if options is None:
        options = _encoded_options(message.options)
    if message.payload:  # one formatting operation (one allocation, no intermediates)
        return b"%c%c%b%b\xff%b" % (tkl, message.code, token, options, message.payload)
    return b"%c%c%b%b" % (tkl, message.code, token, options)


def frame_size(body_length: int, token_length: int) -> int:
    """The size of a stream frame with the given body and token lengths.

    This is the size RFC 8323 section 5.3.1 compares with Max-Message-Size: the whole
    message from its first header byte to the end of the payload.
    """
    if body_length < _EXT13:
        extended = 0
    elif body_length < _EXT14:
        extended = 1
    elif body_length < _EXT15:
        extended = 2
    else:
        extended = 4
    return 2 + extended + token_length + body_length


#: The options of recent short bodies without a payload, by the bodies' bytes.  Devices
#: send the same requests again and again (the same Uri-Path, the same Accept), so most
#: such bodies are parsed once; what is kept never changes (:class:`Options` instances
#: are immutable), so one parse serves every connection.  Bounded: at most
#: ``_PARSED_ENTRIES`` bodies of at most ``_PARSED_MAX_BODY`` bytes; emptied when full.
_PARSED: dict[bytes, tuple[Options, bytes]] = {}
_PARSED_ENTRIES = 256
_PARSED_MAX_BODY = 64


def decode_options(data: bytes | bytearray, start: int, end: int) -> tuple[Options, bytes]:
    """Parse options and payload from ``data[start:end]`` (RFC 7252 section 3.1).

    Returns the options and the payload.  Raises :class:`MessageFormatError` for a
    reserved nibble, an option running past the end, a number above 65535 or a payload
    marker followed by no payload.
    """
    if end - start > _PARSED_MAX_BODY:
        return _decode_options(data, start, end)
    body = data[start:end]
    if type(body) is not bytes:
        body = bytes(body)
    parsed = _PARSED.get(body)
    if parsed is None:
        parsed = _decode_options(body, 0, len(body))  # raises for a malformed body
        if not parsed[1]:  # payloads differ from one request to the next: not kept
            if len(_PARSED) >= _PARSED_ENTRIES:
                _PARSED.clear()
            _PARSED[body] = parsed
    return parsed


def _decode_options(data: bytes | bytearray, start: int, end: int) -> tuple[Options, bytes]:
    if type(data) is not bytes:
        data = bytes(data[start:end])
        start, end = 0, len(data)
    items: list[tuple[int, bytes]] = []
    append = items.append
    number = 0
    i = start
    payload = b""
    while i < end:
        byte = data[i]
        i += 1
        if byte < 0xD0 and byte & 0x0F < 13:
            # Delta and length both in the first byte: nearly every option.
            number += byte >> 4
            value_end = i + (byte & 0x0F)
            if value_end > end:
                raise _runs_past_end(number, value_end - i)
            append((number, data[i:value_end]))
            i = value_end
            continue
        if byte == PAYLOAD_MARKER:
            if i == end:
                raise MessageFormatError("payload marker followed by no payload")
            payload = data[i:end]
            break
        delta = byte >> 4
        length = byte & 0x0F
        if delta >= 13:
            if delta == 13:
                if i >= end:
                    raise MessageFormatError("option delta extension runs past the message")
                delta = data[i] + _EXT13
                i += 1
            elif delta == 14:
                if i + 2 > end:
                    raise MessageFormatError("option delta extension runs past the message")
                delta = (data[i] << 8 | data[i + 1]) + _EXT14
                i += 2
            else:
                raise MessageFormatError("reserved option delta 15")
        if length >= 13:
            if length == 13:
                if i >= end:
                    raise MessageFormatError("option length extension runs past the message")
                length = data[i] + _EXT13
                i += 1
            elif length == 14:
                if i + 2 > end:
                    raise MessageFormatError("option length extension runs past the message")
                length = (data[i] << 8 | data[i + 1]) + _EXT14
                i += 2
            else:
                raise MessageFormatError("reserved option length 15")
        number += delta
        if number > MAX_OPTION_NUMBER:
            raise MessageFormatError(f"option number {number} exceeds {MAX_OPTION_NUMBER}")
        if i + length > end:
            raise _runs_past_end(number, length)
        append((number, data[i : i + length]))
        i += length
    if number > MAX_OPTION_NUMBER:  # numbers only grow: checking the last one is enough
        raise MessageFormatError(f"option number {number} exceeds {MAX_OPTION_NUMBER}")
    options = _new_options(Options)
    options.items = tuple(items)
    options._encoded = None
    options._uri = None
    options._checked = None
    return options, payload


_new_options = _new_object = object.__new__


def _runs_past_end(number: int, length: int) -> MessageFormatError:
    return MessageFormatError(
        f"option {number} value of {length} bytes runs past the end of the message"
    )


#: The code for each header byte, or ``None`` for a code in a reserved class (1, 3 or 6),
#: which is a message format error when received (RFC 8323 section 3.2).
_RECEIVABLE_CODES: tuple[Code | None, ...] = tuple(
    None if code.is_reserved else code for code in map(code_from_byte, range(256))
)


def _reserved_code(value: int) -> MessageFormatError:
    return MessageFormatError(f"code {code_from_byte(value).dotted} is in a reserved class")


def _too_large(size: int, limit: int) -> MessageFormatError:
    return MessageFormatError(
        f"message of {size} bytes exceeds our Max-Message-Size of {limit} bytes",
        reason="message_too_large",
    )


def decode_ws_frame(data: bytes, max_message_size: int) -> Message:
    """Parse one binary WebSocket message holding one CoAP message (RFC 8323 section 4.4)."""
    if len(data) > max_message_size:
        raise _too_large(len(data), max_message_size)
    if len(data) < 2:
        raise MessageFormatError("WebSocket message shorter than a CoAP header")
    first = data[0]
    if first >> 4:
        raise MessageFormatError(f"Len is {first >> 4} in a WebSocket message; it must be 0")
    tkl = first & 0x0F
    if tkl > MAX_TOKEN_LENGTH:
        raise MessageFormatError(f"token length {tkl} is reserved")
    if len(data) < 2 + tkl:
        raise MessageFormatError("WebSocket message ends inside the token")
    code = _RECEIVABLE_CODES[data[1]]
    if code is None:
        raise _reserved_code(data[1])
    message = _new_object(Message)  # Message(code, token, ...) without its __init__
    message.code = code
    message.token = bytes(data[2 : 2 + tkl])
    if len(data) == 2 + tkl:
        message.options = EMPTY_OPTIONS
        message.payload = b""
    else:
        message.options, message.payload = decode_options(data, 2 + tkl, len(data))
    return message


class StreamDecoder:
    """Incremental decoder for the TCP/TLS byte stream (RFC 8323 section 3.2).

    :param max_message_size: our advertised Max-Message-Size; a frame that announces more
        is rejected before its body is read.
    """

    __slots__ = ("_data", "_pos", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._data: bytes | bytearray = b""
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (a partial frame)."""
        return len(self._data) - self._pos

    def feed(self, data: bytes) -> None:
        """Add bytes received from the stream."""
        if not data:
            return
        if type(data) is not bytes:
            # We keep (and may later extend in place) what we are given: never alias a
            # caller's mutable buffer (bytearray, memoryview).
            data = bytes(data)
        if self._pos >= len(self._data):
            # Nothing pending: parse straight out of the caller's bytes, no copy.
            self._data = data
            self._pos = 0
            return
        pending = self._data
        if isinstance(pending, bytes):
            pending = bytearray(memoryview(pending)[self._pos :])
        elif self._pos:
            del pending[: self._pos]
        pending += data
        self._data = pending
        self._pos = 0

    def next_message(self) -> Message | None:
        """Return the next complete message, or ``None`` if more bytes are needed.

        Raises :class:`MessageFormatError` for a malformed or oversized frame; the
        decoder is unusable afterwards (the connection must be aborted).
        """
        out: list[Message] = []
        self.take(b"", out, 1)
        return out[0] if out else None

    def take(self, data: bytes, out: list[Message], limit: int = -1) -> int:
        """Feed ``data``, then append up to ``limit`` complete messages to ``out``
        (``limit`` < 0: every one); returns the bytes left buffered (:attr:`buffered`:
        a partial frame, or more messages once ``limit`` are taken).

        Raises :class:`MessageFormatError` for a malformed or oversized frame, with the
        messages before it already in ``out``; the decoder is unusable afterwards.
        """
        if data:
            if type(data) is bytes and self._pos >= len(self._data):
                self._data = data  # nothing pending: parse straight out of the caller's
                self._pos = 0  # bytes, no copy (feed, inline: once per read)
            else:
                self.feed(data)
        buffer = self._data
        pos = self._pos
        size = len(buffer)
        append = out.append
        while pos < size:
            if not limit:
                return size - pos
            available = size - pos
            first = buffer[pos]
            tkl = first & 0x0F
            if tkl > MAX_TOKEN_LENGTH:
                raise MessageFormatError(f"token length {tkl} is reserved")
            length = first >> 4
            if length < 13:
                header = 2
            elif length == 13:
                if available < 2:
                    return available
                length = buffer[pos + 1] + _EXT13
                header = 3
            elif length == 14:
                if available < 3:
                    return available
                length = (buffer[pos + 1] << 8 | buffer[pos + 2]) + _EXT14
                header = 4
            else:
                if available < 5:
                    return available
                length = int.from_bytes(buffer[pos + 1 : pos + 5], "big") + _EXT15
                header = 6
            total = header + tkl + length
            if total > self.max_message_size:
                raise _too_large(total, self.max_message_size)
            if available < total:
                return available
            token_start = pos + header
            code = _RECEIVABLE_CODES[buffer[token_start - 1]]
            if code is None:
                raise _reserved_code(buffer[token_start - 1])
            body_start = token_start + tkl
            end = pos + total
            token = buffer[token_start:body_start]
            if type(token) is not bytes:
                token = bytes(token)
            self._pos = pos = end
            message = _new_object(Message)  # Message(code, token, ...) without its __init__
            message.code = code
            message.token = token
            if body_start == end:
                message.options = EMPTY_OPTIONS
                message.payload = b""
            else:
                message.options, message.payload = decode_options(buffer, body_start, end)
            append(message)
            limit -= 1
        return 0
