"""Minimal CoAP over TCP/TLS/WebSockets on the wire, for the attack scripts (stdlib only).

Written from RFC 8323 (section 3.2: the TCP frame; section 4.2: the WebSocket message with
the Len nibble 0 and no extended length; section 5: signaling codes and options), RFC 7252
section 3.1 (options), RFC 7959 section 2.2 (Block options) and RFC 6455 section 5.2
(WebSocket frames, client frames masked).  Nothing here is taken from coaptcp, so the
attacks do not share a bug with the server they attack.

:class:`Conn` is one asyncio connection to the server (coap+tcp, coaps+tcp or coap+ws) with
helpers to send CoAP messages, read them, stop reading altogether, and ask the kernel what
state the TCP connection is in (so that a client that never reads still learns whether the
server closed it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
from dataclasses import dataclass

# -- codes (RFC 7252 section 12.1, RFC 8323 section 5.1) -------------------------------
GET, POST, PUT = 0x01, 0x02, 0x03
CONTENT, CONTINUE = 0x45, 0x5F
CSM, PING, PONG, RELEASE, ABORT = 0xE1, 0xE2, 0xE3, 0xE4, 0xE5

# -- option numbers ---------------------------------------------------------------------
OBSERVE, URI_PATH, URI_QUERY = 6, 11, 15
BLOCK2, BLOCK1, SIZE1, REQUEST_TAG = 23, 27, 60, 292
CSM_MAX_MESSAGE_SIZE, CSM_BLOCK_WISE_TRANSFER = 2, 4  # RFC 8323 section 5.3
CUSTODY = 2  # Ping/Pong (section 5.4)

BERT_SZX = 7  # RFC 8323 section 6: the block number counts 1024-byte units
WS_PATH = "/.well-known/coap"


def uint(value: int) -> bytes:
    """A uint option value: big-endian, no leading zero bytes (RFC 7252 section 3.2)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _nibble(value: int, ext: bytearray) -> int:
    if value < 13:
        return value
    if value < 269:
        ext.append(value - 13)
        return 13
    ext += (value - 269).to_bytes(2, "big")
    return 14


def encode_options(options: list[tuple[int, bytes]]) -> bytes:
    """Options (number, value), sorted here, as delta/length nibbles (RFC 7252 3.1)."""
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        ext = bytearray()
        delta = _nibble(number - previous, ext)
        length = _nibble(len(value), ext)
        previous = number
        out.append(delta << 4 | length)
        out += ext
        out += value
    return bytes(out)


