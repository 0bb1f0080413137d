"""Every place coaptcp relies on autobahn's internals, and the fast path built on them.

autobahn's public API (``IWebSocketChannel`` and the frame and streaming APIs: ``onOpen``,
``onMessage``, ``sendMessage``, ``onMessageBegin``...) cannot do four things CoAP over
WebSockets needs (RFC 8323 section 4): read and write the common data frames without
autobahn's per-frame machinery (:mod:`coaptcp.transport.websocket.frames` does, with the
same bytes on the wire), see whether a frame or a fragmented message is unfinished (for
the frame timeout), answer a close frame that breaks RFC 6455 with one of our own, and
answer an unsupported ``Sec-WebSocket-Version`` with 426.  For those, this module reads
and overrides autobahn's undocumented attributes and methods; no other module does (but
:mod:`~coaptcp.transport.websocket.frames`, which borrows autobahn's XOR masker).

Each touch says which behaviour of autobahn it relies on.  They were checked against
autobahn 26.11 (``autobahn/websocket/protocol.py`` and ``autobahn/twisted/websocket.py``);
``tests/websocket/test_ws_fast_path.py`` plays every scenario with and without the fast
path and compares the bytes, so a change in autobahn shows there first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger

from coaptcp.channel.channel import EARLY_WRITE
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.transport.eager import BATCH_MESSAGES, EagerWrite, eager_writer
from coaptcp.transport.websocket.frames import WEBSOCKET_VERSION, encode_frames, next_frame

if TYPE_CHECKING:
    from coaptcp.channel.channel import Channel

__all__ = ["AutobahnFastPath", "AutobahnServerHandshake", "bracket_ipv6_host"]

# autobahn 26.x: WebSocketProtocol.state takes the class constants STATE_CLOSED (0),
# STATE_CONNECTING (1), STATE_CLOSING (2), STATE_OPEN (3), STATE_PROXY_CONNECTING (4).
_STATE_OPEN = WebSocketProtocol.STATE_OPEN


class AutobahnFastPath:
    """Mixed into our WebSocket protocols before autobahn's Twisted protocol classes.

    Reads and writes the common data frames (final, binary, unfragmented) itself when
    nothing unusual is configured or under way, and leaves every other frame to autobahn;
    wraps the few autobahn methods that are not part of its public API.
    """

    # Not named ``log``: that would replace autobahn's own (txaio) logger on the protocol.
    coap_log = Logger()

    if TYPE_CHECKING:
        # Set by autobahn's WebSocketProtocol._connectionMade (autobahn 26.x), read here:
        transport: Any
        factory: Any
        #: the WebSocket state, one of the STATE_* constants (autobahn 26.x).
        state: int
        #: bytes received and not yet consumed by autobahn's frame parser (autobahn 26.x:
        #: _dataReceived appends to it, processData consumes from its front).
        data: bytes
        #: the frame autobahn is in the middle of reading, or None (autobahn 26.x).
        current_frame: Any
        #: autobahn is between the first and the last frame of a message (autobahn 26.x).
        inside_message: bool
        #: frames autobahn queued and has not written yet (autobahn 26.x, a deque).
        send_queue: Any
        #: autobahn's TrafficStats counters, which our frames must count too (autobahn 26.x).
        trafficStats: Any
        #: the reason onClose reports for an unclean close (autobahn 26.x).
        wasNotCleanReason: str | None
        # Options setProtocolOptions copies from the factory onto the protocol at
        # _connectionMade (autobahn 26.x); the fast path only runs when none is on.
        _perMessageCompress: Any
        trackedTimings: Any
        logOctets: bool
        logFrames: bool
        applyMask: bool
        autoPingInterval: float
        autoFragmentSize: int
        maxFramePayloadSize: int
        maxMessagePayloadSize: int
        maskServerFrames: bool
        maskClientFrames: bool
        # Ours, from the mixin in coaptcp.transport.websocket.common:
        channel: Channel
        _discarding: bool

        def sendMessage(self, payload: bytes, isBinary: bool = False) -> None: ...
        def onMessage(self, payload: bytes, isBinary: bool) -> None: ...
        def _watch_unfinished(self) -> None: ...
        def _close_frame_problem(
            self, code: int | None, reason: bytes | None
        ) -> tuple[int, str] | None: ...

    #: Read and write the common data frames ourselves
    #: (:mod:`~coaptcp.transport.websocket.frames`) instead of
    #: through autobahn's per-frame machinery; everything else still goes to autobahn.
    #: Set to ``False`` (on the class or a protocol before it opens) to use autobahn only.
    coap_fast_path: bool = True
    _fast_in: bool = False  # the options allow our reading of data frames
    _fast_out: bool = False  # ... and our writing of them
    _fast_masked_in: bool = True  # frames we read carry a mask (we are the server)
    _fast_mask_out: bool = False  # frames we write get a mask (we are the client)
    _out_batch: list[bytes] | None = None  # while a read is parsed: its answers, unsent
    _coap_max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    _frame_timeout: float | None = None
    _producer_registered = False
    _coap_send: EagerWrite | None = None  # our writes to the transport

    def _choose_fast_path(self) -> None:
        """Use our own reading and writing of data frames when nothing unusual is on.

        Only with the options our factories set (no compression, no fragmenting, no
        automatic Pings, no autobahn size limits, no frame logging or timing): then a
        final binary frame means to autobahn exactly what it means to us.
        """
        if not self.coap_fast_path:
            return
        if (
            self._perMessageCompress is not None  # autobahn 26.x: None until negotiated
            or self.logOctets
            or self.logFrames
            or self.trackedTimings
            or not self.applyMask
            or self.autoPingInterval
            or self.autoFragmentSize
            or self.maxFramePayloadSize
            or self.maxMessagePayloadSize
        ):
            return
        # autobahn 26.x: the factory's class attribute isServer tells the side.
        is_server = bool(self.factory.isServer)
        self._fast_masked_in = is_server
        self._fast_mask_out = bool(self.maskServerFrames if is_server else self.maskClientFrames)
        self._fast_in = self._fast_out = True

    def _ws_open(self) -> bool:
        """Whether the WebSocket is open: handshake done, no close frame sent or received."""
        return self.state == _STATE_OPEN

    def _ws_unfinished(self) -> str | None:
        """What autobahn holds unfinished: ``"frame"`` (part of a frame, maybe inside a
        fragmented message), ``"message"`` (whole frames of an unfinished fragmented
        message), or ``None``.  Only meaningful while the WebSocket is open."""
        # autobahn 26.x: data holds unparsed bytes, current_frame the frame being
        # read, inside_message whether a fragmented message has begun.
        if self.data or self.current_frame is not None:
            return "frame"
        return "message" if self.inside_message else None

    def _ws_peer(self) -> str | None:
        """The peer as autobahn names it in its own log lines (``tcp4:192.0.2.1:41000``)."""
        return getattr(self, "peer", None)  # autobahn 26.x: set by _connectionMade

    def _ws_messages_received(self) -> int:
        """How many messages the peer sent so far (ours and autobahn's reading counted)."""
        return int(self.trafficStats.incomingWebSocketMessages)  # autobahn 26.x

    # -- output ---------------------------------------------------------------------------

    def _send_frames(self, frames: list[bytes], soon: bool = False) -> None:
        """One binary WebSocket message per CoAP message, never fragmented (section 4.2)."""
        if self.state != _STATE_OPEN:
            # We (or the peer) started the closing handshake: nothing more may be sent.
            self.coap_log.debug(
                "Not sending {count} CoAP frames: the WebSocket is closing", count=len(frames)
            )
            return
        batch = self._out_batch
        if batch is not None:
            batch += frames  # written with the other answers to this read
            if len(frames[-1]) > EARLY_WRITE:
                self._flush_batch()  # a large answer: let the transport say if it is full
            return
        # autobahn 26.x: frames queued by sendMessage (a sync=False write) wait in
        # send_queue; ours must not overtake them.
        if self._fast_out and not self.send_queue:
            self._write_frames(frames, soon)
            return
        for frame in frames:
            self.sendMessage(frame, isBinary=True)

    def _send_frames_soon(self, frames: list[bytes]) -> None:
        """Notifications: as :meth:`_send_frames`, allowed to wait for the end of the
        reactor's turn (the channel's ``write_soon``)."""
        self._send_frames(frames, True)

    def _write_frames(self, frames: list[bytes], soon: bool = False) -> None:
        """Write CoAP messages as the frames ``sendMessage`` would write, in one write.

        One final binary frame each (RFC 8323 section 4.2, RFC 6455 section 5.2),
        unmasked from a server and masked from a client (section 5.1); autobahn's
        traffic counters count them as it counts its own.  Many, or ``soon``
        (notifications), may wait for the end of the reactor's turn.
        """
        chunk = encode_frames(frames, masked=self._fast_mask_out)
        count = len(frames)
        size = sum(map(len, frames))
        # autobahn 26.x: sendMessage counts each frame in these TrafficStats fields.
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += count
        stats.outgoingWebSocketFrames += count
        stats.outgoingOctetsAppLevel += size
        stats.outgoingOctetsWebSocketLevel += size
        stats.outgoingOctetsWireLevel += len(chunk)
        send = self._coap_send
        if send is None:
            # Sent at once when Twisted holds nothing unsent (coaptcp.transport.eager);
            # autobahn's own writes (handshake, control frames) still go through
            # transport.write, so what they queued is never overtaken.
            send = self._coap_send = eager_writer(self.transport)
        send(chunk, soon or count >= BATCH_MESSAGES)

    def _flush_batch(self) -> None:
        """Write the answers held back while a read is parsed (before anything else)."""
        batch = self._out_batch
        if batch:
            frames = batch[:]
            batch.clear()
            self._write_frames(frames)

    def _send_close_frame(self, code: int, reason: bytes | None, *, is_reply: bool) -> None:
        """Send a close frame now (RFC 6455 section 5.5.1)."""
        # autobahn 26.x: sendCloseFrame(code, reasonUtf8, isReply) writes the frame,
        # moves to STATE_CLOSING and starts the closing handshake timer; sendClose
        # (the public one) would refuse our codes 1002, 1003, 1007 and 1009.
        self.sendCloseFrame(code=code, reasonUtf8=reason, isReply=is_reply)  # type: ignore[attr-defined]

    def _drop(self, *, abort: bool) -> None:
        """Close the TCP connection without (more of) a closing handshake."""
        # autobahn 26.x: dropConnection(abort) marks the close unclean and closes the
        # transport (aborting it when abort is true).
        self.dropConnection(abort=abort)  # type: ignore[attr-defined]

    def _closeConnection(self, abort: bool = False) -> None:
        # autobahn 26.x (autobahn/twisted/websocket.py): every close of the transport goes
        # through _closeConnection.  No longer the transport's producer once we close:
        # Twisted's TLS layer holds back its close_notify, and so the close, while a
        # producer is registered.
        if self._producer_registered:
            self._producer_registered = False
            self.transport.unregisterProducer()
        super()._closeConnection(abort)  # type: ignore[misc]

    # -- input ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Read the common data frames ourselves, hand autobahn the rest (RFC 6455 5.2).

        Only while the WebSocket is open and autobahn holds nothing of a frame or
        message: then complete final binary frames at the front of ``data`` become CoAP
        messages here, and from the first other frame (a control frame, text, a
        fragment, a frame over our Max-Message-Size, an unmasked client frame, an
        incomplete frame) on, autobahn reads the rest as it would have read all.
        """
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.new_read()
        # autobahn 26.x: with data empty, current_frame None, inside_message false and
        # send_queue empty, autobahn is between messages and would parse data from its
        # first byte, exactly as _read_frames does (the checks are inline: every read).
        if (
            self._fast_in
            and self.state == _STATE_OPEN
            and not self.data
            and self.current_frame is None
            and not self.inside_message
            and not self._discarding
            and not self.send_queue
        ):
            used = self._read_frames(data)
            if used == len(data):
                return  # nothing unfinished is left, so no frame timeout runs
            data = data[used:]
        super().dataReceived(data)  # type: ignore[misc]
        if self._frame_timeout is not None:
            self._watch_unfinished()

    def _read_frames(self, data: bytes) -> int:
        """Deliver the common frames at the front of ``data``; how many bytes they took."""
        deliver = self.onMessage  # as autobahn delivers each message (may be overridden)
        limit = self._coap_max_message_size
        masked = self._fast_masked_in
        batch: list[bytes] = []
        self._out_batch = batch
        pos = frames = octets = 0
        size = len(data)
        try:
            while pos < size and (found := next_frame(data, pos, limit, masked)) is not None:
                payload, pos = found
                frames += 1
                octets += len(payload)
                deliver(payload, True)
                if self.state != _STATE_OPEN:
                    break  # closing: autobahn reads what follows, as it would have
        finally:
            self._out_batch = None
            if batch:
                self._write_frames(batch)
            if frames:
                # autobahn 26.x: _dataReceived and processData count these fields.
                stats = self.trafficStats
                stats.incomingOctetsWireLevel += pos
                stats.incomingOctetsWebSocketLevel += octets
                stats.incomingOctetsAppLevel += octets
                stats.incomingWebSocketFrames += frames
                stats.incomingWebSocketMessages += frames
        return pos

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        """Answer a close frame that breaks RFC 6455 with a close frame of our own.

        What breaks it is :meth:`_close_frame_problem`'s to say; then we send our close
        frame and close the TCP connection after it.  (autobahn would send the same close
        frame, then take the peer's own close frame for the answer to it and reset the
        connection, losing our frame.)
        """
        # autobahn 26.x: processControlFrame calls onCloseFrame for each close frame
        # (not part of the public API); returning True stops its own handling.
        problem = self._close_frame_problem(code, reasonRaw) if self._ws_open() else None
        if problem is None:
            return super().onCloseFrame(code, reasonRaw)  # type: ignore[misc, no-any-return]
        close_code, reason = problem
        self.coap_log.info(
            "Closing the WebSocket from {peer} with {code}: {reason}",
            peer=self.transport.getPeer(),
            code=close_code,
            reason=reason,
        )
        self.wasNotCleanReason = reason  # what onClose then reports (autobahn 26.x)
        self._send_close_frame(close_code, reason.encode(), is_reply=True)
        self._drop(abort=False)
        return True


class AutobahnServerHandshake:
    """The server side's use of autobahn internals: refusing the opening handshake."""

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Refuse the opening handshake with an HTTP error, then close.

        An unsupported ``Sec-WebSocket-Version`` gets 426 Upgrade Required with the
        version we speak (RFC 6455 section 4.4; autobahn would answer 400).
        """
        # autobahn 26.x: WebSocketServerProtocol.processHandshake refuses an unsupported
        # version with failHandshake(reason, 400, [("Sec-WebSocket-Version", "...")]),
        # and no other refusal carries that header; a ConnectionDeny from onConnect also
        # ends here.  failHandshake writes the HTTP response and drops the connection.
        headers = list(responseHeaders or [])
        if any(name.lower() == "sec-websocket-version" for name, _ in headers):
            code = 426
            headers = [
                ("Sec-WebSocket-Version", str(WEBSOCKET_VERSION)),
                ("Upgrade", "websocket"),
            ]
        super().failHandshake(reason, code, headers or None)  # type: ignore[misc]

    def _refuse_handshake(self, reason: str, code: int, headers: list[tuple[str, str]]) -> None:
        """Answer the opening handshake with HTTP ``code`` and ``headers``, then close."""
        self.failHandshake(reason, code, headers)


def bracket_ipv6_host(factory: Any) -> None:
    """Write an IPv6 address in the handshake's Host header in brackets (RFC 7230 5.4)."""
    # autobahn 26.x: WebSocketClientFactory.setSessionParameters stores the URL's host
    # without brackets in factory.host, and the client writes "Host: {host}:{port}" from it.
    if ":" in factory.host:
        factory.host = f"[{factory.host}]"
