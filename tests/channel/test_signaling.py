"""Ping/Pong, Custody, Release and Abort through CoapProtocol and the Channel."""

from __future__ import annotations

import pytest
from sites import Slow, slow_site
from twisted.internet.defer import TimeoutError
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from coaptcp.channel.channel import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_RELEASE_TIMEOUT,
    ConnectionClosedError,
    RequestNotSent,
)
from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.message import Message
from coaptcp.core.options import Options, PingPongOption
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import (
    Harness,
    connected_pair,
    custody_ping,
    decode_all,
    failure,
    frames,
    get,
    result_of,
    success,
)
from coaptcp.transport.tcp import CoapFactory

# -- Ping ----------------------------------------------------------------------------------


def test_ping_rtt_measured_on_reactor_clock():
    h = Harness(None, role=Role.INITIATOR, limits=Limits(keepalive_interval=None))
    h.open()
    h.clock.advance(100)
    results = result_of(h.protocol.ping())
    (ping,) = h.sent()
    assert ping.code == Code.PING
    h.clock.advance(0.75)
    assert results == []
    h.feed(Message(Code.PONG, ping.token))
    assert success(results) == pytest.approx(0.75)
    assert h.channel._pings == {}


def test_empty_token_pong_resolves_outstanding_pings_libcoap_style():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    first = result_of(h.protocol.ping())
    h.clock.advance(1)
    second = result_of(h.protocol.ping())
    ping1, ping2 = h.sent()
    assert ping1.token != ping2.token  # tokens stay distinct
    h.clock.advance(1)
    # libcoap answers every Ping with an empty-token Pong.
    h.feed(Message(Code.PONG, b""))
    assert success(first) == pytest.approx(2)
    assert second == []
    h.clock.advance(1)
    h.feed(Message(Code.PONG, b""))
    assert success(second) == pytest.approx(2)
    assert h.channel._pings == {}


def test_pong_matched_by_token_when_echoed():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    first = result_of(h.protocol.ping())
    h.clock.advance(1)
    second = result_of(h.protocol.ping())
    _, ping2 = h.sent()
    h.clock.advance(0.5)
    h.feed(Message(Code.PONG, ping2.token))
    assert success(second) == pytest.approx(0.5)
    assert first == []


def test_unexpected_pong_is_ignored():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    h.feed(Message(Code.PONG, b"\x01"))
    assert not h.transport.disconnecting
    assert h.sent() == []


def test_ping_timeout():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    results = result_of(h.protocol.ping(timeout=2))
    h.clock.advance(2)
    failure(results, TimeoutError)
    assert h.channel._pings == {}
    h.feed(Message(Code.PONG, b""))  # late Pong: ignored
    assert len(results) == 1


def test_custody_ping_answered_after_pending_request_completes():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"r1", "slow"), custody_ping(b"cp"))
    assert h.sent() == []  # the Pong waits for the request
    slow.waiting[0].callback(Response.text("done"))
    response, pong = h.sent()
    assert (response.code, response.token) == (Code.CONTENT, b"r1")
    assert (pong.code, pong.token) == (Code.PONG, b"cp")
    assert pong.options.get(PingPongOption.CUSTODY) is not None


def test_custody_ping_with_nothing_pending_is_answered_at_once():
    h = Harness(Site(make_demo_site()))
    h.open()
    h.feed(custody_ping(b"c"))
    (pong,) = h.sent()
    assert (pong.code, pong.token) == (Code.PONG, b"c")
    assert pong.options.get(PingPongOption.CUSTODY) is not None


def test_plain_ping_is_not_delayed_by_pending_request():
    site, _slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"r1", "slow"), Message(Code.PING, b"np"))
    (pong,) = h.sent()
    assert (pong.code, pong.token) == (Code.PONG, b"np")


