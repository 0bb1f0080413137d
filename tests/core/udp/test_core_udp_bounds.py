"""Deduplication lifetimes and every bound of UdpLimits (RFC 7252 sections 4.5 and 4.8.2).

Each table of the endpoint is bounded; reaching a bound gives the documented answer (4.29,
5.03 with Max-Age, an early forgetting, a NON instead of a CON, a LimitError) and a
LimitReached event, and the internal structures stay bounded under churn.
"""

from __future__ import annotations

import itertools

import pytest
from udp_helpers import ACK, CON, NON, content, datagram, endpoint, get, sent

from coaptcp.core.codes import Code
from coaptcp.core.udp.config import UdpLimits
from coaptcp.core.udp.dedup import DedupCache
from coaptcp.core.udp.events import DuplicateReceived, LimitReached, UdpRequestReceived
from coaptcp.core.udp.messaging import LimitError


def cache(**kwargs: int) -> DedupCache:
    options = {"max_entries": 100, "max_entries_per_peer": 100, "max_bytes": 10_000}
    options.update(kwargs)
    return DedupCache(con_lifetime=247.0, non_lifetime=145.0, **options)


def test_dedup_cache_lifetimes() -> None:
    seen = cache()
    seen.add("A", 1, True, 0.0)
    seen.add("A", 2, False, 0.0)
    assert seen.lookup("A", 1, 246.9) is not None and seen.lookup("A", 2, 144.9) is not None
    assert seen.lookup("A", 2, 145.0) is None  # NON_LIFETIME
    assert seen.lookup("A", 1, 247.0) is None  # EXCHANGE_LIFETIME
    assert seen.lookup("B", 1, 0.0) is None
    assert seen.next_expiry() == 145.0
    seen.expire(145.0)
    assert len(seen) == 1 and seen.next_expiry() == 247.0
    seen.expire(300.0)
    assert len(seen) == 0 and seen.next_expiry() is None and seen.entries_of("A") == 0


def test_dedup_cache_forgets_the_peers_oldest_at_the_per_peer_bound() -> None:
    seen = cache(max_entries_per_peer=3)
    seen.add("B", 1, True, 0.0)
    for mid in range(4):
        _, reason = seen.add("A", mid, True, float(mid))
        assert reason == ("max_dedup_entries_per_peer" if mid == 3 else None)
    assert seen.lookup("A", 0, 5.0) is None
    assert [seen.lookup("A", m, 5.0) is not None for m in (1, 2, 3)] == [True] * 3
    assert seen.lookup("B", 1, 5.0) is not None  # another peer is not touched
    assert seen.evicted == 1


def test_dedup_cache_forgets_the_oldest_overall_at_the_total_bound() -> None:
    seen = cache(max_entries=3)
    seen.add("A", 1, True, 0.0)
    seen.add("B", 1, False, 1.0)  # a NON, received later: expires earlier but is younger
    seen.add("C", 1, True, 2.0)
    _, reason = seen.add("D", 1, True, 3.0)
    assert reason == "max_dedup_entries"
    assert seen.lookup("A", 1, 3.0) is None
    assert all(seen.lookup(p, 1, 3.0) is not None for p in "BCD")
    _, reason = seen.add("E", 1, True, 4.0)
    assert seen.lookup("B", 1, 4.0) is None  # then the NON, the oldest received
    assert len(seen) == 3


def test_dedup_cache_bounds_the_reply_bytes() -> None:
    seen = cache(max_bytes=100)
    first, _ = seen.add("A", 1, True, 0.0)
    assert seen.set_reply(first, b"x" * 60) is None
    second, _ = seen.add("A", 2, True, 1.0)
    assert seen.set_reply(second, b"y" * 60) == "max_dedup_bytes"
    assert seen.lookup("A", 1, 1.0) is None and seen.lookup("A", 2, 1.0) is second
    assert seen.reply_bytes == 60
    assert seen.set_reply(first, b"z") is None  # an entry already forgotten is left alone
    assert seen.reply_bytes == 60


def test_dedup_cache_structures_stay_bounded_under_churn() -> None:
    seen = cache(max_entries=10_000, max_entries_per_peer=10)
    for n in range(20_000):  # one peer flooding: all but 10 forgotten early
        seen.add("A", n & 0xFFFF, True, n * 0.001)
    assert len(seen) == 10
    assert len(seen._con) <= 2 * len(seen) + 65
    assert seen.evicted == 20_000 - 10


