"""CoAP over WebSockets (RFC 8323 section 4) with autobahn: ``coap+ws`` and ``coaps+ws``.

The WebSocket client opens ``/.well-known/coap`` offering the subprotocol ``coap``
(section 4.1); every CoAP message then travels alone in one binary WebSocket message, with
the Len nibble set to 0 (section 4.2).  Everything above the framing, the CSM, Ping and Pong,
Release and Abort, is the same sans-I/O core and :class:`~coaptcp.channel.channel.Channel` as over
TCP.  TLS (``coaps+ws``) is the endpoint's concern, as for ``coaps+tcp``.

Server, on a port of its own::

    serverFromString(reactor, "tcp:8080").listen(CoapWebSocketServerFactory(Site(root)))

or sharing a port with a ``twisted.web`` site (see :func:`websocket_resource`)::

    web_root = File("/srv/www")
    websocket_resource(web_root, Site(root))
    serverFromString(reactor, "tcp:8080").listen(twisted.web.server.Site(web_root))

Client::

    protocol = await connect_websocket(reactor, "coap+ws://example.org:8080")
    response = await protocol.request(Code.GET, Options.build(uri_path=["hello"]))

Choices this module makes (docs/websockets.md has the reasons):

- A handshake that does not offer ``coap`` is refused with HTTP 400; a handshake for
  another path than ``/.well-known/coap`` gets HTTP 404 (when serving standalone); one
  with a ``Sec-WebSocket-Version`` other than 13 gets HTTP 426 with
  ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.4).
- A connection has :attr:`Limits.ws_handshake_timeout` seconds from the moment it is
  accepted to finish its opening handshake (TLS included), however it trickles its
  bytes; then it is dropped.  It counts against the connection limits from accept
  (:mod:`coaptcp.transport.admission`); one over a limit gets HTTP 503 and is closed.
- A frame or a fragmented message that takes longer than :attr:`Limits.frame_timeout`
  from its first byte to its last gets our Abort, then the close (as over TCP).
- A close frame with a code that must not be sent (RFC 6455 section 7.4) is answered
  with a close frame with 1002, and a close reason that is not UTF-8 with 1007; then
  the connection is closed.
- The Host header of the handshake is the default Uri-Host of the peer's requests
  (RFC 8323 section 8.5).
- A text message, a message larger than our Max-Message-Size, or any CoAP message format
  error gets our Abort (section 5.6) followed by a WebSocket close frame: code 1003 for text,
  1009 for too large, 1002 for every other violation.  The close frame follows the Abort
  on the same ordered stream, so the peer reads the Abort first.  Release and a received
  Abort close with 1000.
- WebSocket Ping frames are never sent (section 4.4 says SHOULD NOT, and libcoap closes on
  them); messages are never fragmented (libcoap closes on continuation frames).
- autobahn does the opening and closing handshakes and every unusual frame; the common
  data frames (final, binary, unfragmented) are read and written by
  :mod:`coaptcp.transport.websocket.frames`
  with the same bytes on the wire, the answers to one read in one write
  (``coap_fast_path = False`` on a protocol leaves everything to autobahn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest, ConnectionResponse
from service_identity import VerificationError
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource as WebResource

from coaptcp.channel.channel import DEFAULT_CLOSE_TIMEOUT, EARLY_WRITE, Channel, ChannelOwner
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server, make_upload_budget
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, BlockwiseServer, UploadBudget
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.events import ConnectionAborted
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.admission import ConnectionAdmission, ConnectionGate, Refusal
from coaptcp.transport.websocket.frames import encode_frames, next_frame

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = [
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "COAP_SUBPROTOCOL",
    "WEBSOCKET_VERSION",
    "WELL_KNOWN_COAP",
    "CoapWebSocketClientFactory",
    "CoapWebSocketClientProtocol",
    "CoapWebSocketResource",
    "CoapWebSocketServerFactory",
    "CoapWebSocketServerProtocol",
    "WebSocketConnectError",
    "WebSocketTarget",
    "connect_websocket",
    "parse_websocket_uri",
    "websocket_resource",
]

#: The WebSocket subprotocol name of CoAP (RFC 8323 sections 4.1 and 11.9).
COAP_SUBPROTOCOL = "coap"
#: Where the CoAP WebSocket endpoint lives (RFC 8323 section 8.3, RFC 8307).
WELL_KNOWN_COAP = "/.well-known/coap"

#: WebSocket close codes (RFC 6455 section 7.4.1) we use after Release or Abort.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

#: The only WebSocket version we speak (RFC 6455 sections 4.1 and 4.4).
WEBSOCKET_VERSION = 13

_STATE_OPEN = WebSocketProtocol.STATE_OPEN

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


class WebSocketChannel(Channel):
    """A :class:`Channel` that remembers which WebSocket close code its closing deserves.

    Every Abort we send for a violation of the peer closes with 1002 (protocol error),
    unless the transport already chose a more precise code (1003 for a text message, 1009
    for a message that is too large).  A Release, or an Abort received, closes with 1000.
    """

    close_code: int = CLOSE_NORMAL

    def violation_with_close_code(self, close_code: int, diagnostic: str) -> None:
        """Abort for a WebSocket-level violation, closing with ``close_code`` afterwards."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code = close_code
        self.violation(diagnostic)

    def _on_violation(self, event: ConnectionAborted) -> None:
        if self.close_code == CLOSE_NORMAL:
            self.close_code = CLOSE_PROTOCOL_ERROR
        super()._on_violation(event)

    def abort(self, diagnostic: str) -> None:
        """Send Abort and close with 1002 (RFC 8323 section 5.6)."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code = CLOSE_PROTOCOL_ERROR
        super().abort(diagnostic)


class CoapWebSocketMixin(ChannelOwner):
    """What the server and client protocols share: one :class:`Channel` per WebSocket.

    Mixed into autobahn's Twisted protocols (it relies on their ``sendMessage``,
    ``sendCloseFrame``, ``dropConnection``, ``state`` and ``transport``).
    """

    # Not named ``log``: that would replace autobahn's own (txaio) logger on the protocol.
    coap_log = Logger()

    channel: WebSocketChannel
    _coap_max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    _incoming_size: int = 0
    _discarding: bool = False

    #: Read and write the common data frames ourselves (:mod:`coaptcp.transport.websocket.frames`)
    #: instead
    #: of through autobahn's per-frame machinery; everything else still goes to autobahn.
    #: Set to ``False`` (on the class or a protocol before it opens) to use autobahn only.
    coap_fast_path: bool = True
    _fast_in: bool = False  # the options allow our reading of data frames
    _fast_out: bool = False  # ... and our writing of them
    _fast_masked_in: bool = True  # frames we read carry a mask (we are the server)
    _fast_mask_out: bool = False  # frames we write get a mask (we are the client)
    _out_batch: list[bytes] | None = None  # while a read is parsed: its answers, unsent
    _frame_call: IDelayedCall | None = None  # the frame timeout of an unfinished frame
    _frame_mark = 0  # messages received when it was armed
    _coap_reactor: IReactorTime | None = None
    _frame_timeout: float | None = None

    if TYPE_CHECKING:  # autobahn's protocol classes supply these at run time
        transport: Any
        state: int
        STATE_OPEN: int
        factory: Any
        data: bytes
        current_frame: Any
        wasNotCleanReason: str | None
        inside_message: bool
        send_queue: Any
        trafficStats: Any
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

        def sendMessage(self, payload: bytes, isBinary: bool = False) -> None: ...
        def sendCloseFrame(
            self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
        ) -> None: ...
        def dropConnection(self, abort: bool = False) -> None: ...
        def failHandshake(
            self, reason: str, code: int = 400, responseHeaders: Any = None
        ) -> None: ...

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

    _producer_registered = False

    def _closeConnection(self, abort: bool = False) -> None:
        # No longer the transport's producer once we close: Twisted's TLS layer holds
        # back its close_notify, and so the close, while a producer is registered.
        if self._producer_registered:
            self._producer_registered = False
            self.transport.unregisterProducer()
        super()._closeConnection(abort)  # type: ignore[misc]

    def _choose_fast_path(self) -> None:
        """Use our own reading and writing of data frames when nothing unusual is on.

        Only with the options our factories set (no compression, no fragmenting, no
        automatic Pings, no autobahn size limits, no frame logging or timing): then a
        final binary frame means to autobahn exactly what it means to us.
        """
        if not self.coap_fast_path:
            return
        if (
            self._perMessageCompress is not None
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
        is_server = bool(self.factory.isServer)
        self._fast_masked_in = is_server
        self._fast_mask_out = bool(self.maskServerFrames if is_server else self.maskClientFrames)
        self._fast_in = self._fast_out = True

    # -- output ---------------------------------------------------------------------------

    def _send_frames(self, frames: list[bytes]) -> None:
        """One binary WebSocket message per CoAP message, never fragmented (section 4.2)."""
        if self.state != self.STATE_OPEN:
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
        if self._fast_out and not self.send_queue:
            self._write_frames(frames)
            return
        for frame in frames:
            self.sendMessage(frame, isBinary=True)

    def _write_frames(self, frames: list[bytes]) -> None:
        """Write CoAP messages as the frames ``sendMessage`` would write, in one write.

        One final binary frame each (RFC 8323 section 4.2, RFC 6455 section 5.2),
        unmasked from a server and masked from a client (section 5.1); autobahn's
        traffic counters count them as it counts its own.
        """
        chunk = encode_frames(frames, masked=self._fast_mask_out)
        count = len(frames)
        size = sum(map(len, frames))
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += count
        stats.outgoingWebSocketFrames += count
        stats.outgoingOctetsAppLevel += size
        stats.outgoingOctetsWebSocketLevel += size
        stats.outgoingOctetsWireLevel += len(chunk)
        self.transport.write(chunk)

    def _flush_batch(self) -> None:
        """Write the answers held back while a read is parsed (before anything else)."""
        batch = self._out_batch
        if batch:
            frames = batch[:]
            batch.clear()
            self._write_frames(frames)

    def _close_websocket(self) -> None:
        """Start the closing handshake; the frames queued before it are sent first."""
        self._flush_batch()
        if self.state != self.STATE_OPEN:
            return
        channel = self.channel
        reason = _truncate_utf8(channel.close_reason or "")
        self.sendCloseFrame(code=channel.close_code, reasonUtf8=reason or None, isReply=False)

    def _drop_websocket(self) -> None:
        self._flush_batch()
        self.dropConnection(abort=True)

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

    def _watch_unfinished(self) -> None:
        """Run the frame timeout while a frame or a fragmented message is unfinished.

        It runs from the read that left one unfinished until a read leaves none; a
        message completed meanwhile starts it again (the unfinished frame is a new one).
        """
        call = self._frame_call
        unfinished = self.state == _STATE_OPEN and (
            bool(self.data) or self.current_frame is not None or self.inside_message
        )
        if not unfinished:
            if call is not None:
                self._frame_call = None
                if call.active():
                    call.cancel()
            return
        received = self.trafficStats.incomingWebSocketMessages
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
        if self.state != _STATE_OPEN or self._reading_paused:
            return  # not reading is our doing: the clock starts again when we read again
        if self.current_frame is None and not self.data and self.inside_message:
            what = "a fragmented WebSocket message took longer than {:g} s to finish"
        else:
            what = "a WebSocket frame took longer than {:g} s to arrive"
        self.channel.violation(what.format(self._frame_timeout))

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

    def _read_frames(self, data: bytes) -> int:
        """Deliver the common frames at the front of ``data``; how many bytes they took."""
        deliver = self.onMessage  # as autobahn delivers each message (may be overridden)
        limit = self._coap_max_message_size
        masked = self._fast_masked_in
        batch: list[bytes] = []
        self._out_batch = batch
        pos = frames = octets = 0
        try:
            while (found := next_frame(data, pos, limit, masked)) is not None:
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
                stats = self.trafficStats
                stats.incomingOctetsWireLevel += pos
                stats.incomingOctetsWebSocketLevel += octets
                stats.incomingOctetsAppLevel += octets
                stats.incomingWebSocketFrames += frames
                stats.incomingWebSocketMessages += frames
        return pos

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        self._incoming_size = 0
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
        channel = getattr(self, "channel", None)
        if channel is None or self._discarding:
            return
        if self._incoming_size > self._coap_max_message_size:
            # Rejected before its body is buffered, as the TCP decoder does.
            self._discarding = True
            channel.violation_with_close_code(
                CLOSE_MESSAGE_TOO_BIG,
                f"message of {self._incoming_size} bytes or more exceeds our "
                f"Max-Message-Size of {self._coap_max_message_size} bytes",
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

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        """Answer a close frame that breaks RFC 6455 with a close frame of our own.

        A code that must not be sent (section 7.4) gets 1002, a reason that is not UTF-8
        (section 5.5.1) 1007; then we close the TCP connection after that frame.
        (autobahn would send the same close frame, then take the peer's own close frame
        for the answer to it and reset the connection, losing our frame.)
        """
        problem: tuple[int, str] | None = None
        if self.state == _STATE_OPEN:
            if code is not None and not valid_close_code(code):
                problem = (
                    CLOSE_PROTOCOL_ERROR,
                    f"invalid close code {code} (RFC 6455 section 7.4)",
                )
            elif reasonRaw:
                try:
                    reasonRaw.decode("utf-8")
                except UnicodeDecodeError:
                    problem = (CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8")
        if problem is None:
            return super().onCloseFrame(code, reasonRaw)  # type: ignore[misc, no-any-return]
        close_code, reason = problem
        self.coap_log.info(
            "Closing the WebSocket from {peer} with {code}: {reason}",
            peer=self.transport.getPeer(),
            code=close_code,
            reason=reason,
        )
        self.wasNotCleanReason = reason
        self.sendCloseFrame(code=close_code, reasonUtf8=reason.encode(), isReply=True)
        self.dropConnection(abort=False)
        return True

    def onPing(self, payload: bytes) -> None:
        # RFC 6455 obliges the Pong; RFC 8323 section 4.4 only says not to send Pings.
        self.coap_log.debug("WebSocket Ping from {peer}", peer=getattr(self, "peer", None))
        super().onPing(payload)  # type: ignore[misc]

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



def _apply_coap_options(factory: Any, close_timeout: float) -> None:
    """The autobahn options every CoAP factory needs (both sides)."""
    factory.setProtocolOptions(
        autoPingInterval=0,  # RFC 8323 section 4.4: no WebSocket Pings; libcoap closes on them
        autoFragmentSize=0,  # unfragmented messages; libcoap closes on continuation frames
        utf8validateIncoming=False,  # text messages are rejected unread anyway
        failByDrop=False,  # always close with a close frame, so queued Aborts are flushed
        closeHandshakeTimeout=close_timeout,
        maxFramePayloadSize=0,  # we check sizes ourselves, to Abort before buffering
        maxMessagePayloadSize=0,
    )


class CoapWebSocketServerProtocol(CoapWebSocketMixin, WebSocketServerProtocol):  # type: ignore[misc]
    """The server end of one CoAP-over-WebSockets connection (RFC 8323 section 4).

    Accepts the opening handshake only with the subprotocol ``coap`` (and, standalone,
    only at ``/.well-known/coap``), then sends its CSM.  The application side is the same
    as :class:`~coaptcp.transport.tcp.CoapProtocol`: :meth:`request`, :meth:`ping`,
    :meth:`release`, :meth:`abort` and :attr:`channel`.
    """

    factory: CoapWebSocketServerFactory
    _default_host: str | None = None
    _handshake_call: IDelayedCall | None = None
    _refusal: Refusal | None = None

    def connectionMade(self) -> None:
        """Count the connection from accept, and start the handshake's clock.

        Mounted in a ``twisted.web`` site, the HTTP connection that hands us its
        transport was counted already: its count becomes ours.  A connection over a
        limit gets HTTP 503 (or, far over it, is dropped at once).
        """
        super().connectionMade()
        factory = self.factory
        handover = factory._handover
        gate = factory.gate
        peer = self.transport.getPeer()
        if handover is not None and gate.transfer(handover, self):
            refusal = gate.readdress(self, peer)  # after a PROXY header, the client's
        else:
            refusal = gate.admit(self, peer)
        timeout = factory.limits.ws_handshake_timeout
        if timeout is not None:
            self._handshake_call = factory.reactor.callLater(timeout, self._handshake_timed_out)
        if refusal is not None:
            if handover is None or not refusal.answer:
                self._refuse(refusal)
            else:
                # Counted only now, in a twisted.web site of its own: the handshake that
                # twisted.web read is on its way, refuse it (onConnect) once it is here.
                self._refusal = refusal

    def _refuse(self, refusal: Refusal) -> None:
        if not refusal.answer:
            self.transport.abortConnection()
            return
        self.failHandshake(
            f"Service Unavailable: {refusal.diagnostic}",
            503,
            [("Retry-After", str(self.factory.limits.retry_after))],
        )

    def _handshake_timed_out(self) -> None:
        self._handshake_call = None
        if self.state == _STATE_OPEN:
            return
        factory = self.factory
        factory.gate.handshake_timed_out(
            factory.reactor, self.transport.getPeer(), factory.limits.ws_handshake_timeout or 0
        )
        self.transport.abortConnection()

    def _stop_handshake_timer(self) -> None:
        call, self._handshake_call = self._handshake_call, None
        if call is not None and call.active():
            call.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # type: ignore[override]
        self._stop_handshake_timer()
        self.factory.discharge(self)
        super().connectionLost(reason)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Refuse the opening handshake with an HTTP error, then close.

        An unsupported ``Sec-WebSocket-Version`` gets 426 Upgrade Required with the
        version we speak (RFC 6455 section 4.4; autobahn would answer 400).
        """
        headers = list(responseHeaders or [])
        if any(name.lower() == "sec-websocket-version" for name, _ in headers):
            code = 426
            headers = [("Sec-WebSocket-Version", str(WEBSOCKET_VERSION)), ("Upgrade", "websocket")]
        super().failHandshake(reason, code, headers or None)

    def onConnect(self, request: ConnectionRequest) -> str:
        """Check the handshake (RFC 8323 section 4.1) and pick the subprotocol."""
        if self._refusal is not None:
            raise ConnectionDeny(
                ConnectionDeny.SERVICE_UNAVAILABLE,
                f"Service Unavailable: {self._refusal.diagnostic}",
            )
        path = self.factory.path
        if path is not None and request.path != path:
            raise ConnectionDeny(
                ConnectionDeny.NOT_FOUND,
                f"Not Found: CoAP over WebSockets is served at {path}",
            )
        if COAP_SUBPROTOCOL not in request.protocols:
            offered = ", ".join(request.protocols) if request.protocols else "none"
            raise ConnectionDeny(
                ConnectionDeny.BAD_REQUEST,
                f'Bad Request: offer the WebSocket subprotocol "coap" '
                f"(RFC 8323 section 4.1); offered: {offered}",
            )
        self._default_host = uri_host_from_header(request.host or "")
        return COAP_SUBPROTOCOL

    def onOpen(self) -> None:
        factory = self.factory
        self._start_channel(
            Role.ACCEPTOR,
            site=factory.site,
            reactor=factory.reactor,
            default_host=self._default_host,
            max_message_size=factory.max_message_size,
            require_csm=factory.require_csm,
            close_timeout=factory.close_timeout,
            limits=factory.limits,
            blockwise=make_blockwise_server(
                factory.limits, factory.upload_budget, factory.max_body_size
            ),
        )
        self._stop_handshake_timer()
        factory.connections.add(self)  # counted since accept; now it can be released

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._channel_lost(wasClean, code, reason)


