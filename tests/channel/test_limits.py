"""Limits and timeouts of one connection and of a factory (coaptcp.channel.limits).

All timers run on a MemoryReactorClock: no real time passes.
"""

from __future__ import annotations

from sites import slow_site
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from coaptcp.channel.errors import RequestNotSent
from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.request import Response
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, RecordingTransport, decode_all, failure, get, result_of
from coaptcp.transport.tcp import CoapFactory

# -- CSM timeout (RFC 8323 section 3.3) ------------------------------------------------------


def test_peer_that_never_sends_a_csm_is_aborted_after_csm_timeout():
    h = Harness(Site(make_demo_site()), limits=Limits(csm_timeout=10))
    (csm,) = h.sent()
    assert csm.code == Code.CSM
    h.clock.advance(9.9)
    assert h.sent() == [] and not h.transport.disconnecting
    h.clock.advance(0.2)
    (abort,) = h.sent()
    assert abort.code == Code.ABORT
    assert abort.payload == b"no CSM received within 10 s"
    assert h.transport.disconnecting


def test_csm_in_time_cancels_the_csm_timer():
    h = Harness(
        Site(make_demo_site()),
        limits=Limits(csm_timeout=10, idle_timeout=None, keepalive_interval=None),
    )
    h.open()
    assert [c.func.__name__ for c in h.clock.getDelayedCalls()] == []
    h.clock.advance(60)
    assert h.sent() == [] and not h.transport.disconnecting


def test_slowloris_csm_one_byte_a_second_is_still_cut_off():
    # A CSM with a long option trickling in a byte at a second never completes in time.
    h = Harness(Site(make_demo_site()), limits=Limits(csm_timeout=10))
    h.sent()
    frame = bytes.fromhex("d0") + bytes([200 - 13]) + b"\xe1" + b"\x00" * 200
    for byte in frame[:15]:
        h.feed_bytes(bytes([byte]))
        h.clock.advance(1)
    assert [m.code for m in h.sent()] == [Code.ABORT]
    assert h.transport.disconnecting


# -- idle timeout (RFC 8323 section 5.5) -----------------------------------------------------


def test_idle_connection_is_released_then_closed():
    h = Harness(Site(make_demo_site()), limits=Limits(idle_timeout=300, keepalive_interval=None))
    h.open()
    h.clock.advance(200)
    h.feed(get(b"a", "hello"))
    assert [m.code for m in h.sent()] == [Code.CONTENT]
    h.clock.advance(299)  # 299 s since the last request: not idle long enough
    assert h.sent() == []
    h.clock.advance(2)
    (release,) = h.sent()
    assert release.code == Code.RELEASE
    assert release.payload.startswith(b"idle for 30")
    assert h.transport.disconnecting


def test_connection_with_an_observation_is_not_idle():
    h = Harness(Site(make_demo_site(reactor=MemoryReactorClock())), limits=Limits(idle_timeout=5))
    h.open()
    h.feed(Message(Code.GET, b"o", Options.build(uri_path=["time"], observe=0)))
    assert [m.code for m in h.sent()] == [Code.CONTENT]
    h.clock.advance(60)
    assert not h.transport.disconnecting


def test_connection_with_a_request_in_progress_is_not_idle():
    site, slow = slow_site()
    h = Harness(site, limits=Limits(idle_timeout=5, keepalive_interval=None))
    h.open()
    h.feed(get(b"s", "slow"))
    h.clock.advance(60)
    assert not h.transport.disconnecting
    slow.waiting[0].callback(Response.text("late"))
    h.clock.advance(6)
    assert [m.code for m in h.sent()] == [Code.CONTENT, Code.RELEASE]


# -- keepalive (RFC 8323 section 5.4) --------------------------------------------------------


def test_keepalive_pings_a_silent_peer_and_keeps_it_when_it_answers():
    h = Harness(
        Site(make_demo_site()),
        limits=Limits(idle_timeout=None, keepalive_interval=30, pong_timeout=5),
    )
    h.open()
    h.clock.advance(30)
    (ping,) = h.sent()
    assert ping.code == Code.PING
    h.feed(Message(Code.PONG, ping.token))
    h.clock.advance(10)
    assert h.sent() == [] and not h.transport.disconnecting
    h.clock.advance(25)  # silent again for 30 s: another Ping
    assert [m.code for m in h.sent()] == [Code.PING]


