"""Fuzz target: the sans-I/O connection state machine (RFC 8323 sections 3.3-5).

One :class:`~coaptcp.core.connection.Connection` per input, in the role, framing (TCP
stream or WebSocket messages), CSM mode and Max-Message-Size the first byte picks.  The
rest of the input is a sequence of operations: bytes (or one WebSocket message) from the
peer, raw or built from a structured description, and the local calls a driver makes
(send a request or response, Ping, Pong, CSM, Release, Abort, a transport violation,
connection lost).

Invariants checked for every input:

* ``receive_data`` / ``receive_ws_message`` / ``abort_for_violation`` return events or
  abort (a :class:`~coaptcp.core.events.ConnectionAborted` event, the last one, with the
  state CLOSED and an Abort carrying a UTF-8 diagnostic as the last frame queued); they
  never raise.  Local calls raise nothing but
  :class:`~coaptcp.core.errors.LocalProtocolError` (misuse, including MessageTooLarge).
* Everything queued for sending is a well-formed frame the peer can decode; the first
  is our CSM; no frame is ever queued after an Abort; no request after our Release.
* A closed connection stays closed and ignores input; CLOSING never goes back to OPEN;
  requests and responses are only reported once the peer's CSM is in (when required);
  exactly one CsmReceived is marked first.

Run: ``python fuzz/fuzz_connection.py`` (see fuzz/README.md).
"""

from __future__ import annotations

import sys

from fuzzlib import Reader, build_message, check, fuzz_main, instrumented

with instrumented(__name__):
    from coaptcp.core.codes import Code
    from coaptcp.core.connection import Connection, Role, State
    from coaptcp.core.errors import LocalProtocolError, MessageFormatError
    from coaptcp.core.events import (
        AbortReceived,
        ConnectionAborted,
        CsmReceived,
        Event,
        PingReceived,
        PongReceived,
        ReleaseReceived,
        RequestReceived,
        ResponseReceived,
        UnknownSignalReceived,
    )
    from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
    from coaptcp.core.message import Message

CORPUS = "connection"

MAX_MESSAGE_SIZES = (16, 64, 1152, 66048)

# Operation codes (the byte after the configuration byte, modulo the count).
OP_RAW = 0  # blob of raw bytes from the peer (one WebSocket message in WS mode)
OP_MESSAGE = 1  # a structured message from the peer
OP_MESSAGES_SPLIT = 2  # several structured messages, delivered in pieces (stream mode)
OP_SEND_REQUEST = 3
OP_SEND_RESPONSE = 4
OP_PING = 5
OP_PONG = 6
OP_CSM = 7
OP_RELEASE = 8
OP_ABORT = 9
OP_VIOLATION = 10
OP_LOST = 11
OP_COUNT = 12

_KNOWN_EVENTS = (
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)


