"""Wire helpers for the hostile-peer tests: build frames by hand, decode what the server wrote.

Frames are built here from the RFC 8323 section 3.2 layout (not with coaptcp's encoder), so
a bug in the encoder cannot hide a bug in the decoder.  What the server wrote is decoded with
:class:`coaptcp.core.framing.StreamDecoder` with a limit far above anything sent.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from coaptcp.core.framing import StreamDecoder
from coaptcp.core.message import Message

#: Codes as wire bytes (RFC 7252 section 12.1, RFC 8323 section 5.1).
GET = 0x01
CONTENT = 0x45
BAD_OPTION = 0x82
CSM = 0xE1
PING = 0xE2
PONG = 0xE3
ABORT = 0xE5
BAD_CSM_OPTION = 2  # Abort option number (RFC 8323 section 5.6)

HELLO_TEXT = b"Hello, world!"

#: Our own Max-Message-Size (coaptcp.core.connection.DEFAULT_MAX_MESSAGE_SIZE), written out.
SERVER_MAX_MESSAGE_SIZE = 64 * 1024 + 512


def open_connection(port: int, timeout: float) -> socket.socket:
    """A plain TCP connection to the server on 127.0.0.1, every operation bounded."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_eof(sock: socket.socket, *, reset_is_eof: bool = False) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the link open past
    the socket's timeout.  With ``reset_is_eof`` a reset ends the read too (a TLS server
    that drops a connection mid-handshake may reset it)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            got = b"".join(chunks)
            raise AssertionError(
                f"server did not close within {sock.gettimeout()}s; got {got!r}"
            ) from None
        except ConnectionResetError:
            if not reset_is_eof:
                raise
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _nibble(n: int, ext: bytearray) -> int:
    if n < 13:
        return n
    if n < 269:
        ext.append(n - 13)
        return 13
    ext.extend((n - 269).to_bytes(2, "big"))
    return 14


def option_bytes(options: list[tuple[int, bytes]]) -> bytes:
    """Encode (number, value) pairs, already sorted, with delta/length nibbles."""
    out = bytearray()
    previous = 0
    for number, value in options:
        ext = bytearray()
        delta = _nibble(number - previous, ext)
        length = _nibble(len(value), ext)
        previous = number
        out.append(delta << 4 | length)
        out += ext
        out += value
    return bytes(out)


def frame(code: int, token: bytes = b"", body: bytes = b"") -> bytes:
    """One TCP frame: Len/TKL, extended length, code, token, body (options + payload)."""
    assert len(token) <= 8
    n = len(body)
    if n < 13:
        header = bytes([n << 4 | len(token), code])
    elif n < 269:
        header = bytes([0xD0 | len(token), n - 13, code])
    elif n < 65805:
        header = bytes([0xE0 | len(token)]) + (n - 269).to_bytes(2, "big") + bytes([code])
    else:
        header = bytes([0xF0 | len(token)]) + (n - 65805).to_bytes(4, "big") + bytes([code])
    return header + token + body


def get(path: str, token: bytes = b"") -> bytes:
    """A GET request frame for a one-or-more segment path such as ``hello``."""
    segments = [(11, s.encode()) for s in path.split("/") if s]
    return frame(GET, token, option_bytes(segments))


#: The minimal CSM: no options (base values).
EMPTY_CSM = bytes([0x00, CSM])
GET_HELLO = get("hello")


def decode_all(data: bytes) -> tuple[list[Message], int]:
    """Decode every complete frame in ``data``; also return how many bytes are left over."""
    decoder = StreamDecoder(1 << 40)
    decoder.feed(data)
    messages = []
    while True:
        message = decoder.next_message()
        if message is None:
            return messages, decoder.buffered
        messages.append(message)


@dataclass
class AbortSeen:
    diagnostic: str
    bad_csm_option: int | None


def check_csm_then_abort(data: bytes) -> AbortSeen:
    """Assert ``data`` is exactly our CSM followed by exactly one Abort with a diagnostic."""
    messages, leftover = decode_all(data)
    assert leftover == 0, f"{leftover} stray bytes after the frames: {data!r}"
    codes = [int(m.code) for m in messages]
    assert codes == [CSM, ABORT], f"expected CSM then Abort, got {messages!r}"
    check_server_csm(messages[0])
    abort = messages[1]
    assert abort.token == b""
    assert abort.payload, "the Abort carries no diagnostic payload"
    diagnostic = abort.payload.decode("utf-8")  # strict: must be UTF-8
    assert diagnostic.strip(), f"blank diagnostic {abort.payload!r}"
    bad_values = [v for n, v in abort.options.items if n == BAD_CSM_OPTION]
    other = [n for n, _ in abort.options.items if n != BAD_CSM_OPTION]
    assert not other, f"unexpected Abort options {other}"
    assert len(bad_values) <= 1
    bad = int.from_bytes(bad_values[0], "big") if bad_values else None
    return AbortSeen(diagnostic, bad)


