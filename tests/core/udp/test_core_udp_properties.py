"""Properties of the UDP endpoint (coaptcp.core.udp.messaging) under hypothesis.

- Random bytes, to an endpoint with state of every kind, only ever give an ignored datagram,
  a Reset (echoing the datagram's Message ID) or a parsed message; never an exception,
  never any other output.
- Over a network that loses, duplicates and reorders datagrams, every CON request ends
  at most once (a response or a failure), the server processes each message at most once,
  and once everything is answered and time has passed, every table is empty again.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from udp_helpers import FixedRandom, content, get

from coaptcp.core.udp.events import (
    DatagramRejected,
    DuplicateReceived,
    LimitReached,
    ObservationCancelled,
    RequestAcknowledged,
    RequestFailed,
    ResponseFailed,
    UdpEvent,
    UdpPingReceived,
    UdpPongReceived,
    UdpRequestReceived,
    UdpResponseReceived,
)
from coaptcp.core.udp.framing import MessageType, decode_datagram
from coaptcp.core.udp.messaging import UdpEndpoint
from coaptcp.core.udp.state import IncomingRequest, OutgoingRequest, RequestState

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Valid-looking headers to start random datagrams from, so that the fuzzing reaches
#: past the version check: CON, NON, ACK and RST with requests, responses and Empty codes.
PREFIXES = [
    bytes((t << 4 | 0x40 | tkl, code)) for t in range(4) for tkl in (0, 1) for code in (0, 1, 0x45)
]


def busy_endpoint() -> UdpEndpoint:
    """An endpoint with a request out, an observation out and in, a ping and a request in."""
    ep = UdpEndpoint(rng=FixedRandom(mids=(0x1234,)))
    ep.send_request(get(b"\x01"), "P", 0.0)
    ep.send_request(get(b"\x02", observe=0), "P", 0.0)
    ep.send_notification("P", content(b"\x03", b"x", 5), 0.0, confirmable=True)
    ep.send_ping("P", 0.0)
    ep.datagram_received(bytes((0x40, 1, 0x12, 0x34)), "P", 0.0)
    ep.datagrams_to_send()
    return ep


@SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from([b"", *PREFIXES]), st.binary(max_size=40)),
        min_size=1,
        max_size=10,
    )
)
def test_random_bytes_give_ignore_reset_or_message(datagrams: list[tuple[bytes, bytes]]) -> None:
    ep = busy_endpoint()
    for prefix, rest in datagrams:
        data = prefix + rest
        events = ep.datagram_received(data, "P", 1.0)
        out = ep.datagrams_to_send()
        for event in events:
            assert isinstance(
                event,
                (
                    DatagramRejected,
                    DuplicateReceived,
                    UdpRequestReceived,
                    UdpResponseReceived,
                    RequestAcknowledged,
                    RequestFailed,
                    ResponseFailed,
                    ObservationCancelled,
                    UdpPingReceived,
                    UdpPongReceived,
                    LimitReached,
                ),
            )
        # Output caused by a random datagram: at most one answer to it, a Reset or an ACK
        # echoing its Message ID, plus a queued request once NSTART frees the slot.
        answers = [decode_datagram(d) for d, peer in out if peer == "P"]
        echo = [m for m in answers if m.mtype in (MessageType.RST, MessageType.ACK)]
        assert len(echo) <= 1
        for message in echo:
            assert message.message_id == data[2] << 8 | data[3]
            assert message.mtype is MessageType.ACK or message.message.code == 0
        assert len(answers) - len(echo) <= 1
    ep.timer_expired(10_000.0)


# -- a lossy network ---------------------------------------------------------------------------


class Lossy:
    """A client "C" and a server "S" over a network driven by hypothesis."""

    def __init__(self) -> None:
        self.client = UdpEndpoint(rng=FixedRandom(uniform=0.3, mids=(100,)))
        self.server = UdpEndpoint(rng=FixedRandom(uniform=0.7, mids=(60_000,)), empty_ack_delay=1.0)
        self.now = 0.0
        self.wire: list[tuple[str, bytes]] = []  # (destination, datagram)
        self.pending: list[IncomingRequest] = []
        self.processed: list[tuple[object, int]] = []
        self.outcomes: dict[int, list[str]] = {}
        self.requests: list[OutgoingRequest] = []

    def collect(self) -> None:
        self.wire += [("S", d) for d, _ in self.client.datagrams_to_send()]
        self.wire += [("C", d) for d, _ in self.server.datagrams_to_send()]

    def on_client(self, events: list[UdpEvent]) -> None:
        for event in events:
            if isinstance(event, UdpResponseReceived):
                assert event.message.token == event.request.token
                self.outcomes.setdefault(id(event.request), []).append("response")
            elif isinstance(event, RequestFailed):
                self.outcomes.setdefault(id(event.request), []).append(event.reason)

    def on_server(self, events: list[UdpEvent]) -> None:
        for event in events:
            if isinstance(event, UdpRequestReceived):
                key = (event.request.peer, event.request.message_id)
                assert key not in self.processed, "processed twice"
                self.processed.append(key)
                self.pending.append(event.request)

    def deliver(self, index: int, duplicate: bool) -> None:
        destination, data = self.wire[index] if duplicate else self.wire.pop(index)
        if destination == "S":
            self.on_server(self.server.datagram_received(data, "C", self.now))
        else:
            self.on_client(self.client.datagram_received(data, "S", self.now))

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            times = [
                t for t in (self.client.next_timeout(), self.server.next_timeout()) if t is not None
            ]
            if not times or min(times) > target:
                break
            self.now = max(self.now, min(times))
            self.on_client(self.client.timer_expired(self.now))
            self.on_server(self.server.timer_expired(self.now))
            self.collect()
        self.now = target


@SETTINGS
@given(st.data())
def test_lossy_network_keeps_the_invariants(data: st.DataObject) -> None:
    net = Lossy()
    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        action = data.draw(st.sampled_from(["send", "deliver", "drop", "dup", "answer", "wait"]))
        if action == "send" and len(net.requests) < 12:
            token = bytes([len(net.requests)])
            net.requests.append(net.client.send_request(get(token), "S", net.now))
        elif action in ("deliver", "drop", "dup") and net.wire:
            index = data.draw(st.integers(0, len(net.wire) - 1))
            if action == "drop":
                net.wire.pop(index)
            else:
                net.deliver(index, duplicate=action == "dup")
        elif action == "answer" and net.pending:
            request = net.pending.pop(data.draw(st.integers(0, len(net.pending) - 1)))
            confirmable = data.draw(st.sampled_from([None, True, False]))
            net.server.send_response(
                request, content(request.token), net.now, confirmable=confirmable
            )
        elif action == "wait":
            net.advance(data.draw(st.sampled_from([0.5, 2.0, 5.0, 30.0])))
        net.collect()
        for outcomes in net.outcomes.values():
            assert len(outcomes) == 1, outcomes
    # Then a perfect network: everything answered, everything delivered, time passes.
    for _ in range(200):
        for request in net.pending:
            net.server.send_response(request, content(request.token), net.now)
        net.pending = []
        net.collect()
        while net.wire:
            net.deliver(0, duplicate=False)
            net.collect()
        if not net.pending:
            break
    net.advance(2_000.0)
    for request in net.requests:
        outcomes = net.outcomes.get(id(request), [])
        assert len(outcomes) <= 1
        if not outcomes:
            # Only a request acknowledged whose NON separate response was lost is left.
            assert request.state is RequestState.ACKNOWLEDGED
            net.client.cancel_request(request, net.now)
    net.advance(2_000.0)
    for ep in (net.client, net.server):
        assert ep.outstanding == 0
        assert ep.pending_requests == 0
        assert ep.client_requests == 0
        assert ep.dedup_entries == 0
        assert ep.peers == 0
        assert ep.next_timeout() is None
