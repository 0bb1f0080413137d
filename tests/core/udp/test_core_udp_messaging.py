"""The UDP message layer's exchanges (coaptcp.core.udp.messaging, RFC 7252 sections 4 and 5).

Piggybacked and separate responses (5.2.1-5.2.3) as in RFC 7252 Appendix A, the Empty
ACK for a slow CON request, deduplication (4.5), pings and Resets (4.2, 4.3), matching
(5.3.2) and rejected datagrams.
"""

from __future__ import annotations

import pytest
from udp_helpers import (
    ACK,
    CON,
    NON,
    RST,
    FixedRandom,
    Network,
    content,
    datagram,
    endpoint,
    get,
    sent,
)

from coaptcp.core.codes import Code
from coaptcp.core.errors import LocalProtocolError, MessageTooLarge
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.config import UdpLimits
from coaptcp.core.udp.events import (
    DatagramRejected,
    DuplicateReceived,
    RequestAcknowledged,
    ResponseFailed,
    UdpPingReceived,
    UdpPongReceived,
    UdpRequestReceived,
    UdpResponseReceived,
)
from coaptcp.core.udp.framing import UdpMessage, decode_datagram
from coaptcp.core.udp.state import ExchangeState, RequestState

TEMPERATURE = Options([(11, "temperature")])
FIG16_REQUEST = b"\x40\x01\x7d\x34\xbbtemperature"
FIG16_RESPONSE = b"\x60\x45\x7d\x34\xff22.3 C"


def receive_request(ep: object, wire: bytes, now: float = 0.0) -> UdpRequestReceived:
    from coaptcp.core.udp.messaging import UdpEndpoint

    assert isinstance(ep, UdpEndpoint)
    events = ep.datagram_received(wire, "C", now)
    assert len(events) == 1 and isinstance(events[0], UdpRequestReceived), events
    return events[0]


# -- server side -----------------------------------------------------------------------------


def test_piggybacked_response_figure_16() -> None:
    server = endpoint()
    event = receive_request(server, FIG16_REQUEST)
    request = event.request
    assert (request.peer, request.message_id, request.confirmable) == ("C", 0x7D34, True)
    assert request.message == Message(Code.GET, b"", TEMPERATURE)
    server.send_response(request, Message(Code.CONTENT, payload=b"22.3 C"), 0.0)
    assert server.datagrams_to_send() == [(FIG16_RESPONSE, "C")]
    assert request.state is ExchangeState.DONE
    assert server.pending_requests == 0


def test_duplicate_con_gets_the_same_piggybacked_response_figure_19() -> None:
    server = endpoint()
    request = receive_request(server, FIG16_REQUEST).request
    server.send_response(request, Message(Code.CONTENT, payload=b"22.3 C"), 0.0)
    server.datagrams_to_send()
    # The ACK was lost; the client retransmits after its timeout.
    events = server.datagram_received(FIG16_REQUEST, "C", 2.5)
    assert events == [DuplicateReceived("C", 0x7D34, True, True)]
    assert server.datagrams_to_send() == [(FIG16_RESPONSE, "C")]
    # The same Message ID from another endpoint is another message (section 4.5).
    assert isinstance(server.datagram_received(FIG16_REQUEST, "D", 2.5)[0], UdpRequestReceived)


def test_separate_response_figure_20() -> None:
    # Our Message IDs to "C" start at 0xad7b, as in the figure.
    server = endpoint(rng=FixedRandom(mids=(0xAD7B,)), empty_ack_delay=None)
    request = receive_request(server, b"\x41\x01\x7d\x38\x53\xbbtemperature").request
    server.acknowledge(request, 0.0)  # the caller says it will be slow
    assert server.datagrams_to_send() == [(b"\x60\x00\x7d\x38", "C")]
    assert request.state is ExchangeState.ACKNOWLEDGED
    server.send_response(request, Message(Code.CONTENT, b"\x53", payload=b"22.3 C"), 1.0)
    assert server.datagrams_to_send() == [(b"\x41\x45\xad\x7b\x53\xff22.3 C", "C")]
    assert server.outstanding == 1
    assert server.datagram_received(b"\x60\x00\xad\x7b", "C", 1.5) == []
    assert server.outstanding == 0


def test_retransmitted_request_after_empty_ack_gets_another_empty_ack() -> None:
    # Section 5.2.2: "another Empty Acknowledgement is sent, and any response MUST be
    # sent as a separate response".
    server = endpoint(empty_ack_delay=None)
    request = receive_request(server, FIG16_REQUEST).request
    server.acknowledge(request, 0.0)
    server.datagrams_to_send()
    events = server.datagram_received(FIG16_REQUEST, "C", 2.0)
    assert events == [DuplicateReceived("C", 0x7D34, True, True)]
    assert server.datagrams_to_send() == [(b"\x60\x00\x7d\x34", "C")]
    server.send_response(request, Message(Code.CONTENT, payload=b"late"), 3.0)
    ((message, _),) = sent(server)
    assert message.mtype is CON and message.message_id != 0x7D34


