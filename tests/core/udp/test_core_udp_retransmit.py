"""Retransmission, Message IDs and NSTART (RFC 7252 sections 4.2, 4.4, 4.7 and 4.8).

Driven by a fake clock (the ``now`` arguments) and a fixed random source.
"""

from __future__ import annotations

import random

import pytest
from udp_helpers import ACK, CON, NON, RST, FixedRandom, content, datagram, endpoint, get, sent

from coaptcp.core.udp.config import TransmissionParameters, UdpLimits
from coaptcp.core.udp.events import (
    DatagramRejected,
    PingFailed,
    RequestAcknowledged,
    RequestFailed,
    UdpResponseReceived,
)
from coaptcp.core.udp.messaging import LimitError, UdpEndpoint
from coaptcp.core.udp.state import RequestState


def test_derived_parameters_table_3() -> None:
    p = TransmissionParameters()
    assert (p.ack_timeout, p.ack_random_factor, p.max_retransmit, p.nstart) == (2.0, 1.5, 4, 1)
    assert p.max_transmit_span == 45
    assert p.max_transmit_wait == 93
    assert p.max_latency == 100
    assert p.processing_delay == 2
    assert p.max_rtt == 202
    assert p.exchange_lifetime == 247
    assert p.non_lifetime == 145


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ack_timeout": 0},
        {"ack_random_factor": 0.99},
        {"max_retransmit": -1},
        {"max_retransmit": 17},
        {"nstart": 0},
        {"max_latency": 0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TransmissionParameters(**kwargs)  # type: ignore[arg-type]


def times_of_transmission(uniform: float) -> tuple[list[float], list[object], float]:
    """Send one CON request into the void; return when it went out and what failed."""
    client = endpoint(rng=FixedRandom(uniform=uniform))
    request = client.send_request(get(), "S", 0.0)
    wire = client.datagrams_to_send()
    times = [0.0]
    events: list[object] = []
    while (due := client.next_timeout()) is not None and due < 1000:
        events += client.timer_expired(due)
        out = client.datagrams_to_send()
        if out:
            assert out == wire  # a retransmission is the same datagram
            times.append(due)
        if request.done:
            return times, events, due
    raise AssertionError("no failure")


@pytest.mark.parametrize(
    ("uniform", "expected", "failure"),
    [
        (0.0, [0, 2, 6, 14, 30], 62),  # initial timeout ACK_TIMEOUT
        (0.5, [0, 2.5, 7.5, 17.5, 37.5], 77.5),
        (0.999999, [0, 3, 9, 21, 45], 93),  # ~ ACK_TIMEOUT * ACK_RANDOM_FACTOR
    ],
)
def test_retransmission_schedule(uniform: float, expected: list[float], failure: float) -> None:
    times, events, failed_at = times_of_transmission(uniform)
    assert times == pytest.approx(expected, abs=1e-4)
    # MAX_RETRANSMIT retransmissions, then the failure one (doubled) timeout later.
    assert len(times) == 1 + 4
    assert failed_at == pytest.approx(failure, abs=1e-4)
    assert len(events) == 1 and isinstance(events[0], RequestFailed)
    assert events[0].reason == "timeout"


def test_initial_timeouts_are_random_between_the_bounds() -> None:
    client = UdpEndpoint(rng=random.Random(12345))
    firsts = set()
    for token in range(50):
        client.send_request(get(bytes([token])), ("S", token), 0.0)
    heap_times = []
    while (due := client.next_timeout()) is not None and due < 3.5:
        client.timer_expired(due)
        heap_times.append(due)
    firsts = set(heap_times)
    assert all(2.0 <= t <= 3.0 for t in firsts)
    assert len(firsts) == 50  # not an integral number of seconds, all different


def test_no_retransmission_outside_max_transmit_span() -> None:
    # Called late (the caller slept): no retransmission after MAX_TRANSMIT_SPAN; the
    # failure comes at MAX_TRANSMIT_WAIT, not earlier (section 4.2).
    client = endpoint()
    request = client.send_request(get(), "S", 0.0)
    client.datagrams_to_send()
    assert client.timer_expired(50.0) == []
    while (due := client.next_timeout()) is not None and due < 93.0:
        assert client.timer_expired(due) == []  # housekeeping wake-ups only
    assert client.datagrams_to_send() == []
    assert not request.done
    assert due == 93.0
    assert client.timer_expired(93.0) == [RequestFailed(request, "timeout")]


def test_late_timer_inside_the_span_still_retransmits() -> None:
    client = endpoint()
    client.send_request(get(), "S", 0.0)
    client.datagrams_to_send()
    client.timer_expired(10.0)  # due at 2, called at 10: retransmit now, next in 4 s
    assert len(client.datagrams_to_send()) == 1
    assert client.next_timeout() == 14.0


def test_reset_fails_a_con_or_non_request() -> None:
    client = endpoint()
    con = client.send_request(get(b"\x01"), "S", 0.0)
    non = client.send_request(get(b"\x02"), "T", 0.0, confirmable=False)
    client.datagrams_to_send()
    assert client.datagram_received(datagram(RST, con.message_id or 0), "S", 1.0) == [
        RequestFailed(con, "reset")
    ]
    assert client.datagram_received(datagram(RST, non.message_id or 0), "T", 1.0) == [
        RequestFailed(non, "reset")
    ]
    assert con.done and non.done
    assert client.outstanding == 0 and client.client_requests == 0
    # The Reset of a finished request matches nothing.
    (event,) = client.datagram_received(datagram(RST, con.message_id or 0), "S", 2.0)
    assert isinstance(event, DatagramRejected)


def test_ping_fails_without_answer() -> None:
    client = endpoint()
    mid = client.send_ping("S", 0.0)
    events = []
    for t in (2, 6, 14, 30, 62):
        events += client.timer_expired(float(t))
    assert events == [PingFailed("S", mid)]


# -- Message IDs -------------------------------------------------------------------------------


def test_message_ids_are_sequential_per_peer_from_a_random_start() -> None:
    client = endpoint(rng=FixedRandom(mids=(0xFFFE, 0x1234)))
    ids = []
    for token in range(3):
        request = client.send_request(get(bytes([token])), "S", 0.0, confirmable=False)
        ids.append(request.message_id)
        client.datagram_received(datagram(NON, 900 + token, content(bytes([token]))), "S", 0.0)
    other = client.send_request(get(b"\x09"), "T", 0.0)
    assert ids == [0xFFFE, 0xFFFF, 0x0000]  # wraps around
    assert other.message_id == 0x1234  # another peer, another random start


def test_default_random_start_differs() -> None:
    starts = set()
    for _ in range(8):
        client = UdpEndpoint()
        starts.add(client.send_request(get(), "S", 0.0).message_id)
    assert len(starts) > 1


# -- NSTART (section 4.7) ----------------------------------------------------------------------


def test_nstart_queues_requests_to_one_peer() -> None:
    client = endpoint()
    first = client.send_request(get(b"\x01"), "S", 0.0)
    second = client.send_request(get(b"\x02"), "S", 0.0)
    third = client.send_request(get(b"\x03"), "S", 0.0)
    elsewhere = client.send_request(get(b"\x04"), "T", 0.0)
    assert [m.message.token for m, _ in sent(client)] == [b"\x01", b"\x04"]
    assert second.state is RequestState.QUEUED and second.message_id is None
    # The piggybacked response frees the slot: the next one goes out.
    events = client.datagram_received(
        datagram(ACK, first.message_id or 0, content(b"\x01")), "S", 1.0
    )
    assert events == [UdpResponseReceived(first, content(b"\x01"))]
    assert [m.message.token for m, _ in sent(client)] == [b"\x02"]
    assert second.state is RequestState.SENT
    # An Empty ACK also ends the outstanding interaction.
    events = client.datagram_received(datagram(ACK, second.message_id or 0), "S", 1.5)
    assert events == [RequestAcknowledged(second)]
    assert [m.message.token for m, _ in sent(client)] == [b"\x03"]
    assert third.state is RequestState.SENT and elsewhere.state is RequestState.SENT


def test_nstart_slot_freed_by_failure() -> None:
    client = endpoint()
    first = client.send_request(get(b"\x01"), "S", 0.0)
    second = client.send_request(get(b"\x02"), "S", 0.0)
    client.datagrams_to_send()
    events = []
    for t in (2, 6, 14, 30, 62):
        events += client.timer_expired(float(t))
        # Retransmissions of the first; at its failure, the second goes out.
        assert [m.message.token for m, _ in sent(client)] == [b"\x01" if t < 62 else b"\x02"]
    assert events == [RequestFailed(first, "timeout")]
    assert second.state is RequestState.SENT
    assert client.next_timeout() == 64.0  # its own schedule from 62


def test_nstart_two() -> None:
    client = endpoint(parameters=TransmissionParameters(nstart=2))
    for token in range(3):
        client.send_request(get(bytes([token])), "S", 0.0)
    assert len(client.datagrams_to_send()) == 2


def test_non_request_holds_its_slot_until_its_response_or_hold_time() -> None:
    client = endpoint()
    non = client.send_request(get(b"\x01"), "S", 0.0, confirmable=False)
    queued = client.send_request(get(b"\x02"), "S", 0.0, confirmable=False)
    assert len(client.datagrams_to_send()) == 1
    assert client.next_timeout() == 3.0  # ACK_TIMEOUT * ACK_RANDOM_FACTOR
    client.timer_expired(3.0)
    assert queued.state is RequestState.SENT
    assert len(client.datagrams_to_send()) == 1
    # The first one still gets its response after its hold time.
    events = client.datagram_received(datagram(NON, 50, content(b"\x01")), "S", 4.0)
    assert events == [UdpResponseReceived(non, content(b"\x01"))]
    # A response inside the hold time frees the slot at once.
    third = client.send_request(get(b"\x03"), "S", 4.0, confirmable=False)
    assert third.state is RequestState.QUEUED
    client.datagram_received(datagram(NON, 51, content(b"\x02")), "S", 4.5)
    assert third.state is RequestState.SENT


def test_cancel_request() -> None:
    client = endpoint()
    first = client.send_request(get(b"\x01"), "S", 0.0)
    second = client.send_request(get(b"\x02"), "S", 0.0)
    third = client.send_request(get(b"\x03"), "S", 0.0)
    client.datagrams_to_send()
    client.cancel_request(second, 0.5)  # queued: just dropped
    assert second.done and client.client_requests == 2
    client.cancel_request(first, 1.0)  # sent: no more retransmission, the next goes
    assert [m.message.token for m, _ in sent(client)] == [b"\x03"]
    assert third.state is RequestState.SENT
    client.cancel_request(first, 1.0)  # twice is harmless
    # A late response to the cancelled one is unexpected: Reset.
    (event,) = client.datagram_received(datagram(CON, 7, content(b"\x01")), "S", 2.0)
    assert isinstance(event, DatagramRejected) and event.reset
    assert client.timer_expired(100.0) == [RequestFailed(third, "timeout")]


def test_queue_bound_per_peer() -> None:
    client = endpoint(limits=UdpLimits(max_queued_requests_per_peer=2))
    for token in range(3):  # one sent, two queued
        client.send_request(get(bytes([token])), "S", 0.0)
    with pytest.raises(LimitError) as info:
        client.send_request(get(b"\x09"), "S", 0.0)
    assert info.value.limit == "max_queued_requests_per_peer"
    client.send_request(get(b"\x09"), "T", 0.0)  # other peers are not affected


def test_request_total_bound() -> None:
    client = endpoint(limits=UdpLimits(max_client_requests=2))
    client.send_request(get(b"\x01"), "S", 0.0)
    request = client.send_request(get(b"\x02"), "T", 0.0)
    with pytest.raises(LimitError) as info:
        client.send_request(get(b"\x03"), "U", 0.0)
    assert info.value.limit == "max_client_requests"
    client.cancel_request(request, 0.0)
    client.send_request(get(b"\x03"), "U", 0.0)