def check_server_csm(message: Message) -> None:
    """Our CSM: code 7.01, empty token, Max-Message-Size = 66048, no payload."""
    assert int(message.code) == CSM
    assert message.token == b""
    assert message.payload == b""
    mms = [v for n, v in message.options.items if n == 2]
    assert mms == [SERVER_MAX_MESSAGE_SIZE.to_bytes(3, "big")], message


def check_hello_answer(data: bytes, token: bytes) -> None:
    """Assert ``data`` is our CSM and then one 2.05 "Hello, world!" for ``token``."""
    messages, leftover = decode_all(data)
    assert leftover == 0
    assert len(messages) == 2, messages
    check_server_csm(messages[0])
    response = messages[1]
    assert int(response.code) == CONTENT, response
    assert response.token == token
    assert response.payload == HELLO_TEXT


@dataclass(frozen=True)
class Hostile:
    """One hostile input: the bytes, words the Abort's diagnostic must contain, and the
    Bad-CSM-Option number the Abort must carry (``None``: it must carry none)."""

    id: str
    data: bytes
    words: tuple[str, ...]
    bad_csm_option: int | None = None


# A TLS 1.2 ClientHello's first bytes, as a coaps+tcp client sends them to a coap+tcp port.
# 0x16 = Len 1, TKL 6; code 0x03 (PUT); token 01 00 f4 01 00 00; body f0 = option delta 15.
TLS_CLIENT_HELLO = bytes.fromhex("160301 00f4 01 0000f0 0303") + bytes(range(32))

# 'G' = 0x47: Len 4, TKL 7.  Code 'E' = 0x45 (2.05), token "T / HTT", body "P/1.":
# 'P' = 0x50 is option 5 (delta 5, length 0), '/' = 0x2f has length nibble 15: reserved.
HTTP_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

# 'P' = 0x50: Len 5, TKL 0.  Code 'R' = 0x52 (2.18), body "I * H": 'I' = 0x49 is option
# 4 with a 9-byte value, but only 4 bytes of the body follow.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

FOUR_GIB = bytes.fromhex("f0ffffffffe1")  # Len 15, extended length 0xffffffff: ~4 GiB
ANNOUNCED_4GIB = str(0xFFFFFFFF + 65805 + 6)  # the whole frame's size, in the diagnostic
# Len 15 with an extended length making the frame exactly one byte over our limit.
ONE_OVER = (
    bytes([0xF0]) + (SERVER_MAX_MESSAGE_SIZE + 1 - 6 - 65805).to_bytes(4, "big") + bytes([GET])
)

