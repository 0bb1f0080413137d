"""Observe over UDP (RFC 7641): reordering at the client, notifications at the server.

Client: the freshness rule of section 3.4 (24-bit serial arithmetic, the 2**23 window,
the 128 s rule), only fresh notifications reported, the end of an observation.  Server:
NON or CON notifications with a CON at least every 24 hours (section 4.5), a newer
notification replacing an unacknowledged one (section 4.5.2), cancellation by a Reset
(section 3.6) or a timeout (section 4.5).
"""

from __future__ import annotations

import pytest
from udp_helpers import (
    ACK,
    CON,
    NON,
    RST,
    Network,
    content,
    datagram,
    endpoint,
    get,
    responses,
    sent,
)

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.udp.config import UdpLimits
from coaptcp.core.udp.events import (
    DatagramRejected,
    DuplicateReceived,
    LimitReached,
    ObservationCancelled,
    UdpRequestReceived,
    UdpResponseReceived,
)
from coaptcp.core.udp.messaging import LimitError, UdpEndpoint
from coaptcp.core.udp.observeorder import (
    OBSERVE_MODULUS,
    OBSERVE_WINDOW,
    NotificationOrder,
    observe_newer,
)
from coaptcp.core.udp.state import OutgoingRequest, RequestState

TOP = OBSERVE_MODULUS - 1


@pytest.mark.parametrize(
    ("v1", "v2", "newer"),
    [
        (1, 2, True),
        (2, 1, False),
        (5, 5, False),  # a duplicate is not newer
        (0, OBSERVE_WINDOW - 1, True),
        (0, OBSERVE_WINDOW, False),  # V2 - V1 must be below 2**23
        (OBSERVE_WINDOW, 0, False),  # V1 - V2 must be above 2**23
        (OBSERVE_WINDOW + 1, 0, True),
        (TOP, 0, True),  # wraparound
        (TOP, OBSERVE_WINDOW - 2, True),
        (TOP, OBSERVE_WINDOW - 1, False),
        (0, TOP, False),
        (OBSERVE_MODULUS + 1, 2, True),  # taken modulo 2**24
    ],
)
def test_observe_newer(v1: int, v2: int, newer: bool) -> None:
    assert observe_newer(v1, v2) is newer


def test_notification_order_and_the_128_second_rule() -> None:
    order = NotificationOrder()
    assert order.accept(100, 0.0)  # the first is always fresh
    assert not order.accept(99, 1.0)
    assert not order.accept(100, 1.0)
    assert order.accept(101, 2.0)
    # Exactly 128 s after the freshest, sequence numbers still count...
    assert not order.accept(50, 130.0)
    # ...more than 128 s after it (T2 > T1 + 128 s), any notification is fresh.
    assert order.accept(50, 130.001)
    assert (order.value, order.received) == (50, 130.001)
    assert order.accept(TOP, 130.5) is False  # 50 -> 2**24-1 is backwards
    assert order.accept(51, 130.5)


# -- the client --------------------------------------------------------------------------------


def observing_client() -> tuple[UdpEndpoint, OutgoingRequest]:
    client = endpoint()
    request = client.send_request(get(b"\x0b", "temp", observe=0), "S", 0.0)
    assert request.observe
    client.datagrams_to_send()
    mid = request.message_id or 0
    events = client.datagram_received(datagram(ACK, mid, content(b"\x0b", b"20", 5)), "S", 0.5)
    assert events == [UdpResponseReceived(request, content(b"\x0b", b"20", 5), False)]
    assert request.state is RequestState.OBSERVING and not request.done
    assert client.outstanding == 0 and client.client_requests == 1
    return client, request


def test_client_reports_fresh_notifications_only() -> None:
    client, request = observing_client()
    n7 = content(b"\x0b", b"22", 7)
    assert client.datagram_received(datagram(NON, 0x100, n7), "S", 1.0) == [
        UdpResponseReceived(request, n7, True)
    ]
    # 6 was overtaken by 7: not reported.  A CON one is still acknowledged.
    assert (
        client.datagram_received(datagram(NON, 0x101, content(b"\x0b", b"21", 6)), "S", 1.1) == []
    )
    assert (
        client.datagram_received(datagram(CON, 0x102, content(b"\x0b", b"21", 6)), "S", 1.2) == []
    )
    assert client.datagrams_to_send() == [(datagram(ACK, 0x102), "S")]
    # A duplicate of 7 is a duplicate message first of all (same Message ID).
    (event,) = client.datagram_received(datagram(NON, 0x100, n7), "S", 1.3)
    assert isinstance(event, DuplicateReceived)
    assert client.datagrams_to_send() == []


def test_client_follows_wraparound_and_resynchronises_after_128_s() -> None:
    client, _ = observing_client()
    reported = []
    steps = [
        (TOP - 1, 200.0),  # 5 -> TOP-1 is backwards, but 200 s after the freshest: fresh
        (TOP, 201.0),
        (0, 202.0),  # across the wrap
        (1, 203.0),
        (TOP, 204.0),  # stale
        (3, 205.0),
        (2, 206.0),  # stale
        (2, 333.0),  # exactly 128 s after 3: still stale
        (2, 333.5),  # more than 128 s: fresh
    ]
    for mid, (value, now) in enumerate(steps):
        wire = datagram(NON, mid, content(b"\x0b", b"x", value))
        reported += [m.options.observe for m in responses(client.datagram_received(wire, "S", now))]
    assert reported == [TOP - 1, TOP, 0, 1, 3, 2]


