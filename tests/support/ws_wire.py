"""A WebSocket peer written by hand for the tests (RFC 6455), independent of autobahn.

It builds opening handshakes with any subprotocol and path, masked client frames of any
opcode, and parses the server's HTTP answer and its (unmasked) frames, so the tests can
send what a well-behaved library never would: text frames, non-zero Len, no subprotocol.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from coaptcp.core.codes import Code
from coaptcp.core.framing import decode_ws_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

KEY = base64.b64encode(b"coaptcp-ws-tests").decode()
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def handshake(
    host: str = "127.0.0.1",
    path: str = "/.well-known/coap",
    protocols: Iterable[str] | None = ("coap",),
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """An RFC 6455 opening handshake; ``protocols=None`` leaves the header out."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body_and_rest: bytes


def parse_http(data: bytes) -> HttpResponse | None:
    """The HTTP response at the start of ``data``; ``None`` while its head is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1").split("\r\n")
    _, status, *reason = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(int(status), reason[0] if reason else "", headers, data[end + 4 :])


def frame(
    payload: bytes, opcode: int = OP_BINARY, *, fin: bool = True, mask: bytes = b"\x37\xfa\x21\x3d"
) -> bytes:
    """A masked client frame (RFC 6455 section 5.2)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head.append(0x80 | length)
    elif length < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", length)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + mask + masked


def frame_header(length: int, opcode: int = OP_BINARY) -> bytes:
    """Only the head of a masked binary frame announcing ``length`` bytes."""
    return frame(b"", opcode)[:1] + _length_bytes(length) + b"\x00\x00\x00\x00"


def _length_bytes(length: int) -> bytes:
    if length < 126:
        return bytes([0x80 | length])
    if length < 65536:
        return bytes([0x80 | 126]) + struct.pack("!H", length)
    return bytes([0x80 | 127]) + struct.pack("!Q", length)


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == OP_CLOSE
        return self.payload[2:].decode("utf-8")

    def coap(self) -> Message:
        assert self.opcode == OP_BINARY, f"not a binary frame: {self}"
        return decode_ws_frame(self.payload, 1 << 30)


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Server frames (unmasked) at the start of ``data``, and what is left over."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "a server frame must not be masked"
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if len(data) - pos < 4:
                break
            length = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
            head = 4
        elif length == 127:
            if len(data) - pos < 10:
                break
            length = struct.unpack("!Q", data[pos + 2 : pos + 10])[0]
            head = 10
        if len(data) - pos < head + length:
            break
        frames.append(Frame(bool(b0 & 0x80), b0 & 0x0F, data[pos + head : pos + head + length]))
        pos += head + length
    return frames, data[pos:]


def coap(message: Message) -> bytes:
    """A CoAP message in a masked binary frame (RFC 8323 section 4.2)."""
    return frame(encode_ws_frame(message))


def csm(max_message_size: int | None = None) -> Message:
    items = [] if max_message_size is None else [(2, max_message_size)]
    return Message(Code.CSM, options=Options(items))


def get(token: bytes, *path: str) -> Message:
    return Message(Code.GET, token, Options.build(uri_path=path))