def test_channel_custody_ping_round_trip_over_iosim():
    clock = MemoryReactorClock()
    site, slow = slow_site()
    server_factory = CoapFactory(site, reactor=clock)
    client_factory = CoapFactory(role=Role.INITIATOR, reactor=clock)
    link = connected_pair(
        server_factory=server_factory, client_factory=client_factory, clock=clock
    )
    client, _server, pump = link.client, link.server, link.pump
    request = result_of(client.request(Code.GET, Options.build(uri_path=["slow"])))
    pong = result_of(client.channel.ping(custody=True))
    pump.flush()
    assert pong == [] and request == []
    clock.advance(2)
    slow.waiting[0].callback(Response.text("ok"))
    pump.flush()
    assert success(request).payload == b"ok"
    assert success(pong) == pytest.approx(2)


# -- Release ---------------------------------------------------------------------------------


def test_release_all_sends_release_answers_in_flight_then_closes():
    clock = MemoryReactorClock()
    site, slow = slow_site()
    factory = CoapFactory(site, reactor=clock)
    busy = Harness(factory=factory, clock=clock)
    idle = Harness(factory=factory, clock=clock)
    busy.open()
    idle.open()
    busy.feed(get(b"in", "slow"))
    assert busy.sent() == []
    assert factory.connections == {busy.protocol, idle.protocol}

    done = result_of(factory.release_all("going down"))
    for h in (busy, idle):
        (release,) = h.sent()
        assert release.code == Code.RELEASE
        assert release.payload == b"going down"
    assert idle.transport.disconnecting  # nothing in flight: close at once
    assert not busy.transport.disconnecting  # still owes an answer

    slow.waiting[0].callback(Response.text("late but answered"))
    (response,) = busy.sent()
    assert (response.token, response.payload) == (b"in", b"late but answered")
    assert busy.transport.disconnecting
    assert busy.transport.calls[-2:] == ["write", "loseConnection"]

    assert done == []  # fires only once the transports are really gone
    idle.lose()
    assert done == []
    busy.lose()
    success(done)
    assert factory.connections == set()
    assert clock.getDelayedCalls() == []


def test_release_all_with_no_connections_fires_at_once():
    factory = CoapFactory(Site(make_demo_site()), reactor=MemoryReactorClock())
    success(result_of(factory.release_all()))


def test_release_default_diagnostic_bytes():
    factory = CoapFactory(Site(make_demo_site()), reactor=MemoryReactorClock())
    h = Harness(factory=factory)
    h.open()
    factory.release_all()
    # Release is code 7.04 = 0xe4, right after the Len/TKL byte(s).
    (release,) = h.sent()
    assert release.code == 0xE4
    assert release.payload == b"server shutting down"


def test_release_timeout_closes_even_if_work_never_finishes():
    site, _slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"in", "slow"))
    h.protocol.release()
    assert not h.transport.disconnecting
    h.clock.advance(DEFAULT_RELEASE_TIMEOUT)
    assert h.transport.disconnecting
    assert not h.transport.aborted
    h.clock.advance(DEFAULT_CLOSE_TIMEOUT)
    assert h.transport.aborted


def test_no_new_requests_after_release():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    waiting = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["a"])))
    (request,) = h.sent()
    h.protocol.release()
    (release,) = h.sent()
    assert release.code == Code.RELEASE
    failure(result_of(h.protocol.request(Code.GET, Options.build(uri_path=["b"]))), RequestNotSent)
    assert h.sent() == []
    # Our own earlier request is still awaited before closing.
    assert not h.transport.disconnecting
    h.feed(Message(Code.CONTENT, request.token, payload=b"ok"))
    assert success(waiting).payload == b"ok"
    assert h.transport.disconnecting


def test_peer_release_closes_after_in_flight_requests_are_answered():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"a", "slow"), get(b"b", "hello"), Message(Code.RELEASE, payload=b"bye"))
    (hello,) = h.sent()
    assert hello.token == b"b"
    assert not h.transport.disconnecting
    slow.waiting[0].callback(Response.text("answered"))
    (answer,) = h.sent()
    assert answer.token == b"a"
    assert h.transport.disconnecting
    assert h.transport.calls[-2:] == ["write", "loseConnection"]
    assert "bye" in h.channel.close_reason


