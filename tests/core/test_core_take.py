"""``StreamDecoder.take``: many frames of one read in one call, within a limit, and the
messages before a malformed frame kept (RFC 8323 section 3.2)."""

from __future__ import annotations

import pytest

from coaptcp.core.codes import Code
from coaptcp.core.connection import Connection, Role
from coaptcp.core.errors import MessageFormatError
from coaptcp.core.events import ConnectionAborted, RequestReceived
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

GET = Options.build(uri_path=["t"])


def frames(count: int) -> bytes:
    return b"".join(encode_frame(Message(Code.GET, bytes([i]), GET)) for i in range(count))


def test_take_returns_every_complete_frame_and_keeps_a_partial_one() -> None:
    decoder = StreamDecoder(1 << 16)
    out: list[Message] = []
    data = frames(3)
    assert decoder.take(data + data[:3], out) == 3
    assert [m.token for m in out] == [b"\x00", b"\x01", b"\x02"]
    assert decoder.buffered == 3
    assert decoder.take(data[3 : len(data) // 3], out) == 0  # the rest of that frame
    assert [m.token for m in out][3:] == [b"\x00"]
    assert decoder.buffered == 0


def test_take_stops_at_the_limit_and_says_more_is_buffered() -> None:
    decoder = StreamDecoder(1 << 16)
    out: list[Message] = []
    assert decoder.take(frames(5), out, 2) == len(frames(3))
    assert len(out) == 2
    assert decoder.take(b"", out, 3) == 0  # exactly the rest: nothing more buffered
    assert [m.token for m in out] == [bytes([i]) for i in range(5)]
    assert decoder.buffered == 0


def test_the_messages_before_a_malformed_frame_are_in_out_when_it_raises() -> None:
    decoder = StreamDecoder(1 << 16)
    out: list[Message] = []
    with pytest.raises(MessageFormatError):
        decoder.take(frames(2) + b"\x09\x01", out)  # token length 9 is reserved
    assert [m.token for m in out] == [b"\x00", b"\x01"]


def test_a_bytearray_read_is_copied_not_kept() -> None:
    decoder = StreamDecoder(1 << 16)
    data = bytearray(frames(1) + b"\x01")
    out: list[Message] = []
    decoder.take(data, out)
    data[-1] = 0xFF  # the caller reuses its buffer
    decoder.take(b"\x01\x02", out)  # the rest of the second frame: a GET, token 0x02
    assert [m.token for m in out] == [b"\x00", b"\x02"]


def test_the_connection_handles_the_requests_before_a_malformed_frame_then_aborts() -> None:
    connection = Connection(Role.ACCEPTOR)
    connection.start()
    connection.receive_data(encode_frame(Message(Code.CSM)))
    events = connection.receive_data(frames(2) + b"\x0f\x01")
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, ConnectionAborted]
    assert connection.closed
    assert not connection.input_waiting
