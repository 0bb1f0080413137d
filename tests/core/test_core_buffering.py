"""No quadratic buffering: many frames in one chunk, one large frame in 1-byte chunks.

There are no timing assertions here.  Correctness is checked everywhere; the "no copy per
frame" property is checked structurally with tracemalloc: while frames are pulled out of one
big chunk, the decoder must never allocate anything close to the size of the unread buffer.
A decoder that re-slices or re-copies the remaining buffer per frame (``data = data[end:]``,
``bytearray(data[pos:])``, ``del buf[:n]`` into a new object) allocates a remainder-sized
object at the first frame already, which this catches.
"""

from __future__ import annotations

import gc
import tracemalloc

from coaptcp.core.codes import Code
from coaptcp.core.connection import Connection, Role
from coaptcp.core.events import CsmReceived, RequestReceived
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

FRAMES = 20_000


def small_messages(count: int) -> list[Message]:
    codes = [Code.GET, Code.CONTENT, Code.PING, Code.NOT_FOUND, Code.POST]
    out = []
    for i in range(count):
        token = i.to_bytes(4, "big")[: i % 5]
        options = Options([(11, f"r{i % 7}"), (12, i % 3)]) if i % 3 else Options()
        payload = bytes([i & 0xFF]) * (i % 11)
        out.append(Message(codes[i % len(codes)], token, options, payload))
    return out


def test_twenty_thousand_frames_in_one_chunk_decode_without_copying() -> None:
    messages = small_messages(FRAMES)
    chunk = b"".join(encode_frame(m) for m in messages)
    decoder = StreamDecoder(1 << 20)
    decoder.feed(chunk)

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        count = 0
        mismatches = 0
        while (message := decoder.next_message()) is not None:
            if message != messages[count]:
                mismatches += 1
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == FRAMES
    assert mismatches == 0
    assert decoder.buffered == 0
    assert decoder.next_message() is None
    # Messages are dropped as we go, so the peak is a few messages' worth.  A copy of the
    # unread buffer would be ~len(chunk) bytes (here ~200 KB).
    extra = peak - before
    assert len(chunk) > 150_000
    assert extra < len(chunk) // 10, (
        f"decoder allocated {extra} bytes for a {len(chunk)}-byte chunk"
    )


def test_twenty_thousand_frames_in_odd_sized_chunks() -> None:
    messages = small_messages(FRAMES)
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = StreamDecoder(1 << 20)
    out: list[Message] = []
    position = 0
    step = 0
    sizes = [1, 7, 2, 64, 3, 1000, 5]
    while position < len(stream):
        size = sizes[step % len(sizes)]
        step += 1
        decoder.feed(stream[position : position + size])
        position += size
        while (message := decoder.next_message()) is not None:
            out.append(message)
    assert out == messages
    assert decoder.buffered == 0


def test_sixty_kb_frame_in_one_byte_chunks() -> None:
    # Correctness only: no honest timing-free way to prove the appends are amortised O(1)
    # (a bytes-concatenating decoder has the same peak memory), so this checks the result
    # and the buffered count at every step.
    payload = bytes(range(256)) * 240  # 61,440 bytes
    message = Message(Code.CONTENT, b"\x01\x02", Options([(12, 42), (28, len(payload))]), payload)
    wire = encode_frame(message)
    assert wire[0] >> 4 == 14  # a Len=14 frame
    following = encode_frame(Message(Code.PING, b"\x09"))
    stream = wire + following
    decoder = StreamDecoder(1 << 20)
    out: list[Message] = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        message_out = decoder.next_message()
        if message_out is not None:
            out.append(message_out)
            assert i in (len(wire) - 1, len(stream) - 1)
        elif i < len(wire):
            assert decoder.buffered == i + 1
        else:
            assert decoder.buffered == i + 1 - len(wire)
    assert out == [message, Message(Code.PING, b"\x09")]
    assert decoder.buffered == 0


def test_connection_many_requests_in_one_chunk() -> None:
    conn = Connection(Role.ACCEPTOR)
    conn.start()
    conn.data_to_send()
    requests = [
        Message(Code.GET, i.to_bytes(2, "big"), Options([(11, "x")])) for i in range(FRAMES)
    ]
    chunk = encode_frame(Message(Code.CSM)) + b"".join(encode_frame(m) for m in requests)
    events = conn.receive_data(chunk)
    assert isinstance(events[0], CsmReceived)
    assert [e.message for e in events[1:] if isinstance(e, RequestReceived)] == requests
    assert len(events) == FRAMES + 1
    assert conn.data_to_send() == []


def _wire() -> bytes:
    return encode_frame(Message(Code.GET, b"\x01", Options([(11, "abc")]), b"payload"))


def test_feed_does_not_mutate_or_alias_a_callers_bytearray() -> None:
    # The decoder keeps what it is fed without copying; it must not do that with a mutable
    # buffer the caller may reuse (recv_into-style readers) or extend it in place.
    wire = _wire()
    first = bytearray(wire + wire[:3])
    decoder = StreamDecoder(1024)
    decoder.feed(first)
    assert decoder.next_message() is not None
    assert decoder.next_message() is None
    first[:] = b"\x0f" * len(first)  # the caller reuses its buffer
    decoder.feed(bytearray(wire[3:]))
    assert first == bytearray(b"\x0f" * len(first))
    assert decoder.next_message() == decode_one(wire)
    assert decoder.buffered == 0


def test_feed_accepts_memoryview_chunks() -> None:
    wire = _wire()
    decoder = StreamDecoder(1024)
    out = []
    for i in range(len(wire)):
        decoder.feed(memoryview(wire)[i : i + 1])
        if (message := decoder.next_message()) is not None:
            out.append(message)
    assert out == [decode_one(wire)]


def test_connection_receive_data_with_reused_bytearray() -> None:
    conn = Connection(Role.ACCEPTOR)
    conn.start()
    conn.data_to_send()
    stream = encode_frame(Message(Code.CSM)) + _wire() * 3
    buffer = bytearray(5)
    events = []
    for i in range(0, len(stream), 5):
        piece = stream[i : i + 5]
        buffer[: len(piece)] = piece
        events.extend(conn.receive_data(memoryview(buffer)[: len(piece)]))  # type: ignore[arg-type]
    assert [type(e) for e in events] == [CsmReceived] + [RequestReceived] * 3
    assert all(e.message == decode_one(_wire()) for e in events[1:])


def decode_one(wire: bytes) -> Message:
    decoder = StreamDecoder(1 << 20)
    decoder.feed(wire)
    message = decoder.next_message()
    assert message is not None
    return message