def test_peer_release_with_nothing_in_flight_closes_at_once():
    h = Harness(Site(make_demo_site()))
    h.open()
    h.feed(Message(Code.RELEASE))
    assert h.transport.disconnecting
    assert not [m for m in h.sent() if m.code == Code.ABORT]


def test_peer_release_fails_our_pending_requests_on_close():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    results = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["x"])))
    h.feed(Message(Code.RELEASE, payload=b"maintenance"))
    h.clock.advance(DEFAULT_RELEASE_TIMEOUT)
    assert h.transport.disconnecting
    h.lose()
    f = failure(results, ConnectionClosedError)
    assert "maintenance" in f.value.reason


def test_release_over_iosim_both_sides_close():
    clock = MemoryReactorClock()
    server_factory = CoapFactory(Site(make_demo_site()), reactor=clock)
    client_factory = CoapFactory(role=Role.INITIATOR, reactor=clock)
    link = connected_pair(
        server_factory=server_factory, client_factory=client_factory, clock=clock
    )
    client, _server, pump = link.client, link.server, link.pump
    done = result_of(server_factory.release_all())
    pump.flush()
    success(done)
    assert server_factory.connections == set()
    assert client_factory.connections == set()
    assert clock.getDelayedCalls() == []
    failure(result_of(client.request(Code.GET, Options())), ConnectionClosedError)


def test_release_sent_and_received_leaves_no_timer_behind():
    # Both sides send Release (a crossing shutdown): once the transport is gone no
    # DelayedCall may be left on the reactor.
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"s", "slow"))
    h.protocol.release("ours")
    h.feed(Message(Code.RELEASE, payload=b"theirs"))
    h.protocol.release("again")
    assert [m.code for m in h.sent()] == [Code.RELEASE]  # only one Release is sent
    slow.waiting[0].callback(Response.text("x"))
    assert h.transport.disconnecting
    h.lose()
    assert [c for c in h.clock.getDelayedCalls() if c.active()] == []


def test_peer_release_after_our_close_started_leaves_no_timer_behind():
    h = Harness(Site(make_demo_site()))
    h.open()
    h.protocol.release()
    assert h.transport.disconnecting
    h.feed(Message(Code.RELEASE))
    h.lose()
    assert [c for c in h.clock.getDelayedCalls() if c.active()] == []


# -- Abort -----------------------------------------------------------------------------------


def test_peer_abort_closes_and_fails_pending_with_diagnostic():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    results = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["x"])))
    pings = result_of(h.protocol.ping())
    h.sent()
    h.feed(Message(Code.ABORT, payload=b"you are banned"))
    assert h.transport.disconnecting
    assert h.sent() == []  # never answer an Abort with an Abort
    h.lose()
    f = failure(results, ConnectionClosedError)
    assert "you are banned" in f.value.reason
    assert "you are banned" in str(f.value)
    failure(pings, ConnectionClosedError)
    assert h.clock.getDelayedCalls() == []


def test_peer_abort_over_iosim():
    clock = MemoryReactorClock()
    root = make_demo_site()
    slow = Slow()
    root.putChild("slow", slow)
    server_factory = CoapFactory(Site(root), reactor=clock)
    client_factory = CoapFactory(role=Role.INITIATOR, reactor=clock)
    link = connected_pair(
        server_factory=server_factory, client_factory=client_factory, clock=clock
    )
    client, server, pump = link.client, link.server, link.pump
    results = result_of(client.request(Code.GET, Options.build(uri_path=["slow"])))
    pump.flush()
    server.abort("server had enough")
    pump.flush()
    f = failure(results, ConnectionClosedError)
    assert "server had enough" in f.value.reason
    # The server's late answer goes nowhere and raises nothing.
    slow.waiting[0].callback(Response.text("too late"))
    pump.flush()