class CoapWebSocketServerFactory(ConnectionAdmission, WebSocketServerFactory):  # type: ignore[misc]
    """Builds :class:`CoapWebSocketServerProtocol` instances for one resource tree.

    :param site: the resource tree (a :class:`Site`, a bare :class:`Resource`, or ``None``
        to answer every request with 5.01, RFC 8323 section 3.3).
    :param path: the only request path accepted for the handshake, ``/.well-known/coap``
        by default (RFC 8323 section 8.3); ``None`` accepts any (used when mounted in a
        ``twisted.web`` site, which has already routed the request).
    :param max_message_size: our Max-Message-Size (RFC 8323 section 5.3.1).
    :param require_csm: abort peers whose first message is not a CSM (RFC 8323 section 3.3).
    :param allowed_origins: autobahn's Origin patterns for browser clients (``["*"]``: any).
    :param reactor: the reactor for our timers; the global one when ``None``.
    :param max_body_size: the largest Block1 upload reassembled (RFC 7959 section 2.9.3).
    :param upload_budget: the bytes partial Block1 uploads may hold, shared with the
        server's other factories (:func:`~coaptcp.channel.limits.make_upload_budget`); by
        default one of ``limits.max_upload_bytes`` for this factory alone.
    :param limits: timeouts and bounds (:mod:`coaptcp.channel.limits`), the handshake timeout
        and the connection limits among them.
    :param gate: counts the connections against ``limits`` from accept (shared with the
        server's other listeners); by default the factory counts its own.
    """

    protocol = CoapWebSocketServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        path: str | None = WELL_KNOWN_COAP,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_csm: bool = True,
        allowed_origins: list[str] | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        reactor: IReactorTime | None = None,
        server: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        upload_budget: UploadBudget | None = None,
        gate: ConnectionGate | None = None,
    ) -> None:
        if server is None:
            from coaptcp.core.version import __version__

            server = f"coaptcp/{__version__}"
        super().__init__(protocols=[COAP_SUBPROTOCOL], server=server, reactor=reactor)
        if isinstance(site, Resource):
            site = Site(site)
        self.site = site
        self.path = path
        self.max_message_size = max_message_size
        self.require_csm = require_csm
        self.close_timeout = close_timeout
        self.limits = limits
        self.max_body_size = max_body_size
        if upload_budget is None:
            upload_budget = make_upload_budget(limits)
        self.upload_budget = upload_budget
        self._init_admission(gate)
        #: While ``twisted.web`` hands a connection to us: the HTTP channel it leaves.
        self._handover: object | None = None
        _apply_coap_options(self, close_timeout)
        self.setProtocolOptions(
            webStatus=False,  # a plain GET gets 426 Upgrade Required, not autobahn's page
            allowedOrigins=allowed_origins or ["*"],
            versions=[WEBSOCKET_VERSION],  # RFC 6455 only; 8 (hybi-08) and older get 426
            openHandshakeTimeout=0,  # our own timeout runs from accept (connectionMade)
        )

    def release_all(self, diagnostic: str = "server shutting down") -> Deferred[Any]:
        """Release every open connection; fires when all have closed (section 5.5)."""
        closing = [protocol.release(diagnostic) for protocol in list(self.connections)]
        return DeferredList(closing, consumeErrors=True)