def test_slow_con_request_is_acknowledged_after_the_delay() -> None:
    server = endpoint(empty_ack_delay=1.0)
    request = receive_request(server, FIG16_REQUEST, now=10.0).request
    assert server.next_timeout() == 11.0
    assert server.timer_expired(10.9) == []
    assert server.datagrams_to_send() == []
    server.timer_expired(11.0)
    assert server.datagrams_to_send() == [(b"\x60\x00\x7d\x34", "C")]
    server.send_response(request, Message(Code.CONTENT), 12.0)
    ((message, _),) = sent(server)
    assert message.mtype is CON  # separate, confirmable like the request


def test_answered_in_time_cancels_the_empty_ack() -> None:
    server = endpoint(empty_ack_delay=1.0)
    request = receive_request(server, FIG16_REQUEST).request
    server.send_response(request, Message(Code.CONTENT), 0.5)
    server.datagrams_to_send()
    server.timer_expired(5.0)
    assert server.datagrams_to_send() == []


def test_duplicate_of_an_unanswered_con_is_acknowledged_at_once() -> None:
    # The client retransmits: we are slower than its timeout.  It gets an Empty ACK now
    # instead of a third copy later, and the request is not handed over twice.
    server = endpoint(empty_ack_delay=None)
    request = receive_request(server, FIG16_REQUEST).request
    events = server.datagram_received(FIG16_REQUEST, "C", 2.0)
    assert events == [DuplicateReceived("C", 0x7D34, True, True)]
    assert server.datagrams_to_send() == [(b"\x60\x00\x7d\x34", "C")]
    assert request.state is ExchangeState.ACKNOWLEDGED


def test_non_request_gets_a_non_response_and_duplicates_are_ignored() -> None:
    server = endpoint(rng=FixedRandom(mids=(0xAD7D,)))
    wire = b"\x51\x01\x7d\x40\x75\xbbtemperature"  # Figure 22
    request = receive_request(server, wire).request
    assert not request.confirmable
    server.send_response(request, Message(Code.CONTENT, b"\x75", payload=b"22.3 C"), 0.0)
    assert server.datagrams_to_send() == [(b"\x51\x45\xad\x7d\x75\xff22.3 C", "C")]
    assert server.datagram_received(wire, "C", 1.0) == [
        DuplicateReceived("C", 0x7D40, False, False)
    ]
    assert server.datagrams_to_send() == []


def test_non_request_may_get_a_con_response() -> None:
    server = endpoint()
    request = receive_request(server, datagram(NON, 5, get(b"\x09"))).request
    server.send_response(request, content(b"\x09"), 0.0, confirmable=True)
    ((message, _),) = sent(server)
    assert message.mtype is CON
    assert server.outstanding == 1


def test_response_rules() -> None:
    server = endpoint(limits=UdpLimits(max_message_size=64))
    request = receive_request(server, datagram(CON, 5, get(b"\x09"))).request
    with pytest.raises(LocalProtocolError, match="not a response"):
        server.send_response(request, Message(Code.GET, b"\x09"), 0.0)
    with pytest.raises(LocalProtocolError, match="token"):
        server.send_response(request, content(b"\x08"), 0.0)
    with pytest.raises(MessageTooLarge):
        server.send_response(request, content(b"\x09", b"x" * 100), 0.0)
    assert request.state is ExchangeState.PENDING  # nothing happened
    server.send_response(request, content(b"\x09"), 0.0)
    with pytest.raises(LocalProtocolError, match="answered already"):
        server.send_response(request, content(b"\x09"), 0.0)


def test_drop_request_acknowledges_a_con_and_frees_its_slot() -> None:
    server = endpoint()
    request = receive_request(server, datagram(CON, 5, get())).request
    assert server.pending_requests == 1
    server.drop_request(request, 0.0)
    assert server.pending_requests == 0
    assert server.datagrams_to_send() == [(datagram(ACK, 5), "C")]
    server.drop_request(request, 0.0)  # twice is harmless
    assert server.pending_requests == 0
    # A duplicate gets the same Empty ACK again.
    server.datagram_received(datagram(CON, 5, get()), "C", 1.0)
    assert server.datagrams_to_send() == [(datagram(ACK, 5), "C")]