class Harness:
    """One connection and what we know about what it has sent and reported."""

    def __init__(self, config: int) -> None:
        self.role = Role.INITIATOR if config & 1 else Role.ACCEPTOR
        self.websocket = bool(config & 2)
        self.require_csm = not config & 4
        self.max_message_size = MAX_MESSAGE_SIZES[(config >> 3) % len(MAX_MESSAGE_SIZES)]
        self.connection = Connection(
            self.role,
            max_message_size=self.max_message_size,
            block_wise_transfer=bool(config & 0x40),
            websocket=self.websocket,
            require_csm=self.require_csm,
        )
        self.output: list[Message] = []
        self.out_decoder = StreamDecoder(1 << 40)
        self.abort_sent = False
        self.release_sent = False
        self.first_csm_seen = False
        self.lost = False

    # -- output ---------------------------------------------------------------------------

    def collect(self) -> None:
        """Take the queued frames and check them."""
        frames = self.connection.data_to_send()
        for frame in frames:
            check(isinstance(frame, bytes), f"queued frame of type {type(frame).__name__}")
            check(not self.lost, "a frame queued after the connection was lost")
            check(
                not self.abort_sent, lambda frame=frame: f"frame queued after our Abort: {frame!r}"
            )
            try:
                if self.websocket:
                    message = decode_ws_frame(frame, 1 << 40)
                else:
                    self.out_decoder.feed(frame)
                    message = self.out_decoder.next_message()
                    check(
                        message is not None and self.out_decoder.buffered == 0,
                        lambda frame=frame: f"queued frame is not exactly one message: {frame!r}",
                    )
            except MessageFormatError as error:
                raise AssertionError(f"we queued a malformed frame {frame!r}: {error}")
            assert message is not None
            if not self.output:
                check(
                    message.code == Code.CSM,
                    lambda message=message: f"first frame is not our CSM: {message!r}",
                )
            if message.code == Code.ABORT:
                self.abort_sent = True
                check(message.payload, "our Abort carries no diagnostic")
                message.payload.decode("utf-8")  # strict: a UnicodeDecodeError is a crash
            if message.code == Code.RELEASE:
                self.release_sent = True
            elif message.code.is_request:
                check(not self.release_sent, "a request queued after our Release")
            self.output.append(message)

    # -- input ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        before = self.connection.state
        if self.websocket:
            events = self.connection.receive_ws_message(data)
        else:
            events = self.connection.receive_data(data)
        self.after_input(before, events)

    def after_input(self, before: State, events: list[Event]) -> None:
        connection = self.connection
        state = connection.state
        if before is State.CLOSED:
            check(events == [], lambda: f"events from a closed connection: {events!r}")
        if before is State.CLOSING:
            check(state in (State.CLOSING, State.CLOSED), f"CLOSING went to {state}")
        for index, event in enumerate(events):
            check(isinstance(event, _KNOWN_EVENTS), f"unknown event {event!r}")
            if isinstance(event, ConnectionAborted):
                check(index == len(events) - 1, "events reported after ConnectionAborted")
                check(state is State.CLOSED, "ConnectionAborted but the connection is not closed")
                check(event.diagnostic, "ConnectionAborted without a diagnostic")
            elif isinstance(event, AbortReceived):
                check(index == len(events) - 1, "events reported after AbortReceived")
                check(state is State.CLOSED, "AbortReceived but the connection is not closed")
            elif isinstance(event, CsmReceived):
                if event.first:
                    check(not self.first_csm_seen, "two CsmReceived marked first")
                    self.first_csm_seen = True
                check(
                    event.settings.max_message_size >= 16,
                    f"peer Max-Message-Size {event.settings.max_message_size} accepted",
                )
            elif isinstance(event, RequestReceived):
                check(event.message.code.is_request, f"RequestReceived for {event.message!r}")
                check(
                    self.first_csm_seen or not self.require_csm,
                    "a request reported before the peer's CSM",
                )
            elif isinstance(event, ResponseReceived):
                check(event.message.code.is_response, f"ResponseReceived for {event.message!r}")
                check(
                    self.first_csm_seen or not self.require_csm,
                    "a response reported before the peer's CSM",
                )
            elif isinstance(event, ReleaseReceived):
                check(connection.release_received, "ReleaseReceived but release_received unset")
        aborted = any(isinstance(e, ConnectionAborted) for e in events)
        self.collect()
        if aborted:
            check(self.abort_sent, "ConnectionAborted but no Abort frame was queued")
            check(self.output[-1].code == Code.ABORT, "the last frame queued is not the Abort")

    def local(self, call: object, *args: object, **kwargs: object) -> None:
        """A local call: only LocalProtocolError may come out of it."""
        try:
            call(*args, **kwargs)  # type: ignore[operator]
        except LocalProtocolError:
            pass
        self.collect()


