"""Building and reading CoAP-over-TCP frames by hand (RFC 8323 section 3.2), for a test
that plays the peer: :func:`csm`, :func:`get`, :func:`custody_ping`, :func:`frames`, and
:func:`decode_all` or a :class:`FrameReader` for what the code under test wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import CsmOption, Options, PingPongOption

__all__ = ["FrameReader", "csm", "custody_ping", "decode_all", "frames", "get"]

#: Large enough for any frame a test reads back: the reader never refuses one.
_READ_LIMIT = 1 << 30


def csm(max_message_size: int | None = None, *, block_wise: bool = False) -> Message:
    """A Capabilities and Settings Message (RFC 8323 section 5.3).

    With ``max_message_size``, the Max-Message-Size option (5.3.1); without, the peer
    keeps the default of 1152 bytes.  ``block_wise`` adds Block-Wise-Transfer (5.3.2).
    """
    items: list[tuple[int, Any]] = []
    if max_message_size is not None:
        items.append((int(CsmOption.MAX_MESSAGE_SIZE), max_message_size))
    if block_wise:
        items.append((int(CsmOption.BLOCK_WISE_TRANSFER), None))
    return Message(Code.CSM, options=Options(items))


def custody_ping(token: bytes) -> Message:
    """A Ping with the Custody option (RFC 8323 section 5.4.1)."""
    return Message(Code.PING, token, Options([(PingPongOption.CUSTODY, None)]))


def get(
    token: bytes,
    *path: str,
    query: Iterable[str] = (),
    extra: Iterable[tuple[int, Any]] = (),
) -> Message:
    """A GET request for ``path`` (Uri-Path segments), with Uri-Query items and any
    ``extra`` options as ``(number, value)`` pairs (RFC 7252 section 5.10)."""
    options = Options.build(uri_path=path, uri_query=tuple(query))
    for number, value in extra:
        options = options.add(number, value)
    return Message(Code.GET, token, options)


def frames(*messages: Message) -> bytes:
    """``messages`` encoded as one byte stream of CoAP-over-TCP frames."""
    return b"".join(encode_frame(m) for m in messages)


def decode_all(data: bytes) -> list[Message]:
    """Decode a whole byte stream of frames; fails if a frame is left incomplete."""
    reader = FrameReader()
    out = reader.feed(data)
    assert reader.buffered == 0, f"{reader.buffered} bytes of an incomplete frame"
    return out


class FrameReader:
    """Decodes a byte stream that arrives in pieces: :meth:`feed` returns the frames
    completed so far and keeps the start of an incomplete one for the next call."""

    def __init__(self) -> None:
        self._decoder = StreamDecoder(_READ_LIMIT)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held for the next :meth:`feed`."""
        return self._decoder.buffered

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data``; return every message it completes, in order."""
        self._decoder.feed(data)
        out: list[Message] = []
        while (message := self._decoder.next_message()) is not None:
            out.append(message)
        return out
