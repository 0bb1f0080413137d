"""The CoAP message layer over UDP as a sans-I/O state machine (RFC 7252 sections 2-5, 7641).

One :class:`UdpEndpoint` per UDP socket, for the server and the client side at once.  Feed
it each datagram with :meth:`~UdpEndpoint.datagram_received` (the peer is any hashable the
caller chooses, e.g. ``(host, port)``) and act on the events it returns; send with
:meth:`~UdpEndpoint.send_request`, :meth:`~UdpEndpoint.send_response`,
:meth:`~UdpEndpoint.send_notification`; write out :meth:`~UdpEndpoint.datagrams_to_send`;
call :meth:`~UdpEndpoint.timer_expired` at :meth:`~UdpEndpoint.next_timeout`.  It never
touches a socket or a clock: every call that needs the time takes ``now`` (seconds, any
monotonic origin), and the random source is injectable.

What it does on its own: Message IDs (sequential per peer from a random start, section
4.4), deduplication (section 4.5), retransmission of CONs with randomized exponential
back-off and the failure after MAX_RETRANSMIT (section 4.2), NSTART (section 4.7), ACKs
and Resets (sections 4.2, 4.3), piggybacked and separate responses with an Empty ACK for a
slow CON request (section 5.2), matching by Message ID and token (section 5.3.2), pings,
and for Observe (RFC 7641): a CON notification at least every 24 h (section 4.5), a newer
notification replacing an unacknowledged one (section 4.5.2), cancellation by a Reset
(section 3.6) and reordering at the client (section 3.4).
"""

from __future__ import annotations

from collections.abc import Hashable

from coaptcp.core.message import Message
from coaptcp.core.udp.client import ClientSide
from coaptcp.core.udp.config import TransmissionParameters, UdpLimits
from coaptcp.core.udp.dedup import SeenMessage
from coaptcp.core.udp.events import (
    DatagramRejected,
    DuplicateReceived,
    LimitReached,
    PingFailed,
    ResponseFailed,
    UdpEvent,
    UdpPingReceived,
    UdpPongReceived,
)
from coaptcp.core.udp.framing import (
    MessageType,
    UdpFormatError,
    decode_datagram,
    empty_ack,
    reset_for,
)
from coaptcp.core.udp.layer import LimitError, MessageLayer, RandomSource
from coaptcp.core.udp.server import ServerSide
from coaptcp.core.udp.state import (
    ExchangeState,
    IncomingRequest,
    Kind,
    Observation,
    OutgoingRequest,
    Peer,
    Transmission,
)

__all__ = ["LimitError", "RandomSource", "UdpEndpoint"]

_CON, _ACK, _RST = MessageType.CON, MessageType.ACK, MessageType.RST
_PENDING = ExchangeState.PENDING
_HOUSEKEEPING_INTERVAL = 1.0