class CoapWebSocketResource(WebSocketResource):  # type: ignore[misc]
    """A ``twisted.web`` resource that upgrades requests to CoAP over WebSockets.

    :ivar factory: the :class:`CoapWebSocketServerFactory` behind it (for ``release_all``
        on shutdown).
    """

    def __init__(self, factory: CoapWebSocketServerFactory) -> None:
        super().__init__(factory)
        self.factory = factory

    def render(self, request: Any) -> Any:
        """Hand the request's connection to a new WebSocket protocol (autobahn's doing),
        which takes over the HTTP channel's place in the connection count."""
        factory = self.factory
        factory._handover = request.channel
        try:
            return super().render(request)
        finally:
            factory._handover = None


def websocket_resource(
    web_root: WebResource,
    coap: Site | Resource | CoapWebSocketServerFactory | None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    require_csm: bool = True,
    allowed_origins: list[str] | None = None,
    reactor: IReactorTime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    upload_budget: UploadBudget | None = None,
) -> CoapWebSocketResource:
    """Mount CoAP over WebSockets at ``/.well-known/coap`` under a ``twisted.web`` root.

    ``web_root`` is the root resource of an existing ``twisted.web.server.Site`` (a
    ``File``, a ``Resource`` with children...); its other pages keep being served on the
    same port.  ``coap`` is what the WebSocket endpoint serves: a CoAP :class:`Site` or
    root :class:`Resource` (or a ready :class:`CoapWebSocketServerFactory`).  An existing
    ``.well-known`` child of ``web_root`` is reused.  Returns the mounted resource; its
    ``factory`` attribute is the :class:`CoapWebSocketServerFactory` (RFC 8323 sections
    4.1 and 8.3).
    """
    if isinstance(coap, CoapWebSocketServerFactory):
        factory = coap
    else:
        factory = CoapWebSocketServerFactory(
            coap,
            path=None,
            max_message_size=max_message_size,
            require_csm=require_csm,
            allowed_origins=allowed_origins,
            reactor=reactor,
            limits=limits,
            max_body_size=max_body_size,
            upload_budget=upload_budget,
        )
    well_known = web_root.children.get(b".well-known")
    if well_known is None:
        well_known = WebResource()
        web_root.putChild(b".well-known", well_known)
    resource = CoapWebSocketResource(factory)
    well_known.putChild(b"coap", resource)
    return resource