def test_keepalive_without_pong_closes_the_connection():
    h = Harness(
        Site(make_demo_site()),
        limits=Limits(idle_timeout=None, keepalive_interval=30, pong_timeout=5),
    )
    h.open()
    h.clock.advance(30)
    assert [m.code for m in h.sent()] == [Code.PING]
    with capturedLogs() as events:
        h.clock.advance(5)
    (abort,) = h.sent()
    assert abort.code == Code.ABORT
    assert abort.payload == b"no Pong within 5 s"
    assert h.transport.disconnecting
    assert any("no Pong" in str(event.get("log_format")) for event in events)


def test_no_keepalive_ping_after_a_release_in_either_direction():
    # A released connection only finishes its work in flight (RFC 8323 section 5.5): a
    # slow request keeps it open past the keepalive interval, but no Ping goes out.
    for we_release in (True, False):
        site, slow = slow_site()
        h = Harness(
            site,
            limits=Limits(idle_timeout=None, keepalive_interval=30, pong_timeout=5),
        )
        h.open()
        h.protocol.channel.release_timeout = 120  # longer than the keepalive interval
        h.feed(get(b"s", "slow"))
        if we_release:
            h.protocol.channel.release("going away")
            assert [m.code for m in h.sent()] == [Code.RELEASE]
        else:
            h.feed(Message(Code.RELEASE))
        h.clock.advance(45)
        assert h.sent() == [], we_release
        slow.waiting[0].callback(Response.text("late"))
        assert [m.code for m in h.sent()] == [Code.CONTENT]
        assert h.transport.disconnecting


# -- requests in flight ----------------------------------------------------------------------


def test_too_many_requests_in_progress_get_4_29_and_one_log_line():
    site, slow = slow_site()
    h = Harness(site, limits=Limits(max_inbound_requests=2, retry_after=3))
    h.open()
    with capturedLogs() as events:
        h.feed(get(b"1", "slow"), get(b"2", "slow"), get(b"3", "slow"), get(b"4", "slow"))
    answers = h.sent()
    assert [(m.token, m.code) for m in answers] == [
        (b"3", Code.TOO_MANY_REQUESTS),
        (b"4", Code.TOO_MANY_REQUESTS),
    ]
    assert all(m.options.max_age == 3 for m in answers)
    warnings = [e for e in events if "4.29" in str(e.get("log_format"))]
    assert len(warnings) == 1
    slow.waiting[0].callback(Response.text("one"))
    h.feed(get(b"5", "slow"))  # a slot is free again
    assert [(m.token, m.code) for m in h.sent()] == [(b"1", Code.CONTENT)]
    assert len(slow.waiting) == 3


def test_our_outbound_requests_are_bounded():
    h = Harness(None, role=Role.INITIATOR, limits=Limits(max_outbound_requests=2))
    h.open()
    first = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["a"])))
    second = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["b"])))
    third = result_of(h.protocol.request(Code.GET, Options.build(uri_path=["c"])))
    error = failure(third, RequestNotSent)
    assert "max_outbound_requests" in str(error.value)
    assert first == [] and second == []
    assert len(h.sent()) == 2


# -- connections per factory ------------------------------------------------------------------


def connect(factory: CoapFactory, host: str) -> RecordingTransport:
    address = IPv4Address("TCP", host, 40000)
    protocol = factory.buildProtocol(address)
    transport = RecordingTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return transport