def test_client_wraparound_from_the_registration() -> None:
    client = endpoint()
    request = client.send_request(get(b"\x0c", observe=0), "S", 0.0)
    client.datagrams_to_send()
    mid = request.message_id or 0
    client.datagram_received(datagram(ACK, mid, content(b"\x0c", b"a", TOP - 1)), "S", 0.1)
    reported = []
    for n, value in enumerate([TOP, 0, TOP, 1]):
        events = client.datagram_received(datagram(NON, n, content(b"\x0c", b"x", value)), "S", 1)
        reported += [m.options.observe for m in responses(events)]
    assert reported == [TOP, 0, 1]


def test_observation_ends_with_a_response_without_observe() -> None:
    client, request = observing_client()
    final = Message(Code.NOT_FOUND, b"\x0b")
    assert client.datagram_received(datagram(CON, 9, final), "S", 2.0) == [
        UdpResponseReceived(request, final, True)
    ]
    assert request.done and client.client_requests == 0
    (event,) = client.datagram_received(datagram(NON, 10, content(b"\x0b", b"", 9)), "S", 3.0)
    assert isinstance(event, DatagramRejected) and event.reset


def test_registration_answered_without_observe_is_a_plain_response() -> None:
    client = endpoint()
    request = client.send_request(get(b"\x0d", observe=0), "S", 0.0)
    client.datagrams_to_send()
    events = client.datagram_received(
        datagram(ACK, request.message_id or 0, content(b"\x0d")), "S", 1
    )
    assert events == [UdpResponseReceived(request, content(b"\x0d"), False)]
    assert request.done


def test_forgetting_an_observation_cancels_it_at_the_server() -> None:
    # RFC 7641 section 3.6: the client forgets; the next notification gets a Reset; the
    # server removes the observer.
    net = Network()
    request = net.client.send_request(get(b"\x0e", observe=0), "S", 0.0)
    net.deliver()
    (incoming,) = net.server_events
    assert isinstance(incoming, UdpRequestReceived)
    net.server.send_response(incoming.request, content(b"\x0e", b"1", 1), 0.0)
    net.deliver()
    net.server.send_notification("C", content(b"\x0e", b"2", 2), 1.0)
    net.deliver()
    assert [m.payload for m in responses(net.client_events)] == [b"1", b"2"]
    net.client.cancel_request(request, 2.0)
    net.server.send_notification("C", content(b"\x0e", b"3", 3), 3.0)
    net.deliver()
    assert net.server_events[1:] == [ObservationCancelled("C", b"\x0e", "reset")]
    assert net.server.observations == 0


# -- the server --------------------------------------------------------------------------------


def test_notifications_are_non_with_a_con_every_24_hours() -> None:
    server = endpoint()
    types = []
    for n, now in enumerate([0.0, 3600.0, 86399.0, 86400.0, 86401.0, 2 * 86400.0]):
        server.send_notification("C", content(b"\x01", b"x", n + 2), now)
        ((message, _),) = sent(server)
        types.append(message.mtype)
        if message.mtype is CON:
            server.datagram_received(datagram(ACK, message.message_id), "C", now + 0.1)
    assert types == [NON, NON, NON, CON, NON, CON]
    assert server.observations == 1 and server.outstanding == 0


def test_confirmable_notification_and_its_ack() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"x", 2), 0.0, confirmable=True)
    ((message, _),) = sent(server)
    assert message.mtype is CON and server.outstanding == 1
    assert server.datagram_received(datagram(ACK, message.message_id), "C", 0.5) == []
    assert server.outstanding == 0 and server.observations == 1


def test_newer_notification_replaces_the_unacknowledged_one() -> None:
    server = endpoint()  # first timeout 2 s
    server.send_notification("C", content(b"\x01", b"old", 2), 0.0, confirmable=True)
    ((first, _),) = sent(server)
    server.send_notification("C", content(b"\x01", b"new", 3), 1.0)
    assert server.datagrams_to_send() == []  # no extra datagram: it waits for the timer
    assert server.next_timeout() == 2.0
    server.timer_expired(2.0)
    ((second, _),) = sent(server)
    assert second.mtype is CON and second.message.payload == b"new"
    assert second.message_id != first.message_id  # a new message, not a retransmission
    assert server.outstanding == 1
    # The counter and the timeout went on: the next retransmission is 4 s later.
    assert server.next_timeout() == 6.0
    # The ACK of the old one shows the client is there but does not end the new one.
    assert server.datagram_received(datagram(ACK, first.message_id), "C", 2.5) == []
    assert server.outstanding == 1
    server.timer_expired(6.0)
    ((third, _),) = sent(server)
    assert third == second  # a plain retransmission now
    server.datagram_received(datagram(ACK, second.message_id), "C", 6.5)
    assert server.outstanding == 0