def test_separate_con_response_fails_after_retransmissions_or_on_reset() -> None:
    server = endpoint(empty_ack_delay=None)
    request = receive_request(server, datagram(NON, 5, get())).request
    server.send_response(request, content(b"\x01"), 0.0, confirmable=True)
    ((message, _),) = sent(server)
    events = server.datagram_received(datagram(RST, message.message_id), "C", 1.0)
    assert events == [ResponseFailed(request, "reset")]
    other = receive_request(server, datagram(NON, 6, get(b"\x02"))).request
    server.send_response(other, content(b"\x02"), 0.0, confirmable=True)
    events = []
    for t in (2, 6, 14, 30, 62):
        events += server.timer_expired(float(t))
    assert events == [ResponseFailed(other, "timeout")]
    assert server.outstanding == 0


# -- pings, Resets, rejected datagrams --------------------------------------------------------


def test_ping_is_answered_with_a_reset() -> None:
    server = endpoint()
    assert server.datagram_received(b"\x40\x00\x12\x34", "C", 0.0) == [UdpPingReceived("C", 0x1234)]
    assert server.datagrams_to_send() == [(b"\x70\x00\x12\x34", "C")]
    assert server.peers == 0 and server.dedup_entries == 0  # stateless


def test_our_ping_gets_its_pong() -> None:
    net = Network()
    mid = net.client.send_ping("S", 0.0)
    net.deliver()
    assert net.server_events == [UdpPingReceived("C", mid)]
    assert net.client_events == [UdpPongReceived("S", mid)]
    assert net.client.outstanding == 0
    # An Empty ACK also shows the peer is there.
    mid = net.client.send_ping("S", 1.0)
    net.client.datagrams_to_send()
    assert net.client.datagram_received(datagram(ACK, mid), "S", 1.5) == [UdpPongReceived("S", mid)]


def test_malformed_con_is_reset_other_types_ignored() -> None:
    server = endpoint()
    bad = b"\x49\x01\x00\x07"  # TKL 9
    events = server.datagram_received(bad, "C", 0.0)
    assert events == [DatagramRejected("C", "token length 9 is reserved", True)]
    assert server.datagrams_to_send() == [(b"\x70\x00\x00\x07", "C")]
    for wire in (b"\x59\x01\x00\x07", b"\x69\x45\x00\x07", b"\x00\x01\x00\x07", b"\x40"):
        (event,) = server.datagram_received(wire, "C", 0.0)
        assert isinstance(event, DatagramRejected) and not event.reset
    assert server.datagrams_to_send() == []


def test_unmatched_ack_and_reset_are_silently_ignored() -> None:
    server = endpoint()
    for wire in (datagram(ACK, 9), datagram(RST, 9), datagram(ACK, 9, content(b""))):
        (event,) = server.datagram_received(wire, "C", 0.0)
        assert isinstance(event, DatagramRejected) and not event.reset
    # Section 4.2: recipients of ACK and RST never answer them.
    assert server.datagrams_to_send() == []


def test_unexpected_responses_are_reset_figure_21() -> None:
    client = endpoint()
    # The client lost its state; the separate response comes unexpected.
    events = client.datagram_received(b"\x41\x45\xad\x7c\x64\xff22.3 C", "S", 0.0)
    assert events == [DatagramRejected("S", "unexpected response", True)]
    assert client.datagrams_to_send() == [(b"\x70\x00\xad\x7c", "S")]
    # "Note that the unexpected ACK is silently ignored."
    client.datagram_received(b"\x60\x00\x7d\x39", "S", 0.0)
    assert client.datagrams_to_send() == []
    # A NON response is reset too (section 4.3 allows it), unless configured otherwise.
    client.datagram_received(datagram(NON, 3, content(b"\x64")), "S", 0.0)
    assert client.datagrams_to_send() == [(datagram(RST, 3), "S")]
    quiet = endpoint(reset_unexpected_non=False)
    (event,) = quiet.datagram_received(datagram(NON, 3, content(b"\x64")), "S", 0.0)
    assert isinstance(event, DatagramRejected) and not event.reset
    assert quiet.datagrams_to_send() == []


# -- the client side --------------------------------------------------------------------------


def test_request_and_piggybacked_response() -> None:
    net = Network()
    request = net.client.send_request(get(b"\x20", "temperature"), "S", 0.0)
    assert request.state is RequestState.SENT and request.message_id == 0x1000
    net.deliver()
    (incoming,) = net.server_events
    assert isinstance(incoming, UdpRequestReceived)
    net.server.send_response(incoming.request, content(b"\x20", b"22.3 C"), 0.0)
    net.deliver()
    assert net.client_events == [UdpResponseReceived(request, content(b"\x20", b"22.3 C"))]
    assert request.done
    assert net.client.client_requests == 0 and net.client.outstanding == 0