def decode_options(body: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(options, payload) of a message body after code and token."""
    options: list[tuple[int, bytes]] = []
    i, number, n = 0, 0, len(body)
    while i < n:
        head = body[i]
        i += 1
        if head == 0xFF:
            return options, body[i:]
        delta, length = head >> 4, head & 15
        if delta == 13:
            delta, i = body[i] + 13, i + 1
        elif delta == 14:
            delta, i = int.from_bytes(body[i : i + 2], "big") + 269, i + 2
        if length == 13:
            length, i = body[i] + 13, i + 1
        elif length == 14:
            length, i = int.from_bytes(body[i : i + 2], "big") + 269, i + 2
        number += delta
        options.append((number, body[i : i + length]))
        i += length
    return options, b""


def message_body(options: list[tuple[int, bytes]], payload: bytes) -> bytes:
    return encode_options(options) + (b"\xff" + payload if payload else b"")


def tcp_frame(
    code: int, token: bytes = b"", options: list[tuple[int, bytes]] | None = None,
    payload: bytes = b"",
) -> bytes:
    """One CoAP-over-TCP frame (RFC 8323 section 3.2): Len/TKL, extended length, code,
    token, options, payload."""
    body = message_body(options or [], payload)
    n = len(body)
    if n < 13:
        head = bytes([n << 4 | len(token)])
    elif n < 269:
        head = bytes([0xD0 | len(token), n - 13])
    elif n < 65805:
        head = bytes([0xE0 | len(token)]) + (n - 269).to_bytes(2, "big")
    else:
        head = bytes([0xF0 | len(token)]) + (n - 65805).to_bytes(4, "big")
    return head + bytes([code]) + token + body


def ws_coap(
    code: int, token: bytes = b"", options: list[tuple[int, bytes]] | None = None,
    payload: bytes = b"",
) -> bytes:
    """A CoAP message as it travels in one WebSocket message (RFC 8323 section 4.2)."""
    return bytes([len(token), code]) + token + message_body(options or [], payload)


def ws_frame(
    payload: bytes, opcode: int = 2, fin: bool = True, announce: int | None = None
) -> bytes:
    """A masked client frame (RFC 6455 section 5.2); ``announce`` overrides the length
    field (for a header that promises more than follows)."""
    length = len(payload) if announce is None else announce
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = bytes([first, 0x80 | length])
    elif length < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", length)
    key = os.urandom(4)
    return head + key + mask(payload, key)


def mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def path_options(path: str) -> list[tuple[int, bytes]]:
    """Uri-Path and Uri-Query options of ``/a/b?x&y``."""
    path, _, query = path.partition("?")
    options = [(URI_PATH, seg.encode()) for seg in path.split("/") if seg]
    options += [(URI_QUERY, q.encode()) for q in query.split("&") if q]
    return options


def csm_options(max_message_size: int | None = None, bert: bool = False) -> list[tuple[int, bytes]]:
    options = []
    if max_message_size is not None:
        options.append((CSM_MAX_MESSAGE_SIZE, uint(max_message_size)))
    if bert:
        options.append((CSM_BLOCK_WISE_TRANSFER, b""))
    return options


def block_value(num: int, more: bool, szx: int) -> bytes:
    """A Block1/Block2 option value (RFC 7959 section 2.2)."""
    return uint(num << 4 | (8 if more else 0) | szx)


def option(options: list[tuple[int, bytes]], number: int) -> bytes | None:
    for n, v in options:
        if n == number:
            return v
    return None


@dataclass
class Msg:
    """A received message."""

    code: int
    token: bytes
    options: list[tuple[int, bytes]]
    payload: bytes

    @property
    def dotted(self) -> str:
        return f"{self.code >> 5}.{self.code & 31:02d}"


class Closed(Exception):
    """The server closed the connection."""


def tls_context() -> ssl.SSLContext:
    """A client context that does not verify (loopback only), offering ALPN "coap"
    (RFC 8323 section 8.2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["coap"])
    return ctx


def ws_upgrade_request(host: str, key: bytes | None = None) -> tuple[bytes, str]:
    """The HTTP upgrade request of RFC 8323 section 4.1 and the Sec-WebSocket-Accept it
    expects (RFC 6455 section 4.2.2)."""
    key_text = base64.b64encode(key or os.urandom(16)).decode()
    accept = base64.b64encode(
        hashlib.sha1((key_text + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    request = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key_text}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: coap\r\n\r\n"
    ).encode()
    return request, accept


# Linux tcp_info.tcpi_state values (include/net/tcp_states.h)
TCP_STATES = {1: "established", 2: "syn-sent", 4: "fin-wait1", 5: "fin-wait2",
              6: "time-wait", 7: "closed", 8: "close-wait", 9: "last-ack", 11: "closing"}


def tcp_state(sock: socket.socket | None) -> str:
    """The kernel's state of a TCP socket: 'established', 'close-wait' (the server sent
    FIN), 'closed' (reset), ... without reading from it."""
    if sock is None:
        return "closed"
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return "closed"
    return TCP_STATES.get(info[0], f"state-{info[0]}")


async def open_socket(
    host: str, port: int, source: str | None = None, rcvbuf: int | None = None,
    timeout: float = 5.0,
) -> socket.socket:
    """A connected non-blocking TCP socket, bound to ``source`` and with a small receive
    buffer if asked (set before connecting, so the window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)),
                               timeout)
    except BaseException:
        sock.close()
        raise
    return sock


class Conn:
    """One client connection to a CoAP server over ``tcp``, ``tls`` or ``ws``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 transport: str) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = transport
        self.ws = transport == "ws"
        self.sock: socket.socket | None = writer.get_extra_info("socket")
        self.server_csm: Msg | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, transport: str = "tcp", *, source: str | None = None,
        rcvbuf: int | None = None, timeout: float = 5.0, handshake: bool = True,
    ) -> Conn:
        """Connect (and for ``ws`` do the opening handshake unless ``handshake`` is false)."""
        sock = await open_socket(host, port, source, rcvbuf, timeout)
        try:
            if transport == "tls":
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(sock=sock, ssl=tls_context(),
                                            server_hostname="localhost"), timeout)
            else:
                reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        conn = cls(reader, writer, transport)
        if transport == "ws" and handshake:
            try:
                await asyncio.wait_for(conn.ws_handshake(f"{host}:{port}"), timeout)
            except BaseException:
                conn.abort()
                raise
        return conn

    async def ws_handshake(self, host: str) -> None:
        request, accept = ws_upgrade_request(host)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise Closed(f"WebSocket upgrade refused: {lines[0]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if headers.get("sec-websocket-accept") != accept:
            raise Closed("bad Sec-WebSocket-Accept")

    # -- sending ------------------------------------------------------------------------

    def encode(self, code: int, token: bytes = b"", options: list[tuple[int, bytes]] | None = None,
               payload: bytes = b"") -> bytes:
        """The bytes of one message on this connection's transport."""
        if self.ws:
            return ws_frame(ws_coap(code, token, options, payload))
        return tcp_frame(code, token, options, payload)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, code: int, token: bytes = b"", options: list[tuple[int, bytes]] | None = None,
             payload: bytes = b"") -> None:
        self.writer.write(self.encode(code, token, options, payload))

    def send_csm(self, max_message_size: int | None = None, bert: bool = False) -> None:
        self.send(CSM, options=csm_options(max_message_size, bert))

    async def drain(self, timeout: float) -> bool:
        """Wait until our buffered output went to the kernel; False on timeout or when the
        server closed the connection."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except (TimeoutError, ConnectionError):
            return False
        return True

    # -- reading ------------------------------------------------------------------------

    async def read(self) -> Msg:
        """The next CoAP message (signaling included); raises :class:`Closed` at EOF."""
        try:
            if self.ws:
                return await self._read_ws()
            return await self._read_tcp()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as error:
            raise Closed(str(error) or type(error).__name__) from None

    async def read_csm(self, timeout: float = 5.0) -> Msg:
        msg = await asyncio.wait_for(self.read(), timeout)
        if msg.code != CSM:
            raise Closed(f"expected the server's CSM, got {msg.dotted}")
        self.server_csm = msg
        return msg

    async def _read_tcp(self) -> Msg:
        first = await self.reader.readexactly(1)
        nib, tkl = first[0] >> 4, first[0] & 15
        if nib < 13:
            blen = nib
        else:
            ext = (1, 2, 4)[nib - 13]
            blen = int.from_bytes(await self.reader.readexactly(ext), "big") + (
                13, 269, 65805)[nib - 13]
        rest = await self.reader.readexactly(1 + tkl + blen)
        options, payload = decode_options(rest[1 + tkl :])
        return Msg(rest[0], rest[1 : 1 + tkl], options, payload)

    async def _read_ws(self) -> Msg:
        data = b""
        while True:
            head = await self.reader.readexactly(2)
            fin, opcode, length = head[0] & 0x80, head[0] & 15, head[1] & 127
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(f"WebSocket close {code} {payload[2:]!r}")
            if opcode == 9:
                self.writer.write(ws_frame(payload, opcode=10))
                continue
            if opcode == 10:
                continue
            data += payload
            if fin:
                break
        tkl = data[0] & 15
        options, body = decode_options(data[2 + tkl :])
        return Msg(data[1], data[2 : 2 + tkl], options, body)

    def pause_reading(self) -> None:
        """Never read again (what the kernel buffers stays there)."""
        transport = self.writer.transport
        if hasattr(transport, "pause_reading"):
            transport.pause_reading()

    def resume_reading(self) -> None:
        self.writer.transport.resume_reading()

    # -- state --------------------------------------------------------------------------

    def state(self) -> str:
        """The TCP state, whether or not we read ('established' while it is open)."""
        if self.writer.transport.is_closing() and self.sock is None:
            return "closed"
        return tcp_state(self.sock)

    def abort(self) -> None:
        """Close at once (RST if data is unread: we are going away)."""
        transport = self.writer.transport
        try:
            if self.sock is not None and self.sock.fileno() >= 0:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        transport.abort()
