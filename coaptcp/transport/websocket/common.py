"""What the CoAP-over-WebSockets server and client share (RFC 8323 section 4).

:class:`WebSocketChannel`, the :class:`~coaptcp.channel.channel.Channel` that remembers
which WebSocket close code its closing deserves, and :class:`CoapWebSocketMixin`, which
runs one such channel over one autobahn protocol: the CSM when the WebSocket opens, one
CoAP message per binary message (section 4.2), the frame timeout, Abort for text and for
messages over our Max-Message-Size, and the closing handshake after Release or Abort.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.python.failure import Failure

from coaptcp.channel.channel import Channel, ChannelOwner
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.core.blockwise import BlockwiseServer
from coaptcp.core.connection import Connection, Role
from coaptcp.core.events import ConnectionAborted
from coaptcp.core.uri import WEBSOCKET_PATH
from coaptcp.transport.websocket.fastpath import AutobahnFastPath
from coaptcp.transport.websocket.frames import WEBSOCKET_VERSION

if TYPE_CHECKING:
    from coaptcp.server.resource import Site

__all__ = [
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "COAP_SUBPROTOCOL",
    "MAX_FRAGMENTS",
    "WEBSOCKET_VERSION",
    "WELL_KNOWN_COAP",
    "CoapWebSocketMixin",
    "WebSocketChannel",
    "apply_coap_options",
    "uri_host_from_header",
    "valid_close_code",
]

#: The WebSocket subprotocol name of CoAP (RFC 8323 sections 4.1 and 11.9).
COAP_SUBPROTOCOL = "coap"
#: Where the CoAP WebSocket endpoint lives (RFC 8323 section 8.3, RFC 8307).
WELL_KNOWN_COAP = WEBSOCKET_PATH

#: WebSocket close codes (RFC 6455 section 7.4.1) we use after Release or Abort.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

#: Frames one fragmented message may take (RFC 6455 section 5.4); a frame beyond gets
#: Abort and close code 1009.  A CoAP message travels in one frame (RFC 8323 section
#: 4.2) and browsers never fragment what they send, but empty continuation frames add
#: nothing to a message's size while autobahn keeps an entry for each.
MAX_FRAGMENTS = 128

#: A close frame's reason may hold at most 123 bytes (RFC 6455 section 5.5).
_MAX_CLOSE_REASON = 123


def _truncate_utf8(text: str, limit: int = _MAX_CLOSE_REASON) -> bytes:
    """``text`` as UTF-8, cut to ``limit`` bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def valid_close_code(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 section 7.4).

    1000-1003 and 1007-1011 are defined for use in close frames (1012 and 1013 were
    registered since, section 11.7, and autobahn accepts them); 1004 is reserved, and
    1005, 1006 and 1015 must never be sent.  3000-4999 belong to libraries, frameworks
    and applications; all else is reserved.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1013 or 3000 <= code <= 4999


def uri_host_from_header(host: str) -> str | None:
    """The default Uri-Host given by a handshake's Host header (RFC 8323 section 8.5).

    The port is dropped (it is the Uri-Port's business), IPv6 brackets are removed and the
    name is lowercased, as RFC 7252 section 6.4 does when decomposing a URI.
    """
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end].lower() if end > 1 else None
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.lower() or None


def apply_coap_options(factory: Any, close_timeout: float) -> None:
    """The autobahn options every CoAP factory needs (both sides, RFC 8323 section 4)."""
    factory.setProtocolOptions(
        autoPingInterval=0,  # RFC 8323 section 4.4: no WebSocket Pings; libcoap closes on them
        autoFragmentSize=0,  # unfragmented messages; libcoap closes on continuation frames
        utf8validateIncoming=False,  # text messages are rejected unread anyway
        failByDrop=False,  # always close with a close frame, so queued Aborts are flushed
        closeHandshakeTimeout=close_timeout,
        maxFramePayloadSize=0,  # we check sizes ourselves, to Abort before buffering
        maxMessagePayloadSize=0,
    )


