"""A Channel fed the WebSocket messages of one read at once (Channel.ws_messages_received).

The answers to all of them leave in one write, as for the frames of one read over TCP;
the order of messages and answers is the order of arrival (RFC 8323 section 4.4).
"""

from __future__ import annotations

from glue_helpers import get
from twisted.internet.testing import MemoryReactorClock

from coaptcp.channel import Channel
from coaptcp.core.codes import Code
from coaptcp.core.connection import Connection, Role
from coaptcp.core.framing import decode_ws_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.demo import make_demo_site
from coaptcp.resource import Site


def ws_channel() -> tuple[Channel, list[list[bytes]], list[str]]:
    writes: list[list[bytes]] = []
    closes: list[str] = []
    channel = Channel(
        Connection(Role.ACCEPTOR, websocket=True),
        write=lambda frames: writes.append(list(frames)),
        close=lambda: closes.append("close"),
        abort=lambda: closes.append("abort"),
        reactor=MemoryReactorClock(),
        site=Site(make_demo_site()),
    )
    channel.start()
    assert [decode_ws_frame(f, 1 << 20).code for f in writes.pop()] == [Code.CSM]
    return channel, writes, closes


def test_answers_to_one_batch_go_out_in_one_write_in_order() -> None:
    channel, writes, closes = ws_channel()
    tokens = [bytes([n]) for n in range(16)]
    channel.ws_messages_received(
        [encode_ws_frame(Message(Code.CSM))]
        + [encode_ws_frame(get(token, "hello")) for token in tokens]
    )
    (write,) = writes
    answers = [decode_ws_frame(frame, 1 << 20) for frame in write]
    assert [a.token for a in answers] == tokens
    assert {(a.code, a.payload) for a in answers} == {(Code.CONTENT, b"Hello, world!")}
    assert closes == []


def test_a_violation_in_a_batch_aborts_before_any_answer_as_over_tcp() -> None:
    # The core decodes the whole read before the channel dispatches it; the violation
    # queues the Abort and closes the connection, so nothing more is sent, not even the
    # answer to a request that came before it in the same read (RFC 8323 section 5.6:
    # after an Abort the connection carries nothing more).
    channel, writes, closes = ws_channel()
    channel.ws_messages_received(
        [
            encode_ws_frame(Message(Code.CSM)),
            encode_ws_frame(get(b"a", "hello")),
            b"\x10\x01",  # Len must be 0 over WebSockets
            encode_ws_frame(get(b"b", "hello")),
        ]
    )
    sent = [decode_ws_frame(frame, 1 << 20) for write in writes for frame in write]
    assert [(m.code, m.token) for m in sent] == [(Code.ABORT, b"")]
    assert sent[0].payload.startswith(b"Len is 1")
    assert closes == ["close"]