def test_endpoint_dedup_lifetime_and_expiry() -> None:
    server = endpoint()
    wire = datagram(CON, 7, get())
    (event,) = server.datagram_received(wire, "C", 0.0)
    assert isinstance(event, UdpRequestReceived)
    server.send_response(event.request, content(b"\x01"), 0.0)
    server.datagrams_to_send()
    assert server.datagram_received(wire, "C", 246.0) == [DuplicateReceived("C", 7, True, True)]
    server.datagrams_to_send()
    # After EXCHANGE_LIFETIME the Message ID may be reused: a new request.
    (event,) = server.datagram_received(wire, "C", 247.0)
    assert isinstance(event, UdpRequestReceived)
    server.send_response(event.request, content(b"\x01"), 247.0)
    while (due := server.next_timeout()) is not None and due < 1000:
        server.timer_expired(due)
    assert server.dedup_entries == 0 and server.peers == 0
    assert server.next_timeout() is None


def test_endpoint_non_lifetime() -> None:
    server = endpoint()
    wire = datagram(NON, 7, get())
    server.datagram_received(wire, "C", 0.0)
    assert server.datagram_received(wire, "C", 144.0) == [DuplicateReceived("C", 7, False, False)]
    (event,) = server.datagram_received(wire, "C", 145.0)
    assert isinstance(event, UdpRequestReceived)


def test_housekeeping_wakes_at_most_once_a_second() -> None:
    server = endpoint()
    for n in range(10):
        (event,) = server.datagram_received(datagram(NON, n, get()), "C", n * 0.1)
        assert isinstance(event, UdpRequestReceived)
        server.send_response(event.request, content(b"\x01"), n * 0.1)
    wakeups = []
    while (due := server.next_timeout()) is not None and due < 200:
        if due >= 145:
            wakeups.append(due)
        server.timer_expired(due)
    assert wakeups[0] == 145.0 and all(b - a >= 1.0 for a, b in itertools.pairwise(wakeups))
    assert server.dedup_entries == 0


def test_pending_requests_per_peer_get_4_29() -> None:
    server = endpoint(limits=UdpLimits(max_pending_requests_per_peer=2))
    for mid in (1, 2):
        assert isinstance(
            server.datagram_received(datagram(CON, mid, get()), "C", 0)[0], UdpRequestReceived
        )
    events = server.datagram_received(datagram(CON, 3, get(b"\x03")), "C", 0.0)
    assert events == [LimitReached("C", "max_pending_requests_per_peer", "answered 4.29")]
    ((answer, _),) = sent(server)
    assert answer.mtype is ACK and answer.message_id == 3
    assert answer.message.code == Code.TOO_MANY_REQUESTS and answer.message.token == b"\x03"
    assert answer.message.options.max_age == 1
    # Its duplicate gets the same answer (it was remembered).
    server.datagram_received(datagram(CON, 3, get(b"\x03")), "C", 0.5)
    ((again, _),) = sent(server)
    assert again == answer
    # A NON request gets a NON 4.29; another peer is served.
    server.datagram_received(datagram(NON, 4, get(b"\x04")), "C", 0.0)
    ((answer, _),) = sent(server)
    assert answer.mtype is NON and answer.message.code == Code.TOO_MANY_REQUESTS
    assert isinstance(
        server.datagram_received(datagram(CON, 1, get()), "D", 0)[0], UdpRequestReceived
    )
    assert server.pending_requests == 3


def test_pending_requests_in_all_get_5_03() -> None:
    server = endpoint(limits=UdpLimits(max_pending_requests=1))
    (event,) = server.datagram_received(datagram(CON, 1, get()), "C", 0.0)
    events = server.datagram_received(datagram(CON, 1, get()), "D", 0.0)
    assert events == [LimitReached("D", "max_pending_requests", "answered 5.03")]
    ((answer, _),) = sent(server)
    assert answer.message.code == Code.SERVICE_UNAVAILABLE
    assert answer.message.options.max_age == 10
    assert isinstance(event, UdpRequestReceived)
    server.send_response(event.request, content(b"\x01"), 0.0)
    (event,) = server.datagram_received(datagram(CON, 2, get()), "D", 0.0)
    assert isinstance(event, UdpRequestReceived)


