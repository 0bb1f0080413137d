"""The client side of a UDP endpoint: our requests and their responses (RFC 7252, 7641).

Requests go out as CON or NON with a fresh Message ID; at most NSTART interactions are
outstanding per peer, the rest wait in a bounded queue (RFC 7252 section 4.7).  Responses
are matched by Message ID and token when piggybacked, by token when separate (section
5.3.2); a separate response also ends the request's retransmission (section 5.2.2).  For an
observation the notifications are reordered by their sequence numbers (RFC 7641 section
3.4) and only fresh ones are reported.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from coaptcp.core.errors import LocalProtocolError
from coaptcp.core.message import Message
from coaptcp.core.udp.events import (
    DatagramRejected,
    RequestAcknowledged,
    RequestFailed,
    UdpEvent,
    UdpResponseReceived,
)
from coaptcp.core.udp.framing import MessageType, encode_datagram
from coaptcp.core.udp.layer import LimitError, MessageLayer
from coaptcp.core.udp.state import Kind, OutgoingRequest, Peer, RequestState, Transmission

__all__ = ["ClientSide"]

_CON, _NON = MessageType.CON, MessageType.NON


class ClientSide:
    """Our requests of one endpoint.

    :param non_hold: how long a NON request counts towards NSTART without a response.
    """

    def __init__(self, layer: MessageLayer, non_hold: float) -> None:
        self.layer = layer
        self.non_hold = non_hold
        #: Our requests, active or queued.
        self.count = 0

    def send(
        self, message: Message, address: Hashable, now: float, confirmable: bool
    ) -> OutgoingRequest:
        """See :meth:`UdpEndpoint.send_request`."""
        if not message.code.is_request:
            raise LocalProtocolError(f"{message.code} is not a request method")
        layer = self.layer
        layer.check_size(encode_datagram(_CON, 0, message))
        limits = layer.limits
        if self.count >= limits.max_client_requests:
            raise LimitError(
                "max_client_requests", f"more than {limits.max_client_requests} requests"
            )
        peer = layer.need_peer(address, now)
        if message.token in peer.requests:
            raise LocalProtocolError(f"token {message.token.hex() or '(empty)'} is in use")
        request = OutgoingRequest(address, message, confirmable)
        if peer.outstanding >= layer.parameters.nstart:
            if peer.queue is None:
                peer.queue = deque()
            if len(peer.queue) >= limits.max_queued_requests_per_peer:
                raise LimitError(
                    "max_queued_requests_per_peer",
                    f"more than {limits.max_queued_requests_per_peer} requests queued",
                )
            peer.queue.append(request)
        else:
            self._dispatch(peer, request, now)
        peer.requests[message.token] = request
        self.count += 1
        return request

    def _dispatch(self, peer: Peer, request: OutgoingRequest, now: float) -> None:
        layer = self.layer
        mid = peer.take_mid(now, layer.lifetime)
        request.message_id = mid
        request.state = RequestState.SENT
        request._holds_slot = True
        peer.outstanding += 1
        if request.confirmable:
            datagram = encode_datagram(_CON, mid, request.message)
            request._transmission = layer.transmit(peer, mid, datagram, Kind.REQUEST, request, now)
            return
        datagram = encode_datagram(_NON, mid, request.message)
        item = Transmission(peer.address, mid, datagram, False, Kind.REQUEST, request, now)
        peer.sent[mid] = item  # so that a Reset matches it
        layer.timers.schedule(item, now + self.non_hold)
        request._transmission = item
        layer.out.append((datagram, peer.address))

    def release_slot(self, peer: Peer, request: OutgoingRequest, now: float) -> None:
        """The request no longer counts towards NSTART; send what waited for it."""
        if not request._holds_slot:
            return
        request._holds_slot = False
        peer.outstanding -= 1
        nstart = self.layer.parameters.nstart
        queue = peer.queue
        while queue and peer.outstanding < nstart:
            self._dispatch(peer, queue.popleft(), now)

    def _complete(self, peer: Peer, request: OutgoingRequest, now: float) -> None:
        request.state = RequestState.DONE
        if peer.requests.get(request.token) is request:
            del peer.requests[request.token]
        self.count -= 1
        if request._transmission is not None:
            self.layer.finish(peer, request._transmission)
        self.release_slot(peer, request, now)

    def fail(
        self, peer: Peer, request: OutgoingRequest, reason: str, now: float, events: list[UdpEvent]
    ) -> None:
        """The request failed (timeout or Reset, RFC 7252 section 4.2)."""
        if request.state is not RequestState.DONE:
            self._complete(peer, request, now)
            events.append(RequestFailed(request, reason))

    def cancel(self, request: OutgoingRequest, now: float) -> None:
        """See :meth:`UdpEndpoint.cancel_request`."""
        if request.state is RequestState.DONE:
            return
        peer = self.layer.peers[request.peer]
        if request.state is RequestState.QUEUED and peer.queue is not None:
            peer.queue.remove(request)
        self._complete(peer, request, now)

    def expected(self, address: Hashable, token: bytes) -> tuple[Peer, OutgoingRequest] | None:
        """The request a separate response with ``token`` from ``address`` answers."""
        peer = self.layer.peers.get(address)
        if peer is None:
            return None
        request = peer.requests.get(token)
        if request is None or request.state is RequestState.QUEUED:
            return None
        return peer, request

    def on_ack(
        self, peer: Peer, item: Transmission, message: Message, now: float, events: list[UdpEvent]
    ) -> None:
        """An ACK matched our CON request: Empty, or carrying the response (5.2.1)."""
        request = item.owner
        if message.code == 0:
            self.layer.finish(peer, item)
            self.release_slot(peer, request, now)
            if request.state is RequestState.SENT:
                request.state = RequestState.ACKNOWLEDGED
            events.append(RequestAcknowledged(request))
        elif message.token != request.token:  # section 5.3.2: both must match
            events.append(DatagramRejected(peer.address, "piggybacked response token", False))
        else:
            self.deliver(peer, request, message, now, events)

    def deliver(
        self,
        peer: Peer,
        request: OutgoingRequest,
        message: Message,
        now: float,
        events: list[UdpEvent],
    ) -> None:
        """A response matched ``request``; it also ends its CON's retransmission.

        A 2.xx with Observe to a registration keeps the request observing; it is reported
        only when fresher than the freshest so far (RFC 7641 section 3.4).  Anything else
        ends the request (an observation ends with a response without Observe, 3.2).
        """
        transmission = request._transmission
        if transmission is not None and transmission.live:
            self.layer.finish(peer, transmission)
        notification = request.state is RequestState.OBSERVING
        if request.order is not None and message.code.is_successful:
            value = message.options.observe
            if value is not None:
                request.state = RequestState.OBSERVING
                self.release_slot(peer, request, now)
                if request.order.accept(value, now):
                    events.append(UdpResponseReceived(request, message, notification))
                return
        self._complete(peer, request, now)
        events.append(UdpResponseReceived(request, message, notification))
