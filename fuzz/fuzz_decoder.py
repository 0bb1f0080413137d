"""Fuzz target: the frame decoders (RFC 8323 sections 3.2 and 4.4).

Input layout: one configuration byte (Max-Message-Size choice, buffer kind), one split
seed, then the byte stream.

Invariants checked for every input:

* :class:`~coaptcp.core.framing.StreamDecoder` yields messages, asks for more bytes, or
  raises :class:`~coaptcp.core.errors.MessageFormatError`; never another exception.
* Split invariance: feeding the stream whole, in 1-byte pieces or in random pieces (as
  ``bytes`` or as a ``bytearray`` the caller scribbles over after feeding) gives the same
  messages, the same error and the same number of unread bytes.
* Round trip: the wire format is canonical, so re-encoding the decoded messages with
  :func:`~coaptcp.core.framing.encode_frame` gives back exactly the bytes consumed; and no
  decoded frame is larger than the Max-Message-Size.
* :func:`~coaptcp.core.framing.decode_ws_frame` on the whole input gives a message that
  re-encodes to the input, or a MessageFormatError; every decoded message survives a
  WebSocket round trip.

Run: ``python fuzz/fuzz_decoder.py`` (see fuzz/README.md).
"""

from __future__ import annotations

import random
import sys

from fuzzlib import Reader, check, fuzz_main, instrumented

with instrumented(__name__):
    from coaptcp.core.errors import MessageFormatError
    from coaptcp.core.framing import (
        StreamDecoder,
        decode_ws_frame,
        encode_frame,
        encode_ws_frame,
    )
    from coaptcp.core.message import Message

CORPUS = "decoder"

#: Max-Message-Size values the configuration byte picks from (16 is the smallest a
#: Connection accepts; 66048 is our default; the last is "no practical limit").
MAX_MESSAGE_SIZES = (16, 64, 1152, 1153, 66048, 1 << 20, 1 << 33)

Outcome = tuple[list[Message], str | None, int | None]


def _decode(chunks: list[bytes | bytearray], max_message_size: int, scribble: bool) -> Outcome:
    decoder = StreamDecoder(max_message_size)
    messages: list[Message] = []
    for chunk in chunks:
        decoder.feed(chunk)  # type: ignore[arg-type]
        if scribble and isinstance(chunk, bytearray):
            chunk[:] = b"\x00" * len(chunk)  # the decoder must have copied what it keeps
        while True:
            try:
                message = decoder.next_message()
            except MessageFormatError as error:
                check(error.diagnostic, "a MessageFormatError without a diagnostic")
                return messages, error.diagnostic, None
            if message is None:
                break
            messages.append(message)
    return messages, None, decoder.buffered


def _split(stream: bytes, seed: int) -> list[bytes]:
    if seed == 0:
        return [stream[i : i + 1] for i in range(len(stream))]
    rng = random.Random(seed)
    chunks = []
    i = 0
    while i < len(stream):
        n = rng.choice((1, 2, 3, 5, 8, 13, 64, 1000))
        chunks.append(stream[i : i + n])
        i += n
    return chunks


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    config = reader.u8()
    seed = reader.u8()
    max_message_size = MAX_MESSAGE_SIZES[config % len(MAX_MESSAGE_SIZES)]
    stream = reader.rest()

    whole = _decode([stream], max_message_size, False)
    messages, error, buffered = whole

    chunks = _split(stream, seed)
    pieces: list[bytes | bytearray] = list(chunks)
    if config & 0x80:
        pieces = [bytearray(c) for c in chunks]
    split = _decode(pieces, max_message_size, True)
    check(
        split == whole,
        lambda: f"split feeding differs: whole {whole!r}, in pieces {split!r}",
    )

    encoded = b"".join(encode_frame(m) for m in messages)
    check(
        stream.startswith(encoded),
        lambda: f"re-encoding the decoded messages does not give the input: {encoded!r}",
    )
    if error is None:
        check(
            len(encoded) + (buffered or 0) == len(stream),
            lambda: f"{len(encoded)} bytes decoded + {buffered} unread != {len(stream)}",
        )
    for message in messages:
        size = len(encode_frame(message))
        check(size <= max_message_size, f"a {size}-byte frame passed a limit of {max_message_size}")
        ws = encode_ws_frame(message)
        check(decode_ws_frame(ws, 1 << 40) == message, "WebSocket round trip changed a message")

    try:
        ws_message = decode_ws_frame(stream, max_message_size)
    except MessageFormatError as ws_error:
        check(ws_error.diagnostic, "a MessageFormatError without a diagnostic")
    else:
        check(
            encode_ws_frame(ws_message) == stream,
            lambda: f"WebSocket message does not re-encode to its input: {ws_message!r}",
        )


if __name__ == "__main__":
    fuzz_main(test_one_input, CORPUS)
    sys.exit(0)
