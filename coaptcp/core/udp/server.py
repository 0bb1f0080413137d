"""The server side of a UDP endpoint: requests, responses, notifications (RFC 7252, 7641).

A new request is remembered for deduplication (RFC 7252 section 4.5) and handed to the
caller, unless a bound refuses it (4.29 per peer, 5.03 in all).  Its response goes
piggybacked in the ACK when the request was a CON not yet acknowledged (section 5.2.1),
otherwise separately, as CON or NON (sections 5.2.2, 5.2.3); the reply is kept for the
duplicates.  A CON the caller is slow to answer gets an Empty ACK (section 5.2.2).

Notifications (RFC 7641 section 4.5) go as NON or CON, as CON at least every 24 hours; one
CON notification per observation is in flight, a newer one replaces it at its next
retransmission (section 4.5.2), and a Reset to any recent notification, or a CON timing
out, cancels the observation (sections 3.6 and 4.5).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from coaptcp.core.codes import Code
from coaptcp.core.errors import LocalProtocolError
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.config import NOTIFICATION_CON_INTERVAL
from coaptcp.core.udp.events import LimitReached, ObservationCancelled, UdpEvent, UdpRequestReceived
from coaptcp.core.udp.framing import MessageType, empty_ack, encode_datagram
from coaptcp.core.udp.layer import LimitError, MessageLayer
from coaptcp.core.udp.state import (
    ExchangeState,
    IncomingRequest,
    Kind,
    Observation,
    Peer,
    Transmission,
)

__all__ = ["ServerSide"]

_CON, _NON, _ACK = MessageType.CON, MessageType.NON, MessageType.ACK
_PENDING, _DONE = ExchangeState.PENDING, ExchangeState.DONE


def refusal(code: Code, token: bytes, max_age: int, diagnostic: str) -> Message:
    """A response refusing a request at a bound, with Max-Age (RFC 8516, RFC 7252 5.9.3.4)."""
    return Message(code, token, Options([(14, max_age)]), diagnostic.encode())


class ServerSide:
    """Requests received, their answers, and notifications, of one endpoint.

    :param empty_ack_delay: see :class:`~coaptcp.core.udp.messaging.UdpEndpoint`.
    """

    def __init__(self, layer: MessageLayer, empty_ack_delay: float | None) -> None:
        self.layer = layer
        self.empty_ack_delay = empty_ack_delay
        #: CON requests waiting for their answer or Empty ACK, oldest first.
        self.ack_waiting: OrderedDict[IncomingRequest, None] = OrderedDict()
        #: Requests received and not answered.
        self.pending = 0
        #: Observations with notification state.
        self.observations = 0

    # -- requests ---------------------------------------------------------------------------

    def on_request(
        self,
        address: Hashable,
        mid: int,
        confirmable: bool,
        message: Message,
        now: float,
        events: list[UdpEvent],
    ) -> None:
        """A new (not duplicate) request arrived."""
        layer = self.layer
        peer = layer.peer(address, now)
        if peer is None:
            if confirmable:  # stateless: no Peer, no deduplication entry
                answer = refusal(Code.SERVICE_UNAVAILABLE, message.token, 10, "too many peers")
                layer.out.append((encode_datagram(_ACK, mid, answer), address))
            events.append(LimitReached(address, "max_peers", "request refused with 5.03"))
            return
        seen, evicted = layer.dedup.add(address, mid, confirmable, now)
        if evicted is not None:
            events.append(LimitReached(address, evicted, "an older message forgotten early"))
        exchange = IncomingRequest(address, mid, confirmable, message, now)
        exchange._seen = seen
        seen.exchange = exchange
        limits = layer.limits
        if peer.pending >= limits.max_pending_requests_per_peer:
            answer = refusal(Code.TOO_MANY_REQUESTS, message.token, 1, "too many requests")
            self.answer(peer, exchange, answer, None, now)
            events.append(LimitReached(address, "max_pending_requests_per_peer", "answered 4.29"))
        elif self.pending >= limits.max_pending_requests:
            answer = refusal(Code.SERVICE_UNAVAILABLE, message.token, 10, "server busy")
            self.answer(peer, exchange, answer, None, now)
            events.append(LimitReached(address, "max_pending_requests", "answered 5.03"))
        else:
            peer.pending += 1
            self.pending += 1
            if confirmable and self.empty_ack_delay is not None:
                self.ack_waiting[exchange] = None
            events.append(UdpRequestReceived(exchange))

    def respond(
        self, exchange: IncomingRequest, response: Message, now: float, confirmable: bool | None
    ) -> None:
        """See :meth:`UdpEndpoint.send_response`."""
        if exchange.state is _DONE:
            raise LocalProtocolError(f"{exchange!r} was answered already")
        if not response.code.is_response:
            raise LocalProtocolError(f"{response.code} is not a response code")
        if response.token != exchange.token:
            raise LocalProtocolError("a response must echo the request's token (5.3.1)")
        peer = self.layer.need_peer(exchange.peer, now)
        self.answer(peer, exchange, response, confirmable, now)
        peer.pending -= 1
        self.pending -= 1

    def acknowledge(self, exchange: IncomingRequest) -> None:
        """Send the Empty ACK of a CON request now (RFC 7252 section 5.2.2)."""
        self.ack_waiting.pop(exchange, None)
        exchange.state = ExchangeState.ACKNOWLEDGED
        ack = empty_ack(exchange.message_id)
        self._keep_reply(exchange, ack)
        self.layer.out.append((ack, exchange.peer))

    def drop(self, exchange: IncomingRequest) -> None:
        """See :meth:`UdpEndpoint.drop_request`."""
        if exchange.state is _DONE:
            return
        if exchange.state is _PENDING and exchange.confirmable:
            self.acknowledge(exchange)
        exchange.state = _DONE
        self.ack_waiting.pop(exchange, None)
        peer = self.layer.peers.get(exchange.peer)
        if peer is not None:
            peer.pending -= 1
        self.pending -= 1

    def acknowledge_due(self, now: float) -> None:
        """Empty ACKs for the CON requests unanswered for ``empty_ack_delay``."""
        delay = self.empty_ack_delay
        waiting = self.ack_waiting
        while waiting and delay is not None:
            exchange = next(iter(waiting))
            if exchange.received + delay > now:
                break
            self.acknowledge(exchange)

    def next_ack_due(self) -> float | None:
        """When the next automatic Empty ACK is due."""
        if self.ack_waiting and self.empty_ack_delay is not None:
            return next(iter(self.ack_waiting)).received + self.empty_ack_delay
        return None

    def _keep_reply(self, exchange: IncomingRequest, reply: bytes) -> None:
        seen = exchange._seen
        if seen is not None and seen.exchange is exchange:
            if self.layer.dedup.set_reply(seen, reply) is not None:
                self.layer.later.append(
                    LimitReached(exchange.peer, "max_dedup_bytes", "older messages forgotten")
                )

    def answer(
        self,
        peer: Peer,
        exchange: IncomingRequest,
        response: Message,
        confirmable: bool | None,
        now: float,
    ) -> None:
        """Send ``response``: piggybacked if we can, otherwise separately (5.2)."""
        layer = self.layer
        if exchange.confirmable and exchange.state is _PENDING:
            datagram = encode_datagram(_ACK, exchange.message_id, response)
            layer.check_size(datagram)
            self.ack_waiting.pop(exchange, None)
            exchange.state = _DONE
            self._keep_reply(exchange, datagram)
            seen = exchange._seen
            if seen is not None and seen.exchange is exchange:
                seen.exchange = None
            layer.out.append((datagram, exchange.peer))
            return
        con = exchange.confirmable if confirmable is None else confirmable
        if con and not layer.room_for_con():
            con = False
            layer.later.append(LimitReached(peer.address, "max_outstanding", "sent as NON"))
        datagram = encode_datagram(_CON if con else _NON, 0, response)
        layer.check_size(datagram)
        mid = peer.take_mid(now, layer.lifetime)
        datagram = b"%b%c%c%b" % (datagram[:2], mid >> 8, mid & 0xFF, datagram[4:])
        exchange.state = _DONE
        if con:
            layer.transmit(peer, mid, datagram, Kind.RESPONSE, exchange, now)
        else:
            layer.out.append((datagram, peer.address))

    # -- notifications ----------------------------------------------------------------------

    def notify(self, address: Hashable, message: Message, now: float, confirmable: bool) -> None:
        """See :meth:`UdpEndpoint.send_notification`."""
        if not message.code.is_response:
            raise LocalProtocolError(f"{message.code} is not a response code")
        layer = self.layer
        layer.check_size(encode_datagram(_CON, 0, message))
        peer = layer.need_peer(address, now)
        observation = peer.observations.get(message.token)
        if observation is None:
            if self.observations >= layer.limits.max_observations:
                raise LimitError("max_observations", "too many observations to notify")
            observation = Observation(address, message.token, now)
            peer.observations[message.token] = observation
            self.observations += 1
        observation.final = not (message.code.is_successful and message.options.observe is not None)
        if observation.inflight is not None:
            observation.newer = message  # replaces it at its next retransmission (4.5.2)
            return
        con = confirmable or now - observation.last_con >= NOTIFICATION_CON_INTERVAL
        self._notify_now(peer, observation, message, con, now)

    def _notify_now(
        self, peer: Peer, observation: Observation, message: Message, con: bool, now: float
    ) -> None:
        layer = self.layer
        if con and not layer.room_for_con():
            con = False
            layer.later.append(LimitReached(peer.address, "max_outstanding", "sent as NON"))
        mid = peer.take_mid(now, layer.lifetime)
        if con:
            observation.last_con = now
            datagram = encode_datagram(_CON, mid, message)
            observation.inflight = layer.transmit(
                peer, mid, datagram, Kind.NOTIFICATION, observation, now
            )
            return
        layer.out.append((encode_datagram(_NON, mid, message), peer.address))
        if observation.final:
            self.remove_observation(peer, observation)
        else:
            self._remember_mid(peer, observation, mid)

    def notification_acknowledged(self, peer: Peer, item: Transmission, now: float) -> None:
        """The in-flight CON notification was acknowledged: send the newer one, if any."""
        self.layer.finish(peer, item)
        observation = item.owner
        observation.inflight = None
        if observation.newer is not None:
            newer, observation.newer = observation.newer, None
            self._notify_now(peer, observation, newer, True, now)
        elif observation.final:
            self.remove_observation(peer, observation)

    def notification_timeout(
        self, peer: Peer, item: Transmission, now: float, events: list[UdpEvent]
    ) -> None:
        """The in-flight CON notification's timer fired (RFC 7641 sections 4.5, 4.5.2)."""
        observation = item.owner
        if (
            observation.newer is not None
            and item.retransmits < self.layer.parameters.max_retransmit
        ):
            # The retransmission carries the newer notification, under a new Message ID,
            # with the retransmission counter and timeout going on.
            newer, observation.newer = observation.newer, None
            del peer.sent[item.message_id]
            self._remember_mid(peer, observation, item.message_id)
            mid = peer.take_mid(now, self.layer.lifetime)
            item.message_id = mid
            item.datagram = encode_datagram(_CON, mid, newer)
            peer.sent[mid] = item
            observation.last_con = now
        if not self.layer.retransmit_or_give_up(peer, item, now):
            observation.inflight = None
            self.cancel_observation(peer, observation, "timeout", events)

    def _remember_mid(self, peer: Peer, observation: Observation, mid: int) -> None:
        """A Reset to a recent notification's Message ID still cancels (RFC 7641 3.6)."""
        mids = observation.mids
        mids.append(mid)
        peer.sent[mid] = observation
        if len(mids) > Observation.RECENT_MIDS:
            old = mids.popleft()
            if peer.sent.get(old) is observation:
                del peer.sent[old]

    def end_observation(self, address: Hashable, token: bytes) -> None:
        """See :meth:`UdpEndpoint.end_observation`."""
        peer = self.layer.peers.get(address)
        observation = peer.observations.get(token) if peer is not None else None
        if peer is not None and observation is not None:
            self.remove_observation(peer, observation)

    def cancel_observation(
        self, peer: Peer, observation: Observation, reason: str, events: list[UdpEvent]
    ) -> None:
        """The peer cancelled (a Reset) or vanished (a timeout): report it, unless the
        observation was ending anyway."""
        if peer.observations.get(observation.token) is observation:
            final = observation.final
            self.remove_observation(peer, observation)
            if not final:
                events.append(ObservationCancelled(peer.address, observation.token, reason))

    def remove_observation(self, peer: Peer, observation: Observation) -> None:
        """Forget an observation's notification state."""
        for mid in observation.mids:
            if peer.sent.get(mid) is observation:
                del peer.sent[mid]
        observation.mids.clear()
        if observation.inflight is not None:
            self.layer.finish(peer, observation.inflight)
            observation.inflight = None
        if peer.observations.get(observation.token) is observation:
            del peer.observations[observation.token]
            self.observations -= 1
