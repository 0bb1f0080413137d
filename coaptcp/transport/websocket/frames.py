"""The common WebSocket data frames, read and written without autobahn (RFC 6455 section 5).

CoAP over WebSockets (RFC 8323 section 4.2) sends every CoAP message alone in one binary
WebSocket message, and we never fragment, so after the opening handshake nearly every
frame on the wire is a final (FIN), binary, extension-free data frame.  This module
encodes and parses exactly those frames; :mod:`coaptcp.transport.websocket.fastpath` uses it
beside autobahn, and hands autobahn every frame that is not this common case (control
frames, text, fragments, RSV bits, bad masking, lengths over our limit, incomplete
frames), so that autobahn's handling of those is unchanged.

Sans-I/O: bytes in, bytes out; no Twisted.
"""

from __future__ import annotations

import os

# autobahn 26.x (autobahn.websocket.xormasker, not in its documented API): the masker
# autobahn masks its own frames with, a C extension (wsaccel or NVX) when available.
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]

__all__ = [
    "FIN_BINARY",
    "WEBSOCKET_VERSION",
    "encode_frames",
    "mask_payload",
    "next_frame",
]

#: The only WebSocket version we speak (RFC 6455 sections 4.1 and 4.4).
WEBSOCKET_VERSION = 13

#: The first byte of a final, unfragmented binary frame without RSV bits (section 5.2).
FIN_BINARY = 0x82
#: The second byte's MASK bit (section 5.2).
_MASK_BIT = 0x80

#: Up to this length the XOR of a payload with its mask is done with Python integers
#: (fastest for CoAP's typical 10-100 byte messages); longer payloads use autobahn's
#: masker (a C extension when available), which wins from a few KiB on.
_INT_MASK_LIMIT = 2048

_HEADS_7BIT = [bytes((FIN_BINARY, n)) for n in range(126)]
_HEADS_7BIT_MASKED = [bytes((FIN_BINARY, _MASK_BIT | n)) for n in range(126)]


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Masking and unmasking are the same operation.
    """
    n = len(payload)
    if n <= _INT_MASK_LIMIT:
        key = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    result: bytes = create_xor_masker(mask, n).process(payload)
    return result


def _head(length: int, masked: bool) -> bytes:
    """The header of a FIN binary frame of ``length`` bytes, before any masking key."""
    if length < 126:
        return (_HEADS_7BIT_MASKED if masked else _HEADS_7BIT)[length]
    second = 0xFE if masked else 0x7E
    if length < 0x10000:
        return bytes((FIN_BINARY, second)) + length.to_bytes(2, "big")
    return bytes((FIN_BINARY, second | 1)) + length.to_bytes(8, "big")


def encode_frames(payloads: list[bytes], *, masked: bool = False) -> bytes:
    """Each payload as one final binary frame, all joined (RFC 6455 section 5.2).

    Server frames are not masked (section 5.1).  With ``masked`` (a client's frames),
    every frame gets a fresh random 4-byte masking key (section 5.3).
    """
    parts: list[bytes] = []
    append = parts.append
    if masked:
        keys = os.urandom(4 * len(payloads))
        for index, payload in enumerate(payloads):
            key = keys[4 * index : 4 * index + 4]
            append(_head(len(payload), True))
            append(key)
            append(mask_payload(payload, key))
    else:
        heads = _HEADS_7BIT
        for payload in payloads:
            length = len(payload)
            append(heads[length] if length < 126 else _head(length, False))
            append(payload)
    return b"".join(parts)


def next_frame(data: bytes, pos: int, max_payload: int, masked: bool) -> tuple[bytes, int] | None:
    """The payload of the common-case frame at ``data[pos:]`` and where the next begins.

    The common case is a complete frame with FIN set, no RSV bits, the binary opcode,
    the MASK bit equal to ``masked`` (a server reads masked client frames, a client
    unmasked server frames: section 5.1), a minimally encoded length (section 5.2) of at
    most ``max_payload`` bytes.  The payload is returned unmasked.  ``None`` for anything
    else: the caller hands the bytes from ``pos`` on to the full WebSocket implementation,
    which handles them (or buffers an incomplete frame).
    """
    available = len(data) - pos
    if available < 2 or data[pos] != FIN_BINARY:
        return None
    second = data[pos + 1]
    if bool(second & _MASK_BIT) != masked:
        return None
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if available < 4:
            return None
        length = int.from_bytes(data[start : start + 2], "big")
        if length < 126:
            return None
        start += 2
    elif length == 127:
        if available < 10:
            return None
        length = int.from_bytes(data[start : start + 8], "big")
        if length < 0x10000 or length >> 63:
            return None
        start += 8
    if length > max_payload:
        return None
    if masked:
        end = start + 4 + length
        if end > len(data):
            return None
        return mask_payload(data[start + 4 : end], data[start : start + 4]), end
    end = start + length
    if end > len(data):
        return None
    return data[start:end], end