def test_replacement_keeps_the_failure_deadline() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"v", 2), 0.0, confirmable=True)
    events = []
    for n, t in enumerate((2.0, 6.0, 14.0, 30.0, 62.0)):
        server.send_notification("C", content(b"\x01", b"v", 3 + n), t - 0.5)
        events += server.timer_expired(t)
    assert events == [ObservationCancelled("C", b"\x01", "timeout")]
    assert server.observations == 0 and server.outstanding == 0


def test_ack_before_the_timer_sends_the_newer_one_at_once() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"old", 2), 0.0, confirmable=True)
    ((first, _),) = sent(server)
    server.send_notification("C", content(b"\x01", b"new", 3), 1.0)
    server.datagram_received(datagram(ACK, first.message_id), "C", 1.5)
    ((second, _),) = sent(server)
    assert second.mtype is CON and second.message.payload == b"new"
    assert server.next_timeout() == 3.5  # its own, fresh schedule


def test_reset_to_a_notification_cancels_the_observation() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"x", 2), 0.0)
    ((message, _),) = sent(server)
    events = server.datagram_received(datagram(RST, message.message_id), "C", 1.0)
    assert events == [ObservationCancelled("C", b"\x01", "reset")]
    assert server.observations == 0
    # A second Reset to it matches nothing any more.
    (event,) = server.datagram_received(datagram(RST, message.message_id), "C", 1.0)
    assert isinstance(event, DatagramRejected)


def test_reset_to_a_replaced_or_recent_notification_cancels() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"a", 2), 0.0, confirmable=True)
    ((first, _),) = sent(server)
    server.send_notification("C", content(b"\x01", b"b", 3), 1.0)
    server.timer_expired(2.0)  # replaced: first's Message ID is retired
    server.datagrams_to_send()
    events = server.datagram_received(datagram(RST, first.message_id), "C", 2.5)
    assert events == [ObservationCancelled("C", b"\x01", "reset")]
    assert server.outstanding == 0  # no more retransmission either


def test_only_recent_non_notifications_are_remembered() -> None:
    server = endpoint()
    mids = []
    for n in range(10):
        server.send_notification("C", content(b"\x01", b"x", n + 2), float(n))
        ((message, _),) = sent(server)
        mids.append(message.message_id)
    (event,) = server.datagram_received(datagram(RST, mids[0]), "C", 20.0)
    assert isinstance(event, DatagramRejected)  # 10 back: forgotten (8 are kept)
    events = server.datagram_received(datagram(RST, mids[2]), "C", 20.0)
    assert events == [ObservationCancelled("C", b"\x01", "reset")]


def test_final_notifications_end_the_state_without_an_event() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"x", 2), 0.0)
    server.send_notification("C", Message(Code.NOT_FOUND, b"\x01"), 1.0)
    assert server.observations == 0
    server.send_notification("C", content(b"\x02", b"x", 2), 0.0)
    server.datagrams_to_send()
    server.send_notification("C", content(b"\x02", b"last"), 1.0, confirmable=True)  # no Observe
    ((final, _),) = sent(server)
    assert server.observations == 1
    server.datagram_received(datagram(ACK, final.message_id), "C", 1.5)
    assert server.observations == 0
    server.send_notification("C", content(b"\x03"), 0.0, confirmable=True)
    events = []
    for t in (2.0, 6.0, 14.0, 30.0, 62.0):
        events += server.timer_expired(t)
    assert events == [] and server.observations == 0


def test_end_observation_stops_retransmission() -> None:
    server = endpoint()
    server.send_notification("C", content(b"\x01", b"x", 2), 0.0, confirmable=True)
    server.datagrams_to_send()
    server.end_observation("C", b"\x01")
    server.end_observation("C", b"\x01")  # twice is harmless
    server.end_observation("X", b"\x01")
    assert server.observations == 0 and server.outstanding == 0
    assert server.timer_expired(100.0) == []
    assert server.datagrams_to_send() == []


def test_notification_bounds() -> None:
    server = endpoint(limits=UdpLimits(max_observations=1, max_outstanding=1))
    server.send_notification("C", content(b"\x01", b"x", 2), 0.0, confirmable=True)
    with pytest.raises(LimitError) as info:
        server.send_notification("C", content(b"\x02", b"x", 2), 0.0)
    assert info.value.limit == "max_observations"
    server.end_observation("C", b"\x01")
    server.send_notification("D", content(b"\x01", b"x", 2), 0.0, confirmable=True)
    server.end_observation("D", b"\x01")
    # At max_outstanding a CON notification goes as NON, and the event says so.
    server.send_ping("E", 0.0)
    server.send_notification("C", content(b"\x01", b"x", 3), 1.0, confirmable=True)
    messages = [m for m, _ in sent(server)]
    assert messages[-1].mtype is NON
    events = server.timer_expired(1.0)
    assert events == [LimitReached("C", "max_outstanding", "sent as NON")]
    with pytest.raises(ValueError):
        UdpLimits(max_observations=0)
    assert server.client_requests == 0
