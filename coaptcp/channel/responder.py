"""How a :class:`~coaptcp.channel.Channel` serves the requests it receives.

Each request is reassembled from its Block1 blocks if it has any (RFC 7959 section 2.5,
through :class:`~coaptcp.core.blockwise.BlockwiseServer`), handed to the
:class:`~coaptcp.server.resource.Site`, and answered, cut into a Block2 block if the
answer is too large for the peer (RFC 7959 section 2.4; BERT, RFC 8323 section 6).
Requests still rendering are counted (4.29 beyond ``limits.max_inbound_requests``,
RFC 8516) and numbered, so that a Custody Ping is answered once every request received
before it is (RFC 8323 section 5.4.1).
"""

from __future__ import annotations

from bisect import bisect_left as _bisect_left
from typing import TYPE_CHECKING

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from coaptcp.channel.base import ChannelBase
from coaptcp.core.codes import Code
from coaptcp.core.connection import State
from coaptcp.core.errors import MessageTooLarge
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.counts import FIRST_LATENCY_BOUND as _FIRST_LATENCY_BOUND
from coaptcp.server.counts import LATENCY_BUCKETS as _LATENCY_BUCKETS
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import bad_option_answer

if TYPE_CHECKING:
    from coaptcp.core.events import PingReceived

__all__ = ["EARLY_WRITE", "NO_SERVER_RESPONSE", "Responder"]

_CLOSED = State.CLOSED
_new_object = object.__new__

#: An answer larger than this is written at once, not with the rest of its read's
#: answers, so that a transport whose buffer it fills stops the processing of the next
#: requests at once (Twisted pauses its producer from within ``write``).
EARLY_WRITE = 8192
_BLOCK2 = int(OptionNumber.BLOCK2)  # Block2 (23), Block1 (27) and Size1 (60) come last
_SERVICE_UNAVAILABLE = Code.SERVICE_UNAVAILABLE
_TOO_LARGE = Code.REQUEST_ENTITY_TOO_LARGE
#: The limit each bound of a Block1 refusal counts as (``coap_limit_rejections_total``);
#: the server's budget (``max_upload_bytes``) counts its refusals itself.
_UPLOAD_LIMITS = {
    "connection": "max_upload_bytes_per_connection",
    "uploads": "max_uploads_per_connection",
}
#: The shortest delay of a re-armed timer (a deadline rounded just short must not spin).
_MIN_TIMER_DELAY = 0.001

#: The answer of a side without a resource tree (RFC 8323 section 3.3).
NO_SERVER_RESPONSE = Response(Code.NOT_IMPLEMENTED, b"no resources are served on this side")