class UdpEndpoint:
    """Both ends of CoAP over UDP for one socket (RFC 7252, RFC 7641).

    :param parameters: the transmission parameters (RFC 7252 section 4.8).
    :param limits: the bounds of every table (see :class:`UdpLimits`).
    :param rng: draws the initial ACK timeouts and the Message ID starts
        (``random.Random()`` by default, seeded from the OS).
    :param empty_ack_delay: a CON request not answered within this many seconds gets an
        Empty ACK, and its response goes separately (section 5.2.2); ``None``: only when
        the caller calls :meth:`acknowledge` (or a duplicate arrives).
    :param non_hold: how long a NON request counts towards NSTART without a response
        (section 4.7 leaves it open); by default ACK_TIMEOUT * ACK_RANDOM_FACTOR, the
        longest first ACK timeout of a CON.
    :param reset_unexpected_non: answer an unexpected NON response with a Reset (which
        section 4.3 allows), so that a server stops notifying an observation we forgot
        (RFC 7641 section 3.6).

    Events of local calls (a bound that made a response go as NON, say) come with the
    next :meth:`datagram_received` or :meth:`timer_expired`.
    """

    def __init__(
        self,
        *,
        parameters: TransmissionParameters | None = None,
        limits: UdpLimits | None = None,
        rng: RandomSource | None = None,
        empty_ack_delay: float | None = 1.0,
        non_hold: float | None = None,
        reset_unexpected_non: bool = True,
    ) -> None:
        parameters = parameters or TransmissionParameters()
        self.layer = layer = MessageLayer(parameters, limits or UdpLimits(), rng)
        self.parameters = parameters
        self.limits = layer.limits
        if non_hold is None:
            non_hold = parameters.ack_timeout * parameters.ack_random_factor
        self.client = ClientSide(layer, non_hold)
        self.server = ServerSide(layer, empty_ack_delay)
        self.reset_unexpected_non = reset_unexpected_non
        self._housekeeping = float("-inf")

    # -- introspection ----------------------------------------------------------------------

    @property
    def peers(self) -> int:
        """Peers with state."""
        return len(self.layer.peers)

    @property
    def outstanding(self) -> int:
        """Our CONs waiting for an ACK."""
        return self.layer.outstanding

    @property
    def pending_requests(self) -> int:
        """Requests received and not answered yet."""
        return self.server.pending

    @property
    def client_requests(self) -> int:
        """Our requests, active or queued."""
        return self.client.count

    @property
    def observations(self) -> int:
        """Observations we notify (server side)."""
        return self.server.observations

    @property
    def dedup_entries(self) -> int:
        """Messages remembered for deduplication."""
        return len(self.layer.dedup)

    # -- output and time --------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Hashable]]:
        """Take the datagrams queued for sending, as ``(bytes, peer)`` pairs, in order."""
        layer = self.layer
        out, layer.out = layer.out, []
        return out

    def next_timeout(self) -> float | None:
        """The time by which :meth:`timer_expired` must be called (``None``: no timer).

        Retransmissions and Empty ACKs are exact; deduplication expiry runs at most once
        a second and the sweep of idle peers every 30 s.
        """
        layer = self.layer
        # Called after every datagram: plain comparisons, no list built.
        earliest = layer.next_sweep if layer.peers else None
        expiry = layer.dedup.next_expiry()
        if expiry is not None:
            housekeeping = self._housekeeping + _HOUSEKEEPING_INTERVAL
            if housekeeping > expiry:
                expiry = housekeeping
            if earliest is None or expiry < earliest:
                earliest = expiry
        for due in (layer.timers.next_due(), self.server.next_ack_due()):
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def timer_expired(self, now: float) -> list[UdpEvent]:
        """Run the timers due at ``now``: retransmissions, failures, Empty ACKs, expiry."""
        layer = self.layer
        events, layer.later = layer.later, []
        for item in layer.timers.pop_due(now):
            peer = layer.peers[item.peer]
            if not item.confirmable:
                self.client.release_slot(peer, item.owner, now)  # the NON's NSTART hold
            elif item.kind is Kind.NOTIFICATION:
                self.server.notification_timeout(peer, item, now, events)
            elif not layer.retransmit_or_give_up(peer, item, now):
                self._failed(peer, item, now, events)
        self.server.acknowledge_due(now)
        expiry = layer.dedup.next_expiry()
        if expiry is not None and expiry <= now:
            layer.dedup.expire(now)
            self._housekeeping = now
        if layer.peers and now >= layer.next_sweep:
            layer.sweep(now)
        return events

    def _failed(self, peer: Peer, item: Transmission, now: float, events: list[UdpEvent]) -> None:
        """A CON got no ACK after MAX_RETRANSMIT retransmissions (section 4.2)."""
        if item.kind is Kind.REQUEST:
            self.client.fail(peer, item.owner, "timeout", now, events)
        elif item.kind is Kind.RESPONSE:
            events.append(ResponseFailed(item.owner, "timeout"))
        else:
            events.append(PingFailed(peer.address, item.message_id))

    # -- input ------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, peer: Hashable, now: float) -> list[UdpEvent]:
        """Process one datagram from ``peer``; returns the resulting events."""
        layer = self.layer
        events, layer.later = layer.later, []
        try:
            received = decode_datagram(data)
        except UdpFormatError as error:
            reset = error.answer_with_reset
            if reset:
                assert error.message_id is not None
                layer.out.append((reset_for(error.message_id), peer))
            events.append(DatagramRejected(peer, error.diagnostic, reset))
            return events
        mtype = received.mtype
        message = received.message
        mid = received.message_id
        if mtype is _ACK:
            self._on_ack(peer, mid, message, now, events)
            return events
        if mtype is _RST:
            self._on_reset(peer, mid, now, events)
            return events
        code = message.code
        if code == 0:  # a ping, an Empty CON (an Empty NON is rejected by the decoder)
            layer.out.append((reset_for(mid), peer))
            events.append(UdpPingReceived(peer, mid))
            return events
        confirmable = mtype is _CON
        seen = layer.dedup.lookup(peer, mid, now)
        if seen is not None:
            self._on_duplicate(peer, mid, confirmable, seen, events)
        elif code < 0x20:
            self.server.on_request(peer, mid, confirmable, message, now, events)
        else:
            self._on_response(peer, mid, confirmable, message, now, events)
        return events

    def _on_duplicate(
        self,
        peer: Hashable,
        mid: int,
        confirmable: bool,
        seen: SeenMessage,
        events: list[UdpEvent],
    ) -> None:
        """The same ACK (or piggybacked response) again, no second processing (4.5)."""
        if confirmable:
            exchange = seen.exchange
            if seen.reply is None and exchange is not None and exchange.state is _PENDING:
                # The client retransmits: we are slow.  Acknowledge now (section 5.2.2).
                self.server.acknowledge(exchange)
            else:
                self.layer.out.append((seen.reply or empty_ack(mid), peer))
        events.append(DuplicateReceived(peer, mid, confirmable, confirmable))

    def _on_response(
        self,
        address: Hashable,
        mid: int,
        confirmable: bool,
        message: Message,
        now: float,
        events: list[UdpEvent],
    ) -> None:
        """A separate response (CON or NON), matched by token (section 5.3.2)."""
        layer = self.layer
        found = self.client.expected(address, message.token)
        if found is None:
            # Unexpected: a CON is rejected with a Reset (section 4.2), a NON may be
            # (section 4.3).  Stateless: nothing is remembered.
            reset = confirmable or self.reset_unexpected_non
            if reset:
                layer.out.append((reset_for(mid), address))
            events.append(DatagramRejected(address, "unexpected response", reset))
            return
        seen, evicted = layer.dedup.add(address, mid, confirmable, now)
        if confirmable:
            ack = empty_ack(mid)  # the ACK of a separate response is Empty (section 5.2.2)
            layer.out.append((ack, address))
            evicted = layer.dedup.set_reply(seen, ack) or evicted
        if evicted is not None:
            events.append(LimitReached(address, evicted, "an older message forgotten early"))
        peer, request = found
        self.client.deliver(peer, request, message, now, events)

    def _on_ack(
        self, address: Hashable, mid: int, message: Message, now: float, events: list[UdpEvent]
    ) -> None:
        peer = self.layer.peers.get(address)
        item = peer.sent.get(mid) if peer is not None else None
        if peer is None or not isinstance(item, Transmission) or not item.confirmable:
            # Unmatched (silently ignored, section 4.2), or the ACK of an older
            # notification replaced since (RFC 7641 section 4.5.2).
            if not isinstance(item, Observation):
                events.append(DatagramRejected(address, "unmatched Acknowledgement", False))
            return
        kind = item.kind
        if kind is Kind.REQUEST:
            self.client.on_ack(peer, item, message, now, events)
        elif kind is Kind.NOTIFICATION:  # any response in it is ignored (5.2.2)
            self.server.notification_acknowledged(peer, item, now)
        else:
            self.layer.finish(peer, item)
            if kind is Kind.PING:
                events.append(UdpPongReceived(address, mid))

    def _on_reset(self, address: Hashable, mid: int, now: float, events: list[UdpEvent]) -> None:
        peer = self.layer.peers.get(address)
        item = peer.sent.get(mid) if peer is not None else None
        if peer is None or item is None:
            events.append(DatagramRejected(address, "unmatched Reset", False))
            return
        if isinstance(item, Observation):
            self.server.cancel_observation(peer, item, "reset", events)
            return
        kind = item.kind
        if kind is Kind.NOTIFICATION:
            self.server.cancel_observation(peer, item.owner, "reset", events)
            return
        self.layer.finish(peer, item)
        if kind is Kind.REQUEST:
            self.client.fail(peer, item.owner, "reset", now, events)
        elif kind is Kind.RESPONSE:
            events.append(ResponseFailed(item.owner, "reset"))
        else:
            events.append(UdpPongReceived(address, mid))

    # -- the client side --------------------------------------------------------------------

    def send_request(
        self, message: Message, peer: Hashable, now: float, *, confirmable: bool = True
    ) -> OutgoingRequest:
        """Send a request to ``peer``, or queue it behind NSTART (section 4.7).

        The caller chooses the token, unique among our requests to that peer (section
        5.3.1 asks for a random one).  The answer comes as :class:`UdpResponseReceived`
        (after :class:`RequestAcknowledged` for a separate response) or
        :class:`RequestFailed`.  Raises :class:`LocalProtocolError` for a code that is not a
        method or a token in use, :class:`LimitError` at a bound and
        :class:`MessageTooLarge` above ``max_message_size``.
        """
        return self.client.send(message, peer, now, confirmable)

    def cancel_request(self, request: OutgoingRequest, now: float) -> None:
        """Forget a request: no retransmission, no event; a later response gets a Reset
        (for an observation this cancels it at the server, RFC 7641 section 3.6)."""
        self.client.cancel(request, now)

    def send_ping(self, peer: Hashable, now: float) -> int:
        """Send a CoAP ping, an Empty CON (section 4.3); returns its Message ID.

        The answer is :class:`UdpPongReceived`, or :class:`PingFailed` once
        MAX_RETRANSMIT retransmissions got nothing.  Raises :class:`LimitError`
        (``max_outstanding``, ``max_peers``).
        """
        layer = self.layer
        if not layer.room_for_con():
            raise LimitError("max_outstanding", f"more than {layer.outstanding} CONs in flight")
        state = layer.need_peer(peer, now)
        mid = state.take_mid(now, layer.lifetime)
        datagram = bytes((0x40, 0, mid >> 8, mid & 0xFF))
        layer.transmit(state, mid, datagram, Kind.PING, None, now)
        return mid

    # -- the server side --------------------------------------------------------------------

    def send_response(
        self,
        request: IncomingRequest,
        response: Message,
        now: float,
        *,
        confirmable: bool | None = None,
    ) -> None:
        """Answer ``request`` (section 5.2).

        Piggybacked in the ACK when the request was a CON not yet acknowledged (5.2.1);
        otherwise separate (5.2.2, 5.2.3), as CON or NON by ``confirmable`` (by default the
        request's type; NON when ``max_outstanding`` CONs are in flight).  A separate CON
        that fails is reported as :class:`ResponseFailed`.  Raises
        :class:`LocalProtocolError` when it was answered already, for a code that is not a
        response or another token, and :class:`MessageTooLarge` above ``max_message_size``.
        """
        self.server.respond(request, response, now, confirmable)

    def acknowledge(self, request: IncomingRequest, now: float) -> None:
        """Say the answer will be slow: a CON gets its Empty ACK now (section 5.2.2)."""
        if request.state is ExchangeState.PENDING and request.confirmable:
            self.server.acknowledge(request)

    def drop_request(self, request: IncomingRequest, now: float) -> None:
        """No response will be sent (RFC 7967 No-Response, a shutdown): the request stops
        counting as pending; a CON still gets its Empty ACK."""
        self.server.drop(request)

    def send_notification(
        self, peer: Hashable, message: Message, now: float, *, confirmable: bool = False
    ) -> None:
        """Send a notification of the observation ``(peer, message.token)`` (RFC 7641 4.2).

        As NON unless ``confirmable``, but as CON when the last CON of this observation
        is 24 hours old (section 4.5).  While a CON notification is unacknowledged a newer
        one replaces it at its next retransmission, under a new Message ID, with the
        retransmission counter and timeout going on (section 4.5.2); if the ACK comes
        first, the newer one goes at once, as CON.  A notification that is not a 2.xx with
        Observe ends the observation once delivered.  A Reset to a recent notification, or
        a CON notification timing out, ends it and is reported as
        :class:`ObservationCancelled`.  Raises :class:`LimitError` (``max_observations``,
        ``max_peers``) and :class:`MessageTooLarge`.
        """
        self.server.notify(peer, message, now, confirmable)

    def end_observation(self, peer: Hashable, token: bytes) -> None:
        """Forget the notification state of an observation the caller ended (a GET with
        Observe 1, RFC 7641 section 3.6): its notification is no longer retransmitted."""
        self.server.end_observation(peer, token)