def test_protocol_violation_writes_abort_before_closing():
    h = Harness(Site(make_demo_site()))
    h.open()
    with capturedLogs():
        h.feed_bytes(b"\x09")  # TKL 9 is reserved
    (abort,) = h.sent()
    assert abort.code == Code.ABORT
    assert b"token length" in abort.payload
    assert h.transport.disconnecting
    # The Abort is written before the close is requested.
    assert h.transport.calls[-2:] == ["write", "loseConnection"]
    # Input after the violation is not processed.
    h.feed(get(b"g", "hello"))
    assert h.sent() == []


def test_violation_close_timeout_forces_abort_connection():
    h = Harness(Site(make_demo_site()))
    h.open()
    with capturedLogs():
        h.feed_bytes(b"\x09")
    assert not h.transport.aborted
    h.clock.advance(DEFAULT_CLOSE_TIMEOUT - 0.01)
    assert not h.transport.aborted
    with capturedLogs():
        h.clock.advance(0.02)
    assert h.transport.aborted
    assert h.transport.calls[-1] == "abortConnection"


def test_close_timeout_cancelled_when_transport_closes_in_time():
    h = Harness(Site(make_demo_site()))
    h.open()
    with capturedLogs():
        h.feed_bytes(b"\x09")
    h.lose()
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(DEFAULT_CLOSE_TIMEOUT * 2)
    assert not h.transport.aborted


def test_request_before_csm_in_same_chunk_as_violation_is_not_answered():
    h = Harness(Site(make_demo_site()))
    with capturedLogs():
        h.feed(get(b"g", "hello"))
    sent = h.all_sent()
    assert [m.code for m in sent] == [Code.CSM, Code.ABORT]
    assert h.transport.disconnecting


def test_violation_over_iosim_peer_receives_the_abort():
    clock = MemoryReactorClock()
    server_factory = CoapFactory(Site(make_demo_site()), reactor=clock)
    client_factory = CoapFactory(role=Role.INITIATOR, reactor=clock)
    link = connected_pair(
        server_factory=server_factory, client_factory=client_factory, clock=clock
    )
    client, server, pump = link.client, link.server, link.pump
    results = result_of(client.request(Code.GET, Options()))  # answered: root
    pump.flush()
    with capturedLogs():
        client.transport.write(b"\x0a")  # TKL 10, straight onto the wire
        pump.flush()
    success(results)
    assert "aborted by us" in server.channel.close_reason
    # The client saw the server's Abort (FakeTransport drops writes after a close).
    assert "the peer aborted" in client.channel.close_reason
    assert "token length" in client.channel.close_reason


def test_request_followed_by_garbage_in_one_chunk_aborts_cleanly():
    # A well-formed request and a malformed frame arrive in one read: the Abort is
    # written and the transport closed; nothing raises out of dataReceived.
    stored = []

    class Store(Resource):
        def render_PUT(self, request):
            stored.append(request.payload)
            return Response(Code.CHANGED)

    root = Resource()
    root.putChild("s", Store())
    h = Harness(Site(root))
    h.open()
    put = Message(Code.PUT, b"p", Options.build(uri_path=["s"]), b"data")
    with capturedLogs():
        h.feed_bytes(frames(put) + b"\x0a")
    sent = h.sent()
    assert [m.code for m in sent] == [Code.ABORT]
    assert h.transport.calls[-2:] == ["write", "loseConnection"]
    # Not processed either: the peer, seeing our Abort, must assume it was not.
    assert stored == []


def test_custody_ping_followed_by_garbage_in_one_chunk_aborts_cleanly():
    h = Harness(Site(make_demo_site()))
    h.open()
    with capturedLogs():
        h.feed_bytes(frames(custody_ping(b"c")) + b"\x0b")
    assert [m.code for m in h.sent()] == [Code.ABORT]
    assert h.transport.disconnecting


def test_request_then_peer_abort_in_one_chunk():
    h = Harness(Site(make_demo_site()))
    h.open()
    h.feed(get(b"g", "hello"), Message(Code.ABORT, payload=b"bye"))
    assert h.sent() == []
    assert h.transport.disconnecting