class Responder(ChannelBase):
    """The requests received: Block1 reassembly, the Site, Block2 (RFC 7959 section 2),
    Custody (RFC 8323 section 5.4.1)."""

    __slots__ = ()

    def _on_request(self, message: Message) -> None:
        if self.connection.state is _CLOSED:
            return  # we aborted while dispatching an earlier event of the same input
        if self.site is None:
            self._respond(message, NO_SERVER_RESPONSE)
            return
        items = message.options.items
        if items and items[-1][0] >= _BLOCK2:  # Block1, Size1 may be there
            refused = bad_option_answer(message)
            if refused is not None:  # before a block of it is held (RFC 7252 5.4.1)
                self._send_response_message(message, refused)
                return
            blockwise = self.blockwise
            answer, complete = blockwise.receive_request(message, self._reactor.seconds())
            if self._upload_call is None and blockwise.uploads_in_progress:
                self._watch_uploads()
            if answer is not None:
                if answer.code == _SERVICE_UNAVAILABLE:
                    self._log_upload_refusal()
                elif answer.code == _TOO_LARGE and self.counts is not None:
                    self.counts.limit_reached("max_body_size")
                self._send_response_message(message, answer)
                return
            assert complete is not None
        else:
            complete = message
        try:
            request = Request.received(
                complete, self.peer, self.default_host, self.secure, self.tls, self
            )
        except UnicodeDecodeError as error:
            # Uri-Host, Uri-Path and Uri-Query are strings (RFC 7252 section 3.2); a
            # value that is not UTF-8 is a non-conforming critical option (4.02).
            diagnostic = f"a Uri-Host, Uri-Path or Uri-Query value is not UTF-8: {error}"
            self._respond(message, Response(Code.BAD_OPTION, diagnostic.encode()))
            return
        if len(self._unanswered) >= self.limits.max_inbound_requests:
            self._log_limit_once(
                "max_inbound_requests",
                "{peer} has {count} requests in progress; answering 4.29 to more",
                count=len(self._unanswered),
            )
            retry = Options([(OptionNumber.MAX_AGE, self.limits.retry_after)])
            self._respond(
                message,
                Response(Code.TOO_MANY_REQUESTS, b"too many requests in progress", options=retry),
            )
            return
        self._inbound_received += 1
        meter = self._meter
        if meter is None:
            result = self.site.handle(request)
        else:
            # --metrics: the answer is counted here, where request and answer are at
            # hand (coaptcp.metrics.metering.ChannelMeter; an entry's layout is
            # coaptcp.server.counts.REQUEST_ENTRY_SIZE's).
            clock = meter.clock
            started = clock()
            result = meter.handle(request)
            if isinstance(result, Response):
                duration = clock() - started
                try:
                    entry = meter.by_method[request.method][result.code]
                except KeyError:  # the first answer of its kind on this transport
                    meter.metrics.record(request, result, duration)
                else:
                    payload = request.payload
                    if payload:
                        entry[0] += len(payload)
                    entry[1] += len(result.payload)
                    entry[2] += duration
                    if duration <= _FIRST_LATENCY_BOUND:
                        entry[3] += 1
                    else:
                        entry[3 + _bisect_left(_LATENCY_BUCKETS, duration)] += 1
                self._respond(complete, result)
                return
            result.addCallback(meter.reported, request, started)
        if isinstance(result, Response):
            self._respond(complete, result)
            return
        number = self._inbound_received
        self._unanswered[number] = complete
        result.addBoth(self._deferred_response, complete, number)

    # -- partial Block1 uploads: expiry on the clock, refusals logged once per episode -----

    def _watch_uploads(self) -> None:
        """Arm this connection's one upload timer for the first upload to expire."""
        deadline = self.blockwise.next_expiry()
        if deadline is not None and not self._lost and not self._closing:
            delay = max(deadline - self._reactor.seconds(), _MIN_TIMER_DELAY)
            self._upload_call = self._reactor.callLater(delay, self._uploads_timed_out)

    def _uploads_timed_out(self) -> None:
        # Whatever else the peer sent meanwhile (Pings, other requests), an upload that got
        # no block for the upload timeout is dropped; a later block gets 4.08 (RFC 7959
        # section 2.9.2).
        self._upload_call = None
        dropped = self.blockwise.expire(self._reactor.seconds())
        if dropped:
            self.log.debug(
                "Dropped {count} partial uploads from {peer}: no block for {timeout:g} s",
                count=dropped,
                peer=self.peer,
                timeout=self.blockwise.upload_lifetime,
            )
        self._watch_uploads()

    def _log_upload_refusal(self) -> None:
        refusal = self.blockwise.last_refusal
        counts = self.counts
        if counts is not None and refusal is not None and refusal.bound in _UPLOAD_LIMITS:
            counts.limit_reached(_UPLOAD_LIMITS[refusal.bound])
        if refusal is None or not refusal.first:
            return
        if refusal.bound == "server":
            self.log.warn(
                "Answering 5.03 to Block1 uploads: the partial uploads of all connections "
                "hold {held} bytes, the server's budget is {limit} bytes (logged again once "
                "they fall to half of it)",
                held=refusal.held,
                limit=refusal.limit,
            )
        elif refusal.bound == "connection":
            self.log.warn(
                "Answering 5.03 to Block1 uploads from {peer}: its partial uploads hold "
                "{held} bytes, a connection's budget is {limit} bytes",
                peer=self.peer,
                held=refusal.held,
                limit=refusal.limit,
            )
        else:
            self.log.warn(
                "Answering 5.03 to Block1 uploads from {peer}: {held} uploads in progress "
                "already, the most one connection may have",
                peer=self.peer,
                held=refusal.held,
            )

    def _deferred_response(self, result: Response | Failure, request: Message, number: int) -> None:
        if self._unanswered.pop(number, None) is None:
            return  # answered 5.03 when the Release's time ran out
        result = self._response_or_error(result)
        if not self._lost and self.connection.state is not State.CLOSED:
            self._respond(request, result)
            self._release_custody()
            self._flush()
        self._maybe_finish_release()

    def _response_or_error(self, result: Response | Failure) -> Response:
        if isinstance(result, Failure):
            if not result.check(CancelledError):
                self.log.failure("Unexpected failure answering a request", result)
            return Response(Code.INTERNAL_SERVER_ERROR, b"internal server error")
        return result

    def _release_custody(self) -> None:
        waits = self._custody_waits
        if not waits:
            return
        # The oldest request that may be unanswered: numbers only grow, so this pointer
        # passes each request once, whatever the number of answers and Pings.
        unanswered = self._unanswered
        oldest = self._custody_oldest
        newest = self._inbound_received
        while oldest <= newest and oldest not in unanswered:
            oldest += 1
        self._custody_oldest = oldest
        send_pong = self.connection.send_pong
        while waits and waits[0][0] < oldest:
            send_pong(waits.popleft()[1], custody=True)

    def _respond(self, request: Message, response: Response) -> None:
        """Send ``response`` to ``request``, cut into a Block2 block if it must be."""
        message = _new_object(Message)  # Message(...) without the call of its __init__
        message.code = response.code
        message.token = request.token
        message.options = response.options
        message.payload = response.payload
        self._send_response_message(request, message)

    def _send_response_message(self, request: Message, message: Message) -> None:
        connection = self.connection
        if connection.state is _CLOSED:
            return  # aborted (by us or a resource) before this answer was ready
        items = request.options.items
        size = len(message.payload)
        if size < connection.peer.max_message_size and not (
            items
            and items[-1][0] >= _BLOCK2  # Block2 (23) and Block1 (27) come late: cheap test
            and (OptionNumber.BLOCK1 in request.options or OptionNumber.BLOCK2 in request.options)
        ):
            # The common case: no block-wise exchange asked for; send it whole if it fits
            # (a payload above the peer's limit cannot: do not encode it to find out).
            try:
                connection.send(message)
                if size > EARLY_WRITE:
                    self._flush()  # a large answer: let the transport say if it is full
                return
            except MessageTooLarge:
                pass
        message = self.blockwise.prepare_response(
            request,
            message,
            peer_max_message_size=connection.peer.max_message_size,
            peer_bert=connection.peer.bert,
            encoded_size=connection.encoded_size,
        )
        try:
            connection.send(message)
            if len(message.payload) > EARLY_WRITE:
                self._flush()
        except MessageTooLarge as error:
            self.log.warn("Response to {peer} too large: {error}", peer=self.peer, error=str(error))
            diagnostic = f"response of {error.size} bytes exceeds your Max-Message-Size"
            try:
                connection.send(
                    Message(Code.INTERNAL_SERVER_ERROR, message.token, payload=diagnostic.encode())
                )
            except MessageTooLarge:
                self.abort("Max-Message-Size too small for any response", "response_too_large")

    # -- Custody (RFC 8323 section 5.4.1) -------------------------------------------------

    def _on_custody_ping(self, event: PingReceived) -> None:
        if self.connection.state is State.CLOSED:
            return  # we aborted while dispatching an earlier event of the same input
        # Custody: answer once every request received before the Ping is answered; the
        # requests that arrive after it do not hold it back.
        if not self._unanswered:
            self.connection.send_pong(event.token, custody=True)
        elif len(self._custody_waits) >= self.limits.max_custody_pings:
            # Bounded: beyond the limit a Pong goes at once, without Custody (it then
            # promises nothing about the requests before it; RFC 8323 section 5.4.1).
            self._log_limit_once(
                "max_custody_pings",
                "{peer} has {count} Custody Pings waiting; answering more without Custody",
                count=len(self._custody_waits),
            )
            self.connection.send_pong(event.token)
        else:
            self._custody_waits.append((self._inbound_received, event.token))