def _outgoing(reader: Reader, kind: str) -> Message:
    """A request or response we send: a structured message with a fitting code."""
    message = build_message(reader)
    code = message.code
    if kind == "request" and not code.is_request:
        code = Code(1 + int(code) % 7)
    if kind == "response" and not code.is_response:
        code = Code(0x40 + int(code) % 0x20)  # a 2.xx
    return Message(code, message.token, message.options, message.payload)


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    harness = Harness(reader.u8())
    connection = harness.connection
    encode = encode_ws_frame if harness.websocket else encode_frame
    if reader.u8() & 1:
        # Bytes may arrive before the driver calls start() (the state machine allows it);
        # whatever they make the core queue, our CSM must still go out first.
        early = reader.blob()
        if harness.websocket:
            events = connection.receive_ws_message(early)
        else:
            events = connection.receive_data(early)
        harness.first_csm_seen = any(isinstance(e, CsmReceived) and e.first for e in events)
    harness.local(connection.start)
    check(harness.output and harness.output[0].code == Code.CSM, "start() queued no CSM")
    steps = 0
    while reader and not harness.lost and steps < 200:
        steps += 1
        op = reader.u8() % OP_COUNT
        if op == OP_RAW:
            harness.receive(reader.blob())
        elif op == OP_MESSAGE:
            harness.receive(encode(build_message(reader)))
        elif op == OP_MESSAGES_SPLIT:
            count = 1 + reader.u8() % 4
            wire = b"".join(encode_frame(build_message(reader)) for _ in range(count))
            if harness.websocket:
                harness.receive(wire)  # several frames in one WS message: must be rejected
            else:
                step = 1 + reader.u8() % 7
                for i in range(0, len(wire), step):
                    harness.receive(wire[i : i + step])
        elif op == OP_SEND_REQUEST:
            harness.local(connection.send, _outgoing(reader, "request"))
        elif op == OP_SEND_RESPONSE:
            harness.local(connection.send, _outgoing(reader, "response"))
        elif op == OP_PING:
            flags = reader.u8()
            harness.local(connection.send_ping, reader.take(flags % 9), custody=bool(flags & 16))
        elif op == OP_PONG:
            flags = reader.u8()
            harness.local(connection.send_pong, reader.take(flags % 9), custody=bool(flags & 16))
        elif op == OP_CSM:
            flags = reader.u8()
            size = None if flags & 1 else 16 + reader.u16() * (1 + (flags >> 4))
            harness.local(
                connection.send_csm, max_message_size=size, block_wise_transfer=bool(flags & 2)
            )
        elif op == OP_RELEASE:
            flags = reader.u8()
            addresses = [reader.take(flags % 16).decode("latin-1")] if flags & 16 else []
            hold_off = reader.u16() if flags & 32 else None
            harness.local(
                connection.send_release,
                reader.take(flags >> 6).decode("latin-1"),
                alternative_addresses=addresses,
                hold_off=hold_off,
            )
        elif op == OP_ABORT:
            flags = reader.u8()
            bad = reader.u16() if flags & 1 else None
            harness.local(connection.send_abort, "fuzz abort", bad_csm_option=bad)
            check(connection.closed, "send_abort left the connection open")
        elif op == OP_VIOLATION:
            before = connection.state
            events = connection.abort_for_violation("transport violation")
            harness.after_input(before, events)
            check(connection.closed, "abort_for_violation left the connection open")
        elif op == OP_LOST:
            note = connection.connection_lost()
            check(note is None or isinstance(note, str), f"connection_lost returned {note!r}")
            check(connection.closed, "connection_lost left the connection open")
            harness.collect()
            harness.lost = True
    # A closed connection ignores whatever else comes.
    if connection.closed:
        before = connection.state
        harness.receive(b"\x00\xe1" if harness.websocket else b"\x00\xe1\x01\x01")
        check(connection.state is before, "a closed connection changed state on input")
        check(not connection.data_to_send(), "a closed connection queued frames")


if __name__ == "__main__":
    fuzz_main(test_one_input, CORPUS)
    sys.exit(0)