def test_request_acknowledged_then_separate_response() -> None:
    net = Network(empty_ack_delay=None)
    request = net.client.send_request(get(b"\x20"), "S", 0.0)
    net.deliver()
    incoming = net.server_events[0]
    assert isinstance(incoming, UdpRequestReceived)
    net.server.acknowledge(incoming.request, 0.0)
    net.deliver()
    assert net.client_events == [RequestAcknowledged(request)]
    assert request.state is RequestState.ACKNOWLEDGED
    assert net.client.outstanding == 0  # no more retransmission
    net.server.send_response(incoming.request, content(b"\x20"), 5.0)
    net.deliver()
    assert net.client_events[1:] == [UdpResponseReceived(request, content(b"\x20"))]
    assert net.server.outstanding == 0  # the client acknowledged the CON response


def test_separate_response_before_the_empty_ack_ends_retransmission() -> None:
    # Section 5.2.2: the CON response may arrive first; it serves as the acknowledgement.
    client = endpoint()
    request = client.send_request(get(b"\x20"), "S", 0.0)
    client.datagrams_to_send()
    events = client.datagram_received(datagram(CON, 0x500, content(b"\x20")), "S", 0.5)
    assert events == [UdpResponseReceived(request, content(b"\x20"))]
    assert client.datagrams_to_send() == [(datagram(ACK, 0x500), "S")]
    assert client.outstanding == 0
    assert client.timer_expired(10.0) == []
    assert client.datagrams_to_send() == []
    # The late Empty ACK is ignored; a duplicate of the response is acknowledged again.
    client.datagram_received(datagram(ACK, request.message_id or 0), "S", 1.0)
    events = client.datagram_received(datagram(CON, 0x500, content(b"\x20")), "S", 1.0)
    assert events == [DuplicateReceived("S", 0x500, True, True)]
    assert client.datagrams_to_send() == [(datagram(ACK, 0x500), "S")]


def test_piggybacked_response_must_match_the_token() -> None:
    client = endpoint()
    request = client.send_request(get(b"\x20"), "S", 0.0)
    mid = request.message_id
    assert mid is not None
    client.datagrams_to_send()
    (event,) = client.datagram_received(datagram(ACK, mid, content(b"\x21")), "S", 0.1)
    assert isinstance(event, DatagramRejected)
    assert request.state is RequestState.SENT and client.outstanding == 1
    (event,) = client.datagram_received(datagram(ACK, mid, content(b"\x20")), "S", 0.2)
    assert isinstance(event, UdpResponseReceived)


def test_response_from_another_endpoint_is_unexpected() -> None:
    client = endpoint()
    client.send_request(get(b"\x20"), "S", 0.0)
    client.datagrams_to_send()
    (event,) = client.datagram_received(datagram(CON, 1, content(b"\x20")), "X", 0.1)
    assert isinstance(event, DatagramRejected) and event.reset


def test_non_request_and_response() -> None:
    net = Network()
    request = net.client.send_request(get(b"\x75"), "S", 0.0, confirmable=False)
    ((message, _),) = sent(net.client)
    assert message.mtype is NON
    net.client.datagrams_to_send()
    net.server.datagram_received(message.encode(), "C", 0.0)
    incoming = net.server.datagram_received(
        UdpMessage(NON, message.message_id + 1, get(b"\x76")).encode(), "C", 0.0
    )
    assert isinstance(incoming[0], UdpRequestReceived)
    client_events = net.client.datagram_received(datagram(NON, 0x77, content(b"\x75")), "S", 0.3)
    assert client_events == [UdpResponseReceived(request, content(b"\x75"))]
    assert net.client.datagrams_to_send() == []  # a NON is not acknowledged


def test_request_rules() -> None:
    client = endpoint(limits=UdpLimits(max_message_size=40))
    with pytest.raises(LocalProtocolError, match="not a request"):
        client.send_request(content(b"\x01"), "S", 0.0)
    with pytest.raises(MessageTooLarge):
        client.send_request(Message(Code.PUT, b"\x01", payload=b"x" * 50), "S", 0.0)
    client.send_request(get(b"\x01"), "S", 0.0)
    with pytest.raises(LocalProtocolError, match="in use"):
        client.send_request(get(b"\x01"), "S", 0.0)
    client.send_request(get(b"\x01"), "T", 0.0)  # tokens are per peer
    assert client.client_requests == 2


def test_decoded_events_carry_the_message() -> None:
    server = endpoint()
    (event,) = server.datagram_received(datagram(CON, 1, get(b"\x01", "a", "b")), "C", 0.0)
    assert isinstance(event, UdpRequestReceived)
    assert event.request.message.options.uri_path == ("a", "b")
    assert event.request.token == b"\x01"
    assert "CON 0x0001" in repr(event.request)
    assert decode_datagram(datagram(CON, 1, get())).mtype is CON
