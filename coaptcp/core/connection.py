"""The RFC 8323 connection state machine, free of I/O (RFC 8323 sections 3.3-5).

One :class:`Connection` per TCP, TLS or WebSocket connection.  Feed it what the transport
received (:meth:`Connection.receive_data` for streams, :meth:`Connection.receive_ws_message`
for WebSockets), act on the events it returns, hand it what to send, and write out what
:meth:`Connection.data_to_send` returns.  It never touches a socket or a clock.

States::

    AWAITING_CSM --peer CSM--> OPEN --Release sent or received--> CLOSING
         |  \\------ peer CSM, after we sent Release -------------------^
         \\___________ any Abort, or a protocol violation ___________--> CLOSED

With ``require_csm=False`` the peer's first message, whatever it is, counts as its CSM.

The rules that change state all live in this module: CSM first (section 3.3), Ping and
Pong (section 5.4), Release (section 5.5), Abort (section 5.6), and message format errors
(section 5.6: an Abort with a diagnostic payload, and nothing of the message processed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from coaptcp.core.codes import Code
from coaptcp.core.errors import LocalProtocolError, MessageTooLarge, RemoteProtocolError
from coaptcp.core.events import (
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    Event,
    PeerSettings,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)
from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import (
    SIGNALING_OPTIONS,
    AbortOption,
    CsmOption,
    Options,
    PingPongOption,
    ReleaseOption,
    decode_uint,
    is_critical,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MIN_PEER_MAX_MESSAGE_SIZE",
    "Connection",
    "Role",
    "State",
]

#: Our default Max-Message-Size: 64 KiB of BERT blocks plus room for the header and
#: options (RFC 8323 section 5.3.1 suggests a multiple of 1024 plus 256-512 bytes).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 + 512

#: A peer Max-Message-Size below this cannot carry a header, a token and any options;
#: such a CSM value is a "parameter problem" answered with Bad-CSM-Option (section 5.6).
MIN_PEER_MAX_MESSAGE_SIZE = 16


class Role(enum.Enum):
    """Who opened the connection (RFC 8323 section 3.3).  Both roles may send requests."""

    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class State(enum.Enum):
    """Connection states; see the module docstring for the transitions."""

    AWAITING_CSM = "awaiting-csm"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_CLOSED = State.CLOSED
_AWAITING_CSM = State.AWAITING_CSM
_new_object = object.__new__


#: Our first CSM, encoded once per configuration (every connection sends one).  Bounded:
#: a server has a few configurations, and one with more encodes the rest each time.
_CSM_FRAMES: dict[tuple[int, bool, bool], bytes] = {}
_CSM_FRAMES_BOUND = 16


def _diagnostic(payload: bytes) -> str:
    return payload.decode("utf-8", errors="replace")


class Connection:
    """One end of a CoAP connection over a reliable transport.

    :param role: :attr:`Role.INITIATOR` for the side that connected.
    :param max_message_size: the largest message we accept; advertised in our CSM and
        enforced on input before a frame body is buffered (RFC 8323 section 5.3.1).
    :param block_wise_transfer: advertise Block-Wise-Transfer in our CSM (section 5.3.2).
    :param websocket: frames are whole WebSocket messages with Len = 0 (section 4.4).
    :param require_csm: when false, a peer whose first message is not a CSM is accepted
        with base settings (a lenient mode for peers such as Californium that send none).
    """

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        block_wise_transfer: bool = False,
        websocket: bool = False,
        require_csm: bool = True,
    ) -> None:
        if max_message_size < MIN_PEER_MAX_MESSAGE_SIZE:
            raise ValueError(f"max_message_size {max_message_size} is too small")
        self.role = role
        self.max_message_size = max_message_size
        self.block_wise_transfer = block_wise_transfer
        self.websocket = websocket
        self.require_csm = require_csm
        self.peer = PeerSettings()
        self.state = State.AWAITING_CSM
        self.release_sent = False
        self.release_received = False
        self._started = False
        self._outgoing: list[bytes] = []
        self._encode: Callable[[Message], bytes] = encode_ws_frame if websocket else encode_frame
        self._decoder = StreamDecoder(max_message_size)
        #: Whether the last :meth:`receive_data` stopped at its ``limit`` with bytes
        #: still buffered (maybe whole messages: call again to find out).
        self.input_waiting = False
        #: Bytes received and not processed yet (stream transports): a frame not yet
        #: complete, or, while :attr:`input_waiting`, the messages left for later.
        self.partial_frame = 0

    # -- life cycle -----------------------------------------------------------------------

    @property
    def peer_csm_received(self) -> bool:
        """Whether the peer's first CSM has arrived (or was waived by ``require_csm``)."""
        return self.state is not State.AWAITING_CSM

    @property
    def closed(self) -> bool:
        """Whether the connection is finished (aborted, or told it was lost)."""
        return self.state is State.CLOSED

    def start(self) -> None:
        """Queue our CSM; call once, as soon as the transport is connected.

        Both sides send their CSM at once (RFC 8323 section 3.3): the initiator must not
        wait for the acceptor's, and the acceptor gains nothing by waiting.
        """
        if self._started:
            raise LocalProtocolError("start() was already called")
        self._started = True
        # At the front: an automatic Pong (or Abort) queued while an acceptor waited for
        # the initiator's CSM must not precede ours on the wire.
        key = (self.max_message_size, self.block_wise_transfer, self.websocket)
        frame = _CSM_FRAMES.get(key)
        if frame is None:
            frame = self._encode(self._csm_message())
            if len(_CSM_FRAMES) < _CSM_FRAMES_BOUND:
                _CSM_FRAMES[key] = frame
        self._outgoing.insert(0, frame)

    def _csm_message(self) -> Message:
        items: list[tuple[int, bytes | int | None]] = [
            (CsmOption.MAX_MESSAGE_SIZE, self.max_message_size)
        ]
        if self.block_wise_transfer:
            items.append((CsmOption.BLOCK_WISE_TRANSFER, None))
        return Message(Code.CSM, options=Options(items))

    def connection_lost(self) -> str | None:
        """Record that the transport closed.  Returns a note if a frame was cut short.

        No note after an Abort: the bytes left then are the frame that was rejected (or
        data that was ignored), not a frame the peer cut short.
        """
        aborted = self.state is State.CLOSED
        self.state = State.CLOSED
        if self._decoder.buffered and not aborted:
            return f"connection closed inside a frame ({self._decoder.buffered} bytes unread)"
        return None

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Take the frames queued for sending (one per message, in order)."""
        out = self._outgoing
        self._outgoing = []
        return out

    def _queue(self, message: Message) -> None:
        self._outgoing.append(self._encode(message))

    def encoded_size(self, message: Message) -> int:
        """The size ``message`` would have on this connection's wire."""
        return len(self._encode(message))

    def send(self, message: Message) -> None:
        """Queue a request or a response.

        Raises :class:`MessageTooLarge` when it exceeds the peer's Max-Message-Size
        (RFC 8323 section 5.3.1), and :class:`LocalProtocolError` for signaling codes,
        before :meth:`start`, on a closed connection, or for a new request after we sent
        Release (section 5.5).
        """
        if self.state is _CLOSED:
            raise LocalProtocolError("the connection is closed")
        if not self._started:
            raise LocalProtocolError("call start() first: the CSM must be the first message")
        code = message.code
        if code >= 0xE0:  # class 7: signaling
            raise LocalProtocolError("use the send_* methods for signaling messages")
        if code < 0x20 and self.release_sent:  # a request
            raise LocalProtocolError("no new requests after sending Release")
        frame = self._encode(message)
        if len(frame) > self.peer.max_message_size:
            raise MessageTooLarge(len(frame), self.peer.max_message_size)
        self._outgoing.append(frame)

    def send_csm(
        self, *, max_message_size: int | None = None, block_wise_transfer: bool = False
    ) -> None:
        """Send a further CSM updating our settings (RFC 8323 section 5.3)."""
        self._require_open_for_signaling()
        items: list[tuple[int, bytes | int | None]] = []
        if max_message_size is not None:
            if max_message_size < MIN_PEER_MAX_MESSAGE_SIZE:
                raise ValueError(f"max_message_size {max_message_size} is too small")
            self.max_message_size = max_message_size
            self._decoder.max_message_size = max_message_size
            items.append((CsmOption.MAX_MESSAGE_SIZE, max_message_size))
        if block_wise_transfer:
            self.block_wise_transfer = True
            items.append((CsmOption.BLOCK_WISE_TRANSFER, None))
        self._queue(Message(Code.CSM, options=Options(items)))

    def send_ping(self, token: bytes = b"", *, custody: bool = False) -> None:
        """Send a Ping (RFC 8323 section 5.4); the Pong comes back as :class:`PongReceived`."""
        self._require_open_for_signaling()
        options = Options([(PingPongOption.CUSTODY, None)]) if custody else Options()
        self._queue(Message(Code.PING, token, options))

    def send_pong(self, token: bytes, *, custody: bool = False) -> None:
        """Answer a Ping that carried Custody, once earlier requests are processed."""
        self._require_open_for_signaling()
        options = Options([(PingPongOption.CUSTODY, None)]) if custody else Options()
        self._queue(Message(Code.PONG, token, options))

    def send_release(
        self,
        diagnostic: str = "",
        *,
        alternative_addresses: Iterable[str] = (),
        hold_off: int | None = None,
    ) -> None:
        """Start an orderly shutdown (RFC 8323 section 5.5)."""
        self._require_open_for_signaling()
        items: list[tuple[int, bytes | int | str | None]] = [
            (ReleaseOption.ALTERNATIVE_ADDRESS, address) for address in alternative_addresses
        ]
        if hold_off is not None:
            items.append((ReleaseOption.HOLD_OFF, hold_off))
        self._queue(Message(Code.RELEASE, options=Options(items), payload=diagnostic.encode()))
        self.release_sent = True
        if self.state is State.OPEN:
            # Before the peer's CSM we stay in AWAITING_CSM: its first message must still
            # be a CSM; that CSM then moves us to CLOSING.
            self.state = State.CLOSING

    def send_abort(self, diagnostic: str, *, bad_csm_option: int | None = None) -> None:
        """Queue an Abort and close (RFC 8323 section 5.6); the driver then drops the link."""
        if self.state is State.CLOSED:
            return
        options = (
            Options([(AbortOption.BAD_CSM_OPTION, bad_csm_option)])
            if bad_csm_option is not None
            else Options()
        )
        self._queue(Message(Code.ABORT, options=options, payload=diagnostic.encode()))
        self.state = State.CLOSED

    def _require_open_for_signaling(self) -> None:
        if self.state is State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        if not self._started:
            raise LocalProtocolError("call start() first: the CSM must be the first message")

    # -- input ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Buffer stream bytes without processing them; :meth:`receive_data` does later.

        The announced length of a frame is still checked against our Max-Message-Size
        only when the frame is processed, but nothing is buffered beyond what was fed.
        """
        if self.state is not _CLOSED and data:
            self._decoder.feed(data)
            self.input_waiting = True
            self.partial_frame = self._decoder.buffered

    def receive_data(self, data: bytes, limit: int = 0) -> list[Event]:
        """Process bytes from a TCP or TLS stream; returns the resulting events.

        With ``limit``, at most that many messages are processed (signaling included: a
        Ping answered here counts too); the rest stay buffered, :attr:`input_waiting`
        says so, and a later call (with ``b""``) goes on.  A driver uses this to bound
        the work, and the output, that one read can cause.
        """
        if self.state is _CLOSED:
            return []
        messages: list[Message] = []
        events: list[Event] = []
        self.input_waiting = False
        try:
            try:
                left = self.partial_frame = self._decoder.take(
                    data, messages, limit if limit > 0 else -1
                )
                error = None
            except RemoteProtocolError as bad:  # the messages before it are handled first
                left, error = 0, bad
                self.partial_frame = self._decoder.buffered
            append = events.append
            for message in messages:
                # The common case first: a request on an open (or closing) connection
                # changes no state.  Everything else goes through _handle.  (The state
                # is never CLOSED here: we stop as soon as a message closes it.)
                if 0 < message.code < 0x20 and self.state is not _AWAITING_CSM:
                    event = _new_object(RequestReceived)  # RequestReceived(message),
                    event.message = message  # without the call of its __init__
                    append(event)
                    continue
                self._handle(message, events)
                if self.state is _CLOSED:
                    return events
            if error is not None:
                raise error
            self.input_waiting = left > 0 and 0 < limit == len(messages)  # stopped at the limit
        except RemoteProtocolError as error:
            self._abort_for(error, events)
        return events

    def receive_ws_message(self, data: bytes) -> list[Event]:
        """Process one binary WebSocket message (RFC 8323 section 4.4)."""
        if self.state is _CLOSED:
            return []
        events: list[Event] = []
        try:
            self._handle(decode_ws_frame(data, self.max_message_size), events)
        except RemoteProtocolError as error:
            self._abort_for(error, events)
        return events

    def abort_for_violation(self, diagnostic: str, reason: str = "protocol") -> list[Event]:
        """Abort because the transport saw a violation the core cannot (a text WS frame,
        a timeout); ``reason`` as :attr:`RemoteProtocolError.reason`."""
        events: list[Event] = []
        if self.state is not State.CLOSED:
            self._abort_for(RemoteProtocolError(diagnostic, reason=reason), events)
        return events

    def _abort_for(self, error: RemoteProtocolError, events: list[Event]) -> None:
        self.send_abort(error.diagnostic, bad_csm_option=error.bad_csm_option)
        events.append(ConnectionAborted(error.diagnostic, error.bad_csm_option, error.reason))

    def _handle(self, message: Message, events: list[Event]) -> None:
        code = message.code
        if 0 < code < 0x20 and self.state is not _AWAITING_CSM:  # the common case, first
            event = _new_object(RequestReceived)  # RequestReceived(message),
            event.message = message  # without the call of its __init__
            events.append(event)
            return
        if code == Code.EMPTY:
            return  # always allowed, always ignored (RFC 8323 section 3.4)
        if self.state is State.AWAITING_CSM:
            if code == Code.CSM:
                self._on_csm(message, events)
                return
            if code == Code.ABORT:
                self._on_abort(message, events)
                return
            if self.require_csm:
                raise RemoteProtocolError(
                    f"expected a CSM as the first message, got {code.dotted}", reason="no_csm"
                )
            self.state = State.CLOSING if self.release_sent else State.OPEN
        if code < 0xE0:  # not signaling (class 7): a request or a response
            if code.is_request:
                events.append(RequestReceived(message))
            elif code.is_response:
                events.append(ResponseReceived(message))
            else:
                events.append(UnknownSignalReceived(message))  # as before: neither
        elif code == Code.CSM:
            self._on_csm(message, events)
        elif code == Code.PING:
            self._on_ping(message, events)
        elif code == Code.PONG:
            self._check_signaling_options(message)
            custody = message.options.get(PingPongOption.CUSTODY) is not None
            events.append(PongReceived(message.token, custody))
        elif code == Code.RELEASE:
            self._on_release(message, events)
        elif code == Code.ABORT:
            self._on_abort(message, events)
        else:
            events.append(UnknownSignalReceived(message))

    def _check_signaling_options(self, message: Message) -> None:
        if not message.options.items:
            return  # the common CSM, Ping and Release: no options
        known = SIGNALING_OPTIONS.get(message.code, {})
        for number in message.options.numbers():
            if number not in known and is_critical(number):
                csm = message.code == Code.CSM
                raise RemoteProtocolError(
                    f"unknown critical option {number} in {message.code.dotted}",
                    bad_csm_option=number if csm else None,
                    reason="bad_csm" if csm else "bad_signal",
                )

    def _on_csm(self, message: Message, events: list[Event]) -> None:
        self._check_signaling_options(message)
        options = message.options
        max_message_size = self.peer.max_message_size
        block_wise = self.peer.block_wise_transfer
        values = options.get_all(CsmOption.MAX_MESSAGE_SIZE) if options.items else None
        if values:
            # A repeated non-repeatable elective option: the later ones are ignored.
            raw = values[0]
            if len(raw) > 4:
                raise RemoteProtocolError(
                    f"Max-Message-Size value of {len(raw)} bytes is longer than 4",
                    bad_csm_option=CsmOption.MAX_MESSAGE_SIZE,
                )
            max_message_size = decode_uint(raw)
            if max_message_size < MIN_PEER_MAX_MESSAGE_SIZE:
                raise RemoteProtocolError(
                    f"Max-Message-Size {max_message_size} is too small to carry a message",
                    bad_csm_option=CsmOption.MAX_MESSAGE_SIZE,
                )
        values = options.get_all(CsmOption.BLOCK_WISE_TRANSFER) if options.items else None
        if values:
            if values[0]:
                raise RemoteProtocolError(
                    "Block-Wise-Transfer must be empty",
                    bad_csm_option=CsmOption.BLOCK_WISE_TRANSFER,
                )
            block_wise = True
        first = self.state is State.AWAITING_CSM
        if first:
            self.state = State.CLOSING if self.release_sent else State.OPEN
        self.peer = PeerSettings(max_message_size, block_wise)
        events.append(CsmReceived(self.peer, first))

    def _on_ping(self, message: Message, events: list[Event]) -> None:
        self._check_signaling_options(message)
        if message.options.get(PingPongOption.CUSTODY) is not None:
            events.append(PingReceived(message.token))
        else:
            self._queue(Message(Code.PONG, message.token))

    def _on_release(self, message: Message, events: list[Event]) -> None:
        self._check_signaling_options(message)
        options = message.options
        addresses: tuple[str, ...] = ()
        hold_off = None
        if options.items:
            addresses = tuple(
                value.decode("utf-8", errors="replace")
                for value in options.get_all(ReleaseOption.ALTERNATIVE_ADDRESS)
            )
            hold_off = options.get_uint(ReleaseOption.HOLD_OFF)
        self.release_received = True
        if self.state is not State.CLOSED:
            self.state = State.CLOSING
        diagnostic = _diagnostic(message.payload) if message.payload else ""
        events.append(ReleaseReceived(addresses, hold_off, diagnostic))

    def _on_abort(self, message: Message, events: list[Event]) -> None:
        # Never answer an Abort with an Abort, whatever options it carries.
        raw = message.options.get(AbortOption.BAD_CSM_OPTION)
        bad = decode_uint(raw) if raw is not None else None
        self.state = State.CLOSED
        events.append(AbortReceived(bad, _diagnostic(message.payload)))