class WebSocketChannel(Channel):
    """A :class:`Channel` that remembers which WebSocket close code its closing deserves.

    Every Abort we send for a violation of the peer closes with 1002 (protocol error),
    unless the transport already chose a more precise code (1003 for a text message, 1009
    for a message that is too large).  A Release, or an Abort received, closes with 1000
    (RFC 8323 sections 4.2 and 5.6, RFC 6455 section 7.4.1).
    """

    close_code: int = CLOSE_NORMAL

    def violation_with_close_code(
        self, close_code: int, diagnostic: str, reason: str = "websocket"
    ) -> None:
        """Abort for a WebSocket-level violation, closing with ``close_code`` afterwards."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code = close_code
        self.violation(diagnostic, reason)

    def _on_violation(self, event: ConnectionAborted) -> None:
        if self.close_code == CLOSE_NORMAL:
            self.close_code = CLOSE_PROTOCOL_ERROR
        super()._on_violation(event)

    def abort(self, diagnostic: str, reason: str = "application") -> None:
        """Send Abort and close with 1002 (RFC 8323 section 5.6)."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code = CLOSE_PROTOCOL_ERROR
        super().abort(diagnostic, reason)


class CoapWebSocketMixin(AutobahnFastPath, ChannelOwner):
    """What the server and client protocols share: one :class:`Channel` per WebSocket.

    Mixed into autobahn's Twisted protocols; what it needs of autobahn beyond the public
    API (``onOpen``, ``onMessage``, the streaming API) is in
    :class:`~coaptcp.transport.websocket.fastpath.AutobahnFastPath`.
    """

    channel: WebSocketChannel
    _incoming_size: int = 0
    _incoming_frames: int = 0
    _discarding: bool = False
    _frame_call: IDelayedCall | None = None  # the frame timeout of an unfinished frame
    _frame_mark = 0  # messages received when it was armed
    _coap_reactor: IReactorTime | None = None

    def _start_channel(
        self,
        role: Role,
        *,
        site: Site | None,
        reactor: IReactorTime,
        default_host: str | None,
        max_message_size: int,
        require_csm: bool,
        close_timeout: float,
        limits: Limits = DEFAULT_LIMITS,
        blockwise: BlockwiseServer | None = None,
    ) -> None:
        """Create the channel over this WebSocket and send our CSM (RFC 8323 section 4.3)."""
        self._coap_max_message_size = max_message_size
        self._coap_reactor = reactor
        self._frame_timeout = limits.frame_timeout
        connection = Connection(
            role,
            max_message_size=max_message_size,
            block_wise_transfer=True,
            require_csm=require_csm,
            websocket=True,
        )
        transport = self.transport
        self.channel = WebSocketChannel(
            connection,
            write=self._send_frames,
            write_soon=self._send_frames_soon,
            close=self._close_websocket,
            abort=self._drop_websocket,
            reactor=reactor,
            site=site,
            peer=transport.getPeer(),
            default_host=default_host,
            secure=bool(ISSLTransport.providedBy(transport)),
            close_timeout=close_timeout,
            limits=limits,
            blockwise=blockwise,
            set_reading=self._set_reading,
        )
        self._choose_fast_path()
        self.channel.start()
        # Flow control, as CoapProtocol over TCP: when the transport's write buffer
        # fills (a peer that does not read), stop reading its requests and hold
        # notifications until it drains.  The TLS handshake, if any, is done by now.
        try:
            transport.registerProducer(self, True)
        except RuntimeError:
            # Mounted in a twisted.web site: the HTTP channel that handed us its
            # transport is still registered, and it would not pause reading (for it, the
            # upgrade request never ends).  The transport is ours now: take its place.
            transport.unregisterProducer()
            transport.registerProducer(self, True)
        self._producer_registered = True

    # -- closing --------------------------------------------------------------------------

    def _close_websocket(self) -> None:
        """Start the closing handshake; the frames queued before it are sent first."""
        self._flush_batch()
        if not self._ws_open():
            return
        channel = self.channel
        reason = _truncate_utf8(channel.close_reason or "")
        self._send_close_frame(channel.close_code, reason or None, is_reply=False)

    def _drop_websocket(self) -> None:
        self._flush_batch()
        self._drop(abort=True)

    def _close_frame_problem(
        self, code: int | None, reason: bytes | None
    ) -> tuple[int, str] | None:
        """What is wrong with a close frame the peer sent, as our close code and reason.

        A code that must not be sent (RFC 6455 section 7.4) gets 1002, a reason that is
        not UTF-8 (section 5.5.1) 1007; ``None`` when the frame is fine.
        """
        if code is not None and not valid_close_code(code):
            return (CLOSE_PROTOCOL_ERROR, f"invalid close code {code} (RFC 6455 section 7.4)")
        if reason:
            try:
                reason.decode("utf-8")
            except UnicodeDecodeError:
                return (CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8")
        return None

    def _channel_lost(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        self._stop_frame_timer()
        channel = getattr(self, "channel", None)
        if channel is None:
            return
        if was_clean:
            failure = Failure(ConnectionDone(f"WebSocket closed ({code}) {reason or ''}".strip()))
        else:
            failure = Failure(ConnectionLost(reason or "WebSocket connection lost"))
        channel.connection_lost(failure)

    # -- the frame timeout ----------------------------------------------------------------

    def _watch_unfinished(self) -> None:
        """Run the frame timeout while a frame or a fragmented message is unfinished.

        It runs from the read that left one unfinished until a read leaves none; a
        message completed meanwhile starts it again (the unfinished frame is a new one).
        """
        call = self._frame_call
        if not (self._ws_open() and self._ws_unfinished() is not None):
            if call is not None:
                self._frame_call = None
                if call.active():
                    call.cancel()
            return
        received = self._ws_messages_received()
        if call is not None:
            if received == self._frame_mark:
                return
            if call.active():
                call.cancel()
        self._frame_mark = received
        reactor = self._coap_reactor
        assert reactor is not None and self._frame_timeout is not None
        self._frame_call = reactor.callLater(self._frame_timeout, self._frame_timed_out)

    def _frame_timed_out(self) -> None:
        self._frame_call = None
        if not self._ws_open() or self._reading_paused:
            return  # not reading is our doing: the clock starts again when we read again
        if self._ws_unfinished() == "message":
            what = "a fragmented WebSocket message took longer than {:g} s to finish"
        else:
            what = "a WebSocket frame took longer than {:g} s to arrive"
        self.channel.violation(what.format(self._frame_timeout), "frame_timeout")

    def _set_reading(self, reading: bool) -> None:
        """The channel turns reading on and off (flow control); a frame left unfinished
        meanwhile gets its whole frame timeout again once we read again."""
        super()._set_reading(reading)
        if reading and self._frame_timeout is not None:
            self._watch_unfinished()

    def _stop_frame_timer(self) -> None:
        call, self._frame_call = self._frame_call, None
        if call is not None and call.active():
            call.cancel()

    # -- messages (autobahn's public frame and streaming API) -----------------------------

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        self._incoming_size = 0
        self._incoming_frames = 0
        self._discarding = False
        channel = getattr(self, "channel", None)
        if channel is None:
            return
        if not isBinary:
            self._discarding = True
            channel.violation_with_close_code(
                CLOSE_UNSUPPORTED_DATA,
                "text WebSocket message; CoAP messages travel in binary messages "
                "(RFC 8323 section 4.2)",
            )

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)  # type: ignore[misc]
        self._incoming_size += length
        self._incoming_frames += 1
        channel = getattr(self, "channel", None)
        if channel is None or self._discarding:
            return
        if self._incoming_frames > MAX_FRAGMENTS:
            self._discarding = True
            channel.violation_with_close_code(
                CLOSE_MESSAGE_TOO_BIG,
                f"a fragmented WebSocket message of more than {MAX_FRAGMENTS} frames",
                "message_too_large",
            )
        elif self._incoming_size > self._coap_max_message_size:
            # Rejected before its body is buffered, as the TCP decoder does.
            self._discarding = True
            channel.violation_with_close_code(
                CLOSE_MESSAGE_TOO_BIG,
                f"message of {self._incoming_size} bytes or more exceeds our "
                f"Max-Message-Size of {self._coap_max_message_size} bytes",
                "message_too_large",
            )

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self._discarding:
            super().onMessageFrameData(payload)  # type: ignore[misc]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._discarding:
            return
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.ws_message_received(payload)

    def onPing(self, payload: bytes) -> None:
        # RFC 6455 obliges the Pong; RFC 8323 section 4.4 only says not to send Pings.
        self.coap_log.debug("WebSocket Ping from {peer}", peer=self._ws_peer())
        super().onPing(payload)  # type: ignore[misc]