def test_local_abort_writes_abort_then_closes():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    results = result_of(h.protocol.request(Code.GET, Options()))
    h.sent()
    h.protocol.abort("local reasons")
    (abort,) = h.sent()
    assert abort.code == Code.ABORT
    assert abort.payload == b"local reasons"
    assert h.transport.calls[-2:] == ["write", "loseConnection"]
    h.lose(Failure(ConnectionLost()))
    f = failure(results, ConnectionClosedError)
    assert "local reasons" in f.value.reason


def test_connection_lost_inside_a_frame_is_noted_and_pending_fail():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    results = result_of(h.protocol.request(Code.GET, Options()))
    h.feed_bytes(b"\x51")  # start of a frame, then the link dies
    with capturedLogs() as events:
        h.lose(Failure(ConnectionLost("gone")))
    f = failure(results, ConnectionClosedError)
    assert "gone" in f.value.reason
    assert any("inside a frame" in str(e.get("note", "")) for e in events)


def test_written_frames_decode_cleanly():
    # Every byte we wrote in a busy session decodes into whole frames.
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"1", "slow"), get(b"2", "large"), custody_ping(b"c"), Message(Code.PING))
    slow.waiting[0].callback(Response.text("x"))
    h.protocol.release()
    codes = [m.code for m in decode_all(h.transport.value())]
    assert codes[0] == Code.CSM
    assert Code.RELEASE in codes


def test_custody_ping_does_not_wait_for_requests_received_after_it():
    # Custody covers the requests received *before* the Ping (RFC 8323 section 5.4.1);
    # a request that arrives after it must not hold the Pong back.
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"r1", "slow"), custody_ping(b"cp"), get(b"r2", "slow"))
    assert h.sent() == []
    slow.waiting[0].callback(Response.text("first"))
    response, pong = h.sent()
    assert (response.token, pong.code, pong.token) == (b"r1", Code.PONG, b"cp")
    slow.waiting[1].callback(Response.text("second"))
    (late,) = h.sent()
    assert late.token == b"r2"


def test_custody_ping_waits_for_every_earlier_request_whatever_their_order():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"r1", "slow"), get(b"r2", "slow"), custody_ping(b"cp"))
    slow.waiting[1].callback(Response.text("second"))
    assert [m.token for m in h.sent()] == [b"r2"]
    slow.waiting[0].callback(Response.text("first"))
    assert [(m.code, m.token) for m in h.sent()] == [(Code.CONTENT, b"r1"), (Code.PONG, b"cp")]


def test_cancelling_our_last_request_during_release_closes_at_once():
    h = Harness(None, role=Role.INITIATOR)
    h.open()
    pending = h.protocol.request(Code.GET, Options.build(uri_path=["x"]))
    pending.addErrback(lambda _: None)
    h.protocol.release()
    assert not h.transport.disconnecting  # waiting for our request's answer
    pending.cancel()
    assert h.transport.disconnecting  # nothing left to wait for: no 10 s release timer


def test_lenient_peer_without_csm_settles_our_waiting_large_request():
    # A request over the base 1,152 bytes waits for the peer's CSM.  When a lenient
    # connection's peer opens with something else, the base limit stays in force: the
    # request must fail clearly then, not wait forever.
    h = Harness(None, role=Role.INITIATOR, require_csm=False)
    h.sent()
    results = result_of(h.protocol.request(Code.PUT, Options.build(uri_path=["big"]), b"x" * 2000))
    small = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["small"])))
    (get_sent,) = h.sent()
    assert get_sent.code == Code.GET
    assert results == []
    h.feed(Message(Code.PING, b"p"))  # the peer's first message is not a CSM
    (pong,) = h.sent()
    assert pong.code == Code.PONG
    error = failure(results, RequestNotSent)
    assert "1152" in str(error.value)
    assert h.channel.pending_requests == 1  # only the small GET, still awaiting its answer
    h.feed(Message(Code.CONTENT, get_sent.token))
    assert success(small).code == Code.CONTENT