# -- the client ---------------------------------------------------------------------------


class WebSocketConnectError(CoapTcpError):
    """The CoAP-over-WebSockets connection could not be opened (RFC 8323 section 4.1).

    :ivar reason: what went wrong: the HTTP status of a refused upgrade, a missing
        ``coap`` subprotocol, a TLS verification failure, a connection error...
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebSocketTarget:
    """Where a ``coap+ws``/``coaps+ws`` URI points (RFC 8323 sections 8.3 and 8.4).

    :ivar secure: TLS (``coaps+ws``, ``wss``).
    :ivar host: the host name or address, without IPv6 brackets.
    :ivar port: the TCP port (80 and 443 by default).
    :ivar resource: the HTTP request target of the handshake, ``/.well-known/coap``.
    """

    secure: bool
    host: str
    port: int
    resource: str = WELL_KNOWN_COAP

    @property
    def url(self) -> str:
        """The ``ws://`` or ``wss://`` URL of the WebSocket endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{self.resource}"


def parse_websocket_uri(uri: str) -> WebSocketTarget:
    """Find the WebSocket endpoint of a ``coap+ws://`` or ``coaps+ws://`` URI.

    The endpoint is always ``/.well-known/coap`` at the URI's authority; the URI's path
    and query name a CoAP resource there (RFC 8323 section 8.3).  ``ws://`` and
    ``wss://`` URLs are taken as the endpoint itself (for servers mounted elsewhere).
    Raises :class:`ValueError` for any other scheme or a URI without a host.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("coap+ws", "coaps+ws", "ws", "wss"):
        raise ValueError(f"not a coap+ws, coaps+ws, ws or wss URI: {uri!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {uri!r}")
    secure = scheme in ("coaps+ws", "wss")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"bad port in {uri!r}: {error}") from None
    if port is None:
        port = 443 if secure else 80
    resource = WELL_KNOWN_COAP
    if scheme in ("ws", "wss") and parts.path not in ("", "/"):
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
    return WebSocketTarget(secure, parts.hostname, port, resource)


class CoapWebSocketClientProtocol(CoapWebSocketMixin, WebSocketClientProtocol):  # type: ignore[misc]
    """The client end of one CoAP-over-WebSockets connection (RFC 8323 section 4).

    Offers the subprotocol ``coap``, insists that the server selects it, then sends its
    CSM.  Use :meth:`request`, :meth:`ping`, :meth:`release` and :attr:`channel` as on
    :class:`~coaptcp.transport.tcp.CoapProtocol`.
    """

    factory: CoapWebSocketClientFactory

    def onConnect(self, response: ConnectionResponse) -> None:
        """Check that the server selected ``coap`` (RFC 8323 section 4.1)."""
        if response.protocol != COAP_SUBPROTOCOL:
            reason = (
                'the server did not select the WebSocket subprotocol "coap" '
                f"(RFC 8323 section 4.1); it selected {response.protocol!r}"
            )
            self.factory.failure_reason = reason
            raise WebSocketConnectError(reason)

    def onOpen(self) -> None:
        factory = self.factory
        self._start_channel(
            Role.INITIATOR,
            site=factory.site,
            reactor=factory.reactor,
            default_host=None,
            max_message_size=factory.max_message_size,
            require_csm=factory.require_csm,
            close_timeout=factory.close_timeout,
            limits=factory.limits,
        )
        factory.connections.add(self)
        factory.opened_connection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # type: ignore[override]
        factory = self.factory
        if reason.check(VerificationError) and not factory.opened.called:
            # Twisted's hostname check failed; autobahn would only see a dropped link.
            factory.failure_reason = (
                f"the server's certificate is not valid for {factory.target.host}: "
                f"{reason.getErrorMessage()}"
            )
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        self._channel_lost(wasClean, code, reason)
        self.factory.failed_to_open(reason or f"WebSocket closed with code {code}")


class CoapWebSocketClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    """Opens one CoAP-over-WebSockets connection to ``target``.

    :ivar opened: fires with the :class:`CoapWebSocketClientProtocol` once the handshake
        is done and our CSM is sent, or fails with :class:`WebSocketConnectError`.
    """

    protocol = CoapWebSocketClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        target: WebSocketTarget,
        site: Site | Resource | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_csm: bool = True,
        open_timeout: float = 30.0,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        from coaptcp.core.version import __version__

        super().__init__(
            url=target.url,
            origin=origin,
            protocols=[COAP_SUBPROTOCOL],
            useragent=f"coaptcp/{__version__}",
            headers=headers,
            reactor=reactor,
        )
        if ":" in target.host:
            self.host = f"[{target.host}]"  # autobahn writes the Host header from this
        if isinstance(site, Resource):
            site = Site(site)
        self.target = target
        self.site = site
        self.max_message_size = max_message_size
        self.require_csm = require_csm
        self.limits = DEFAULT_LIMITS
        self.close_timeout = close_timeout
        self.connections: set[CoapWebSocketClientProtocol] = set()
        self.failure_reason: str | None = None
        self.opened: Deferred[CoapWebSocketClientProtocol] = Deferred()
        _apply_coap_options(self, close_timeout)
        self.setProtocolOptions(openHandshakeTimeout=open_timeout, perMessageCompressionOffers=[])

    def opened_connection(self, protocol: CoapWebSocketClientProtocol) -> None:
        """The handshake is done: hand the protocol to whoever waits."""
        if not self.opened.called:
            self.opened.callback(protocol)

    def failed_to_open(self, reason: str) -> None:
        """The connection closed before it opened: fail :attr:`opened` with the reason."""
        if not self.opened.called:
            self.opened.errback(Failure(WebSocketConnectError(self.failure_reason or reason)))

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """(Only used with ``reactor.connectTCP``; endpoints report failures themselves.)"""
        self.failed_to_open(reason.getErrorMessage())


def connect_websocket(
    reactor: Any,
    uri: str,
    site: Site | Resource | None = None,
    *,
    trust_root: Any = None,
    tls_options: Any = None,
    endpoint: IStreamClientEndpoint | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float = 30.0,
    origin: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Deferred[CoapWebSocketClientProtocol]:
    """Open a CoAP-over-WebSockets connection to ``uri`` (RFC 8323 sections 4 and 8.3-8.4).

    :param reactor: the reactor (``None``: the global one).
    :param uri: ``coap+ws://host[:port][/path]`` (port 80 by default) or
        ``coaps+ws://...`` (443); the WebSocket endpoint is ``/.well-known/coap`` there.
        A ``ws://`` or ``wss://`` URL names the endpoint directly.
    :param site: resources this side serves to the server (RFC 8323 section 3.3 lets
        either side send requests); ``None`` answers 5.01.
    :param trust_root: for ``coaps+ws``, the certificate authorities to trust (an
        ``IOpenSSLTrustRoot`` such as ``Certificate.loadPEM(...)``); the platform's by
        default.  The server's certificate must be valid for the URI's host name, checked
        with service_identity by Twisted's ``optionsForClientTLS``.
    :param tls_options: a complete ``IOpenSSLClientConnectionCreator`` instead.
    :param endpoint: connect through this endpoint instead of one built from the URI
        (the URI then only gives the Host header and the request path).
    :param timeout: bound, in seconds, on the TCP connect and on the opening handshake.
    :param origin: an Origin header to send (browsers send one; we do not by default).
    :param limits: timeouts and bounds of the connection (:mod:`coaptcp.channel.limits`).

    Fires with a :class:`CoapWebSocketClientProtocol` that has sent its CSM, so requests
    can go at once (section 3.3); fails with :class:`WebSocketConnectError` when the
    handshake is refused or ``coap`` is not selected.
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    target = parse_websocket_uri(uri)
    if endpoint is None:
        endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
        if target.secure:
            if tls_options is None:
                from twisted.internet.ssl import optionsForClientTLS

                tls_options = optionsForClientTLS(target.host, trustRoot=trust_root)
            endpoint = wrapClientTLS(tls_options, endpoint)
    factory = CoapWebSocketClientFactory(
        target,
        site,
        max_message_size=max_message_size,
        open_timeout=timeout,
        origin=origin,
        reactor=reactor,
    )
    factory.limits = limits

    connected: list[CoapWebSocketClientProtocol] = []

    def cancel(_: Deferred[CoapWebSocketClientProtocol]) -> None:
        connecting.cancel()  # still connecting: stop; connected: drop the link
        for protocol in connected:
            protocol.dropConnection(abort=True)

    factory.opened = Deferred(cancel)

    def transport_connected(protocol: CoapWebSocketClientProtocol) -> None:
        connected.append(protocol)

    def connect_failed(failure: Failure) -> None:
        if failure.check(CancelledError):
            return  # we cancelled it: factory.opened fails with CancelledError itself
        if not factory.opened.called:
            reason = f"cannot connect to {uri}: {failure.getErrorMessage()}"
            factory.opened.errback(Failure(WebSocketConnectError(reason)))

    connecting: Deferred[Any] = endpoint.connect(factory)
    connecting.addCallbacks(transport_connected, connect_failed)
    return factory.opened