def test_max_peers_refuses_new_peers_statelessly_until_a_sweep() -> None:
    server = endpoint(limits=UdpLimits(max_peers=1))
    (event,) = server.datagram_received(datagram(CON, 1, get()), "C", 0.0)
    assert isinstance(event, UdpRequestReceived)
    events = server.datagram_received(datagram(CON, 1, get(b"\x05")), "D", 0.0)
    assert events == [LimitReached("D", "max_peers", "request refused with 5.03")]
    ((answer, _),) = sent(server)
    assert answer.message.code == Code.SERVICE_UNAVAILABLE and answer.message.token == b"\x05"
    assert server.dedup_entries == 1  # nothing remembered of D
    server.datagram_received(datagram(NON, 2, get()), "D", 0.0)
    assert server.datagrams_to_send() == []
    # C's request is answered: C becomes idle, and a sweep (at most once a second) makes room.
    server.send_response(event.request, content(b"\x01"), 0.0)
    server.datagrams_to_send()
    (event,) = server.datagram_received(datagram(CON, 3, get()), "D", 0.5)
    assert isinstance(event, LimitReached)  # the forced sweep ran at 0.0, not again yet
    (event,) = server.datagram_received(datagram(CON, 3, get()), "D", 1.0)
    assert isinstance(event, UdpRequestReceived)
    with pytest.raises(LimitError) as info:
        server.send_request(get(), "E", 1.0)
    assert info.value.limit == "max_peers"


def test_dedup_bound_per_peer_is_reported_and_only_weakens_deduplication() -> None:
    server = endpoint(limits=UdpLimits(max_dedup_entries_per_peer=2))
    for mid in (1, 2):
        (event,) = server.datagram_received(datagram(NON, mid, get()), "C", 0.0)
        assert isinstance(event, UdpRequestReceived)
    events = server.datagram_received(datagram(NON, 3, get()), "C", 0.0)
    assert events[0] == LimitReached(
        "C", "max_dedup_entries_per_peer", "an older message forgotten early"
    )
    assert isinstance(events[1], UdpRequestReceived)
    # The forgotten message, duplicated, is processed again (RFC 7252 4.5 allows it).
    events = server.datagram_received(datagram(NON, 1, get()), "C", 1.0)
    assert isinstance(events[-1], UdpRequestReceived)
    assert server.dedup_entries == 2


def test_dedup_bytes_bound_is_reported() -> None:
    server = endpoint(limits=UdpLimits(max_dedup_bytes=100))
    for mid in (1, 2):
        (event,) = server.datagram_received(datagram(CON, mid, get()), "C", 0.0)
        assert isinstance(event, UdpRequestReceived)
        server.send_response(event.request, content(b"\x01", b"x" * 60), 0.0)
    assert server.dedup_entries == 1
    events = server.datagram_received(datagram(CON, 9, get()), "C", 0.0)
    assert events[0] == LimitReached("C", "max_dedup_bytes", "older messages forgotten")


def test_separate_response_goes_as_non_at_max_outstanding() -> None:
    server = endpoint(limits=UdpLimits(max_outstanding=1), empty_ack_delay=None)
    server.send_ping("P", 0.0)
    with pytest.raises(LimitError) as info:
        server.send_ping("P", 0.0)
    assert info.value.limit == "max_outstanding"
    (event,) = server.datagram_received(datagram(NON, 1, get()), "C", 0.0)
    assert isinstance(event, UdpRequestReceived)
    server.datagrams_to_send()
    server.send_response(event.request, content(b"\x01"), 0.0, confirmable=True)
    ((answer, _),) = sent(server)
    assert answer.mtype is NON
    assert server.outstanding == 1
    assert server.datagram_received(datagram(NON, 2, get(b"\x02")), "C", 0.1)[0] == LimitReached(
        "C", "max_outstanding", "sent as NON"
    )


def test_timer_heap_stays_bounded_when_acks_come_early() -> None:
    client = endpoint()
    for n in range(5_000):
        request = client.send_request(get(b"\x01"), "S", float(n))
        client.datagram_received(datagram(ACK, request.message_id or 0, content(b"\x01")), "S", n)
    heap = client.layer.timers._heap
    assert len(client.layer.timers) == 0
    assert len(heap) <= 65
    assert client.outstanding == 0 and client.client_requests == 0


@pytest.mark.parametrize(
    "field",
    [
        "max_peers",
        "max_dedup_entries",
        "max_dedup_entries_per_peer",
        "max_dedup_bytes",
        "max_pending_requests_per_peer",
        "max_pending_requests",
        "max_outstanding",
        "max_client_requests",
        "max_queued_requests_per_peer",
        "max_observations",
        "max_message_size",
    ],
)
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        UdpLimits(**{field: 0})
    with pytest.raises(ValueError, match=field):
        UdpLimits(**{field: True})


def test_max_message_size_floor() -> None:
    with pytest.raises(ValueError, match="too small"):
        UdpLimits(max_message_size=15)
    assert UdpLimits().max_message_size == 1152