def test_connections_beyond_the_limit_get_csm_then_abort():
    factory = CoapFactory(
        Site(make_demo_site()), reactor=MemoryReactorClock(), limits=Limits(max_connections=2)
    )
    first, second = connect(factory, "192.0.2.1"), connect(factory, "192.0.2.2")
    with capturedLogs() as events:
        third = connect(factory, "192.0.2.3")
        fourth = connect(factory, "192.0.2.4")
    assert not first.disconnecting and not second.disconnecting
    for refused in (third, fourth):
        csm, abort = decode_all(refused.value())
        assert (csm.code, abort.code) == (Code.CSM, Code.ABORT)
        assert abort.payload == b"server busy: more than 2 connections"
        assert refused.disconnecting
    assert len([e for e in events if "Refusing" in str(e.get("log_format"))]) == 1


def test_connections_per_address_are_bounded_and_freed_on_close():
    factory = CoapFactory(
        Site(make_demo_site()),
        reactor=MemoryReactorClock(),
        limits=Limits(max_connections_per_address=1),
    )
    first = connect(factory, "192.0.2.9")
    other = connect(factory, "192.0.2.10")
    with capturedLogs():
        second = connect(factory, "192.0.2.9")
    assert not first.disconnecting and not other.disconnecting
    assert decode_all(second.value())[-1].payload == b"more than 1 connections from 192.0.2.9"
    # The refused connection counts until its transport has really closed.
    for protocol in list(factory.connections):
        if protocol.transport in (first, second):
            protocol.connectionLost(None)
    third = connect(factory, "192.0.2.9")
    assert not third.disconnecting


# -- frame timeout: a slowloris after its CSM -----------------------------------------------


def test_frame_trickled_slower_than_frame_timeout_is_aborted():
    h = Harness(Site(make_demo_site()), limits=Limits(frame_timeout=30, idle_timeout=None))
    h.open()
    frame = encode_frame(get(b"t", "hello").replace(payload=b"x" * 100))
    for byte in frame[:40]:  # one byte a second keeps the connection "active"...
        h.feed_bytes(bytes([byte]))
        h.clock.advance(1)
    (abort,) = h.sent()  # ...but the frame it never finishes costs it the connection
    assert abort.code == Code.ABORT
    assert abort.payload == b"a frame took longer than 30 s to arrive"
    assert h.transport.disconnecting


def test_frames_completed_in_time_never_trip_the_frame_timeout():
    h = Harness(
        Site(make_demo_site()),
        limits=Limits(frame_timeout=30, idle_timeout=None, keepalive_interval=None),
    )
    h.open()
    for n in range(5):
        frame = encode_frame(get(bytes([n]), "hello"))
        h.feed_bytes(frame[:3])
        h.clock.advance(20)
        h.feed_bytes(frame[3:])
        h.clock.advance(20)
    assert [m.code for m in h.sent()] == [Code.CONTENT] * 5
    assert not h.transport.disconnecting
    assert [c.func.__name__ for c in h.clock.getDelayedCalls()] == []


# -- memory: a closed connection is freed at once ---------------------------------------------


def test_a_closed_connection_is_freed_without_the_cyclic_collector():
    # The channel and its protocol must not form a cycle that outlives the connection:
    # an idle server may not run a full collection for a long time (found by the soak,
    # with thousands of closed channels and their half-finished uploads still held).
    # (Scenarios that log are left out: before logging begins, as under pytest, Twisted
    # keeps recent events, and each names its source, the channel.)
    import gc

    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    from coaptcp.channel.channel import Channel

    def live_channels() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, Channel))

    upload_start = Message(
        Code.PUT,
        b"u",
        Options.build(uri_path=["store"]).add(27, 0x08 | 2),  # Block1 0, more, 64 bytes
        b"x" * 64,
    )
    site = Site(make_demo_site())
    gc.collect()
    gc.disable()
    try:
        before = live_channels()
        for scenario in (get(b"a", "hello"), upload_start):
            h = Harness(site)
            h.open()
            h.feed(scenario)
            assert h.sent(), scenario
            protocol = h.protocol
            # What Twisted's TCP transport does when the connection is lost: it lets go
            # of its producer and its protocol, then tells the protocol.
            h.transport.unregisterProducer()
            h.transport.protocol = None
            protocol.connectionLost(Failure(ConnectionDone()))
            del h, protocol
            assert live_channels() == before, scenario
    finally:
        gc.enable()