HOSTILE_CASES = [
    Hostile("http-get", HTTP_GET, ("reserved option length 15",)),
    Hostile("http2-preface", HTTP2_PREFACE, ("option 4", "runs past")),
    Hostile("tls-client-hello", TLS_CLIENT_HELLO, ("reserved option delta 15",)),
    # Truncated option extended length/delta inside a complete frame.
    Hostile(
        "opt-len13-truncated", EMPTY_CSM + frame(GET, b"", b"\x0d"), ("option length extension",)
    ),
    Hostile(
        "opt-len14-truncated",
        EMPTY_CSM + frame(GET, b"", b"\x0e\x00"),
        ("option length extension",),
    ),
    Hostile(
        "opt-delta13-truncated", EMPTY_CSM + frame(GET, b"", b"\xd0"), ("option delta extension",)
    ),
    Hostile(
        "opt-delta14-truncated",
        EMPTY_CSM + frame(GET, b"", b"\xe0\x01"),
        ("option delta extension",),
    ),
    Hostile(
        "opt-value-truncated", EMPTY_CSM + frame(GET, b"", b"\xb5hel"), ("option 11", "runs past")
    ),
    Hostile(
        "opt-number-overflow", EMPTY_CSM + frame(GET, b"", b"\xe0\xff\xff"), ("exceeds 65535",)
    ),
    # Announced lengths beyond our Max-Message-Size: rejected before any body arrives.
    Hostile("4gib-after-csm", EMPTY_CSM + FOUR_GIB, ("Max-Message-Size", ANNOUNCED_4GIB)),
    Hostile("4gib-first", FOUR_GIB, ("Max-Message-Size", ANNOUNCED_4GIB)),
    Hostile("4gib-header-only", FOUR_GIB[:5], ("Max-Message-Size", ANNOUNCED_4GIB)),
    Hostile(
        "one-byte-over-mms",
        EMPTY_CSM + ONE_OVER,
        ("Max-Message-Size", str(SERVER_MAX_MESSAGE_SIZE + 1)),
    ),
    # Token lengths 9-15 are reserved.
    *(
        Hostile(f"tkl{tkl}-first", bytes([tkl, CSM]) + bytes(tkl), ("token length", str(tkl)))
        for tkl in range(9, 16)
    ),
    Hostile("tkl9-after-csm", EMPTY_CSM + bytes([0x09, GET]) + bytes(9), ("token length 9",)),
    # Anything but a CSM (or Empty, or Abort) first.
    Hostile("get-before-csm", GET_HELLO, ("expected a CSM", "0.01")),
    Hostile(
        "post-before-csm", frame(0x02, b"\x01", b"\xff" + b"x" * 20), ("expected a CSM", "0.02")
    ),
    Hostile("ping-before-csm", frame(PING), ("expected a CSM", "7.02")),
    Hostile("response-before-csm", frame(CONTENT, b"\x07"), ("expected a CSM", "2.05")),
    # CSM options (RFC 8323 section 5.3): unknown critical ones and invalid values.
    Hostile("csm-critical-9", bytes.fromhex("10e190"), ("unknown critical option 9",), 9),
    Hostile(
        "csm-critical-1",
        frame(CSM, b"", option_bytes([(1, b"")])),
        ("unknown critical option 1",),
        1,
    ),
    Hostile(
        "csm-critical-65535",
        frame(CSM, b"", option_bytes([(65535, b"")])),
        ("unknown critical option 65535",),
        65535,
    ),
    Hostile(
        "csm-critical-in-second-csm",
        EMPTY_CSM + frame(CSM, b"", option_bytes([(2, b"\x04\x00"), (9, b"x")])),
        ("unknown critical option 9",),
        9,
    ),
    Hostile(
        "csm-mms-5-bytes",
        frame(CSM, b"", option_bytes([(2, b"\x00\x00\x01\x00\x00")])),
        ("Max-Message-Size",),
        2,
    ),
    Hostile(
        "csm-mms-too-small", frame(CSM, b"", option_bytes([(2, b"\x0f")])), ("Max-Message-Size",), 2
    ),
    Hostile(
        "csm-bwt-not-empty",
        frame(CSM, b"", option_bytes([(4, b"\x01")])),
        ("Block-Wise-Transfer",),
        4,
    ),
    # Message format errors.
    Hostile(
        "payload-marker-no-payload", EMPTY_CSM + frame(GET, b"\x01", b"\xff"), ("payload marker",)
    ),
    Hostile("csm-payload-marker-no-payload", frame(CSM, b"", b"\xff"), ("payload marker",)),
    Hostile("code-1.00", EMPTY_CSM + frame(0x20), ("reserved class", "1.00")),
    Hostile("code-1.31", EMPTY_CSM + frame(0x3F), ("reserved class", "1.31")),
    Hostile("code-3.00", EMPTY_CSM + frame(0x60), ("reserved class", "3.00")),
    Hostile("code-6.00", EMPTY_CSM + frame(0xC0), ("reserved class", "6.00")),
    Hostile("code-6.31-first", frame(0xDF), ("reserved class", "6.31")),
    Hostile(
        "option-delta-nibble-15",
        EMPTY_CSM + frame(GET, b"", b"\xf0"),
        ("reserved option delta 15",),
    ),
    Hostile(
        "option-length-nibble-15",
        EMPTY_CSM + frame(GET, b"", b"\x0f"),
        ("reserved option length 15",),
    ),
    Hostile(
        "option-length-15-after-options",
        EMPTY_CSM + frame(GET, b"\x01", option_bytes([(11, b"hello")]) + b"\x1f"),
        ("reserved option length 15",),
    ),
]


# -- the server subprocess (see the coap_server fixture) ----------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def log_problems(log: str) -> list[str]:
    """Lines of the server log that show an unhandled error."""
    return [
        line
        for line in log.splitlines()
        if "Traceback" in line or "Unhandled" in line or "CRITICAL" in line
    ]
