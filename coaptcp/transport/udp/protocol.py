"""CoAP over UDP for Twisted (RFC 7252): one socket that serves a Site and sends requests.

:class:`CoapDatagramProtocol` drives the sans-I/O message layer, a
:class:`~coaptcp.core.udp.UdpEndpoint`, from a ``DatagramProtocol``: each datagram goes in
with the reactor's time, each one the layer wants sent goes out at once, one timer is kept
at the layer's next deadline (retransmission, RFC 7252 section 4.2; deduplication, section 4.5;
the Empty ACK of a slow answer, section 5.2.2).  Server side: each request (CON or NON)
goes to the :class:`~coaptcp.server.Site` the other listeners serve.  Block-wise (RFC 7959)
without BERT: responses are cut into blocks of at most 1024 bytes, Block1 uploads are
reassembled per client address, bounded as on the reliable transports (SZX 7 is 4.00,
section 2.2).  Client side: ``request`` and ``ping`` return Deferreds; the layer
retransmits CON requests and fails them after MAX_TRANSMIT_WAIT.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, BlockwiseServer, UploadBudget
from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError, LocalProtocolError, MessageTooLarge
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, Options
from coaptcp.core.udp.blockwise import UDP_MAX_MESSAGE_SIZE, bert_in_request
from coaptcp.core.udp.config import TransmissionParameters, UdpLimits
from coaptcp.core.udp.events import (
    DatagramRejected,
    LimitReached,
    ObservationCancelled,
    PingFailed,
    RequestFailed,
    UdpEvent,
    UdpPongReceived,
    UdpRequestReceived,
    UdpResponseReceived,
)
from coaptcp.core.udp.framing import datagram_size
from coaptcp.core.udp.messaging import LimitError, UdpEndpoint
from coaptcp.core.udp.state import IncomingRequest, OutgoingRequest
from coaptcp.server import Request, Resource, Response, Site, bad_option_answer
from coaptcp.transport.udp.address import AddressCache
from coaptcp.transport.udp.observers import UdpPeerObservations

__all__ = ["DEFAULT_MAX_UPLOAD_PEERS", "CoapDatagramProtocol", "RequestTimedOut"]

#: Client addresses with a Block1 upload in progress at once; a further one gets 5.03.
DEFAULT_MAX_UPLOAD_PEERS = 256
#: Seconds in the Max-Age of a 5.03 that a bound caused (RFC 7252 section 5.9.3.4).
_RETRY_AFTER = 10
_BLOCK1_OR_LATER = 23  # Block2 (23), Block1 (27), Size2 (28), Size1 (60)
_BLOCK2 = 23


#: Callbacks of :meth:`CoapDatagramProtocol.send`.
OnResponse = Callable[[Response], None]
OnFailure = Callable[[BaseException], None]


class RequestTimedOut(CoapTcpError, TimeoutError):
    """A CON request got no answer within MAX_TRANSMIT_WAIT, or a Reset (RFC 7252 4.2)."""


class CoapDatagramProtocol(DatagramProtocol):
    """CoAP over UDP on one socket: serves ``site`` and sends requests (RFC 7252).

    :param site: the resource tree to serve (a :class:`Site` or its root
        :class:`Resource`); ``None`` answers every request 5.01 (a client-only socket).
    :param reactor: the reactor for the clock and timers (``None``: the global one).
    :param parameters: RFC 7252 section 4.8 transmission parameters.
    :param limits: bounds of the message layer (peers, deduplication, pending requests).
    :param upload_limits: the upload timeout and per-address byte budget of Block1
        reassembly, as a connection's (RFC 7959 section 2.5).
    :param upload_budget: the server-wide budget of partial uploads, shared with the
        server's other listeners.
    :param max_body_size: the largest body reassembled; more is answered 4.13.
    """

    log = Logger()
    noisy = False  # no "Starting protocol" line per listener from Twisted's legacy log

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        reactor: Any = None,
        parameters: TransmissionParameters | None = None,
        limits: UdpLimits | None = None,
        upload_limits: Limits = DEFAULT_LIMITS,
        upload_budget: UploadBudget | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_upload_peers: int = DEFAULT_MAX_UPLOAD_PEERS,
    ) -> None:
        self.site = Site(site) if isinstance(site, Resource) else site
        self.reactor = default_reactor(reactor)
        self.endpoint = UdpEndpoint(parameters=parameters, limits=limits)
        self.max_upload_peers = max_upload_peers
        self._upload_limits = upload_limits
        self._upload_budget = upload_budget
        self._max_body_size = max_body_size
        self._block2 = BlockwiseServer()  # cuts responses; holds no state for that
        self._uploads: dict[Hashable, BlockwiseServer] = {}
        self._handlers: dict[OutgoingRequest, tuple[OnResponse, OnFailure]] = {}
        self._pings: dict[tuple[Hashable, int], tuple[Deferred[float], float]] = {}
        self._timer: Any = None
        self._upload_timer: Any = None
        self._limits_logged: set[str] = set()
        self.counts = getattr(self.site, "counts", None)  # rare events, for --metrics
        self._default_host: str | None = None
        self._observers: dict[Hashable, UdpPeerObservations] = {}
        self._addresses = AddressCache()  # recent peers' ``request.peer``, reused
        self.stopped = False  # the socket has closed: late renders send nothing

    # -- Twisted's DatagramProtocol -------------------------------------------------------

    def startProtocol(self) -> None:
        assert self.transport is not None
        host = self.transport.getHost()
        self._default_host = getattr(host, "host", None)

    def stopProtocol(self) -> None:
        self.stopped = True
        observers, self._observers = self._observers, {}
        for registry in observers.values():
            registry.forget_all()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._upload_timer is not None and self._upload_timer.active():
            self._upload_timer.cancel()
        self._upload_timer = None
        for upload in self._uploads.values():
            upload.drop_uploads()
        self._uploads.clear()
        handlers, self._handlers = self._handlers, {}
        for _, on_failure in handlers.values():
            on_failure(ConnectionClosedError("the UDP socket was closed"))
        pings, self._pings = self._pings, {}
        for pong, _ in pings.values():
            pong.errback(Failure(ConnectionClosedError("the UDP socket was closed")))

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        events = self.endpoint.datagram_received(datagram, addr, self.reactor.seconds())
        self._dispatch(events)
        self._flush()

    # -- the client side ------------------------------------------------------------------

    def send(
        self,
        message: Message,
        peer: tuple[str, int],
        on_response: OnResponse,
        on_failure: OnFailure,
        *,
        confirmable: bool = True,
    ) -> OutgoingRequest:
        """Send the request ``message`` (its token chosen by the caller) to ``peer``.

        ``on_response`` gets each response: one, or for an observation (a GET with
        Observe 0, RFC 7641) each fresh notification, until one without Observe or an
        error.  ``on_failure`` gets :class:`RequestTimedOut` when a CON went unanswered
        (or got a Reset) and :class:`ConnectionClosedError` when the socket closes.  Raises
        :class:`RequestNotSent` at a bound of the message layer, for a token in use, or
        for a message larger than a datagram may be.
        """
        try:
            sent = self.endpoint.send_request(
                message, peer, self.reactor.seconds(), confirmable=confirmable
            )
        except (LimitError, MessageTooLarge, LocalProtocolError) as error:
            raise RequestNotSent(str(error)) from None
        self._handlers[sent] = (on_response, on_failure)
        self._flush()
        return sent

    def cancel(self, sent: OutgoingRequest) -> None:
        """Forget a request: no more retransmissions or callbacks; a later answer gets a
        Reset (which, for an observation, cancels it at the server: RFC 7641 3.6)."""
        if self._handlers.pop(sent, None) is not None:
            self.endpoint.cancel_request(sent, self.reactor.seconds())
            self._flush()

    def fail_peer(self, peer: Hashable, error: BaseException) -> None:
        """Fail the requests and pings waiting on ``peer`` with ``error`` (its DTLS failed)."""
        for sent, (_, on_failure) in list(self._handlers.items()):
            if sent.peer == peer:
                self.cancel(sent)
                on_failure(error)
        for key in [key for key in self._pings if key[0] == peer]:
            self._pings.pop(key)[0].errback(Failure(error))

    def request(
        self,
        method: Code,
        peer: tuple[str, int],
        payload: bytes = b"",
        *,
        options: Options = EMPTY_OPTIONS,
        confirmable: bool = True,
    ) -> Deferred[Response]:
        """Send a request to ``peer`` (``(host, port)``, a numeric address) and fire with
        its response (RFC 7252 section 5).

        A CON request is retransmitted with exponential back-off (section 4.2) and fails
        with :class:`RequestTimedOut` after MAX_TRANSMIT_WAIT (93 s by default); a NON one
        fails after NON_LIFETIME.  Cancelling the Deferred forgets the request (a late
        answer then gets a Reset).  Fails with :class:`RequestNotSent` at a bound of the
        message layer or for a message larger than a datagram may be.
        """
        message = Message(Code(method), os.urandom(4), options, payload)
        sent: list[OutgoingRequest] = []
        d: Deferred[Response] = Deferred(lambda _: self.cancel(sent[0]))

        def answered(response: Response) -> None:
            self.cancel(sent[0])  # an observation's later notifications are not wanted
            if not d.called:
                d.callback(response)

        def failed(error: BaseException) -> None:
            if not d.called:
                d.errback(Failure(error))

        try:
            sent.append(self.send(message, peer, answered, failed, confirmable=confirmable))
        except RequestNotSent as error:
            return fail(error)
        return d

    def ping(self, peer: tuple[str, int]) -> Deferred[float]:
        """Send a CoAP ping (an Empty CON, RFC 7252 section 4.3) to ``peer``; fires with
        the round-trip time in seconds when the Reset comes back."""
        now = self.reactor.seconds()
        try:
            mid = self.endpoint.send_ping(peer, now)
        except LimitError as error:
            return fail(RequestNotSent(str(error)))
        d: Deferred[float] = Deferred()
        self._pings[(peer, mid)] = (d, now)
        self._flush()
        return d

    # -- events from the message layer ----------------------------------------------------

    def _dispatch(self, events: list[UdpEvent]) -> None:
        for event in events:
            if type(event) is UdpRequestReceived:
                self._serve(event.request)
            elif type(event) is UdpResponseReceived:
                sent = event.request
                handlers = self._handlers.get(sent)
                if handlers is not None:
                    if sent.done:
                        del self._handlers[sent]
                    message = event.message
                    handlers[0](Response(message.code, message.payload, options=message.options))
            elif type(event) is RequestFailed:
                handlers = self._handlers.pop(event.request, None)
                if handlers is not None:
                    handlers[1](RequestTimedOut(f"no answer: {event.reason}"))
            elif type(event) is UdpPongReceived or type(event) is PingFailed:
                entry = self._pings.pop((event.peer, event.message_id), None)
                if entry is not None:
                    waiting, started = entry
                    if type(event) is UdpPongReceived:
                        waiting.callback(self.reactor.seconds() - started)
                    else:
                        waiting.errback(Failure(RequestTimedOut("no answer to the ping")))
            elif type(event) is ObservationCancelled:
                registry = self._observers.get(event.peer)
                if registry is not None:
                    registry.forget(event.token)
            elif type(event) is LimitReached:
                self.log_limit(event.limit, event.diagnostic)
            elif type(event) is DatagramRejected:
                self.log.debug(
                    "Rejected a datagram from {peer}: {diagnostic}",
                    peer=event.peer,
                    diagnostic=event.diagnostic,
                )

    def log_limit(self, limit: str, diagnostic: str) -> None:
        """Count that ``limit`` was reached; log it once per bound (not per datagram)."""
        if self.counts is not None:
            self.counts.limit_reached(limit)
        if limit not in self._limits_logged:
            self._limits_logged.add(limit)
            self.log.warn("CoAP over UDP: {limit} reached: {diagnostic}", limit=limit,
                          diagnostic=diagnostic)

    # -- the server side ------------------------------------------------------------------

    def _serve(self, incoming: IncomingRequest) -> None:
        message = incoming.message
        if self.site is None:
            self._send(incoming, Message(Code.NOT_IMPLEMENTED, message.token,
                                         payload=b"no resources are served on this side"))
            return
        complete = message
        items = message.options.items
        if items and items[-1][0] >= _BLOCK1_OR_LATER:
            refused = bert_in_request(message) or bad_option_answer(message)  # RFC 7252 5.4.1
            if refused is not None:
                self._send(incoming, refused)
                return
            uploads = self._uploads_of(incoming)
            if uploads is None:
                return
            answer, whole = uploads.receive_request(message, self.reactor.seconds())
            if not uploads.uploads_in_progress:
                self._uploads.pop(incoming.peer, None)
            self._watch_uploads()
            if answer is not None:
                self._send(incoming, answer)
                return
            assert whole is not None
            complete = whole
        registry = None
        if message.options.observe is not None:  # only then can it register (RFC 7641 3.1)
            registry = self._observers.get(incoming.peer) or UdpPeerObservations(
                self, incoming.peer
            )
        try:
            request = self.make_request(complete, incoming.peer, registry)
        except UnicodeDecodeError:
            self._send(incoming, Message(Code.BAD_OPTION, message.token,
                                         payload=b"an URI option is not UTF-8"))
            return
        result = self.site.handle(request)
        if isinstance(result, Deferred):
            result.addCallback(self._answer, incoming, complete)
            result.addErrback(self._render_failed, incoming, complete)
        else:
            self._answer(result, incoming, complete, flush=False)

    def make_request(
        self, message: Message, peer: Hashable, registry: UdpPeerObservations | None
    ) -> Request:
        """The :class:`Request` for ``message`` from ``peer``; observations it registers
        go to ``registry``.  Raises :class:`UnicodeDecodeError` for a URI option that is
        not UTF-8."""
        return Request.received(
            message, self._addresses.get(peer), self._default_host, False, None, registry
        )

    def keep_peer(self, peer: Hashable, registry: UdpPeerObservations) -> None:
        """``registry`` holds an observation now: remember it for Resets and closing."""
        self._observers[peer] = registry

    def forget_peer(self, peer: Hashable, registry: UdpPeerObservations) -> None:
        """``registry`` holds no observation any more."""
        if self._observers.get(peer) is registry:
            del self._observers[peer]

    def send_notification(self, peer: Hashable, registration: Message, response: Response) -> None:
        """Send ``response`` as a notification of the observation ``registration`` made
        (its token; Block2 cuts a large one to its first block, RFC 7959 section 2.6)."""
        if self.stopped:
            return
        message = Message(response.code, registration.token, response.options, response.payload)
        message = self._block2.prepare_response(
            registration.replace(options=registration.options.remove(_BLOCK2)),
            message,
            peer_max_message_size=UDP_MAX_MESSAGE_SIZE,
            peer_bert=False,
            encoded_size=datagram_size,
        )
        try:
            self.endpoint.send_notification(peer, message, self.reactor.seconds())
            if self.counts is not None:
                self.counts.notifications += 1
        except (LimitError, MessageTooLarge, LocalProtocolError) as error:
            self.log.info("Notification to {peer} not sent: {error}", peer=peer, error=str(error))
        self._flush()

    def _uploads_of(self, incoming: IncomingRequest) -> BlockwiseServer | None:
        """The Block1 reassembler of the request's client address; ``None`` (and a 5.03
        sent) when ``max_upload_peers`` addresses are uploading already."""
        uploads = self._uploads.get(incoming.peer)
        if uploads is not None:
            return uploads
        if len(self._uploads) >= self.max_upload_peers:
            self._expire_uploads()
        if len(self._uploads) >= self.max_upload_peers:
            self.log_limit(
                "max_upload_peers", f"{self.max_upload_peers} client addresses are uploading"
            )
            token = incoming.message.token
            busy = Options([(14, _RETRY_AFTER)])  # Max-Age (RFC 7252 section 5.10.5)
            self._send(incoming, Message(Code.SERVICE_UNAVAILABLE, token, busy,
                                         b"too many uploads in progress; retry later"))
            return None
        uploads = make_blockwise_server(
            self._upload_limits, self._upload_budget, self._max_body_size
        )
        self._uploads[incoming.peer] = uploads
        return uploads

    def _expire_uploads(self) -> None:
        """Drop the uploads that got no block for their lifetime, and the addresses left
        with none; then wait for the next such deadline."""
        now = self.reactor.seconds()
        for peer, uploads in list(self._uploads.items()):
            uploads.expire(now)
            if not uploads.uploads_in_progress:
                del self._uploads[peer]
        self._watch_uploads()

    def _watch_uploads(self) -> None:
        timer = self._upload_timer
        if timer is not None and timer.active():
            timer.cancel()
        self._upload_timer = None
        deadlines = [d for d in (u.next_expiry() for u in self._uploads.values()) if d is not None]
        if deadlines:
            delay = max(0.0, min(deadlines) - self.reactor.seconds())
            self._upload_timer = self.reactor.callLater(delay, self._upload_timer_fired)

    def _upload_timer_fired(self) -> None:
        self._upload_timer = None
        self._expire_uploads()

    def _answer(
        self, response: Response, incoming: IncomingRequest, request: Message, flush: bool = True
    ) -> None:
        message = Message(response.code, request.token, response.options, response.payload)
        message = self._block2.prepare_response(
            request,
            message,
            peer_max_message_size=UDP_MAX_MESSAGE_SIZE,
            peer_bert=False,
            encoded_size=datagram_size,
        )
        self._send(incoming, message)
        if flush:  # not within datagramReceived, which flushes once for the datagram
            self._flush()

    def _render_failed(self, failure: Failure, incoming: IncomingRequest, request: Message) -> None:
        self.log.failure("Answering a CoAP-over-UDP request failed", failure)
        self._send(incoming, Message(Code.INTERNAL_SERVER_ERROR, request.token))
        self._flush()

    def _send(self, incoming: IncomingRequest, message: Message) -> None:
        try:
            self.endpoint.send_response(incoming, message, self.reactor.seconds())
        except MessageTooLarge:
            self.endpoint.send_response(
                incoming,
                Message(Code.INTERNAL_SERVER_ERROR, message.token,
                        payload=b"the response does not fit in a datagram"),
                self.reactor.seconds(),
            )
        except LocalProtocolError as error:  # answered already, or the request was dropped
            self.log.debug("Response not sent: {error}", error=str(error))

    # -- output and the timer -------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is not None:
            for datagram, peer in self.endpoint.datagrams_to_send():
                try:
                    transport.write(datagram, peer)  # type: ignore[arg-type]
                except OSError as error:  # e.g. no route: the layer retransmits or fails
                    self.log.debug("Sending to {peer} failed: {error}", peer=peer,
                                   error=str(error))
        self._schedule()

    def _schedule(self) -> None:
        """Keep one timer at or before the message layer's next deadline.

        The timer moves only when the deadline comes earlier: most datagrams push the
        deadline later (deduplication entries expire after 247 s), and moving a
        DelayedCall per datagram costs more than a timer that fires early and finds
        nothing due.
        """
        deadline = self.endpoint.next_timeout()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None and timer.active():
            if timer.getTime() <= deadline:
                return
            timer.cancel()
        delay = max(0.0, deadline - self.reactor.seconds())
        self._timer = self.reactor.callLater(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._dispatch(self.endpoint.timer_expired(self.reactor.seconds()))
        self._flush()
