"""Client side: two CoapProtocols connected in memory by twisted.test.iosim."""

from __future__ import annotations

import random

import pytest
from sites import Held
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.testing import MemoryReactorClock

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.events import BASE_MAX_MESSAGE_SIZE
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.request import Response
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, connected_pair, csm, failure, result_of, success
from coaptcp.transport.tcp import CoapFactory, CoapProtocol


class Pair:
    """Our two protocols in memory; the server has the demo site and /echo, answered when
    the test says so (:class:`Held`)."""

    def __init__(self, *, client_site=None, greet: bool = True, **server_kwargs) -> None:
        self.clock = MemoryReactorClock()
        root = make_demo_site()
        self.echo = Held()
        root.putChild("echo", self.echo)
        self.server_factory = CoapFactory(Site(root), reactor=self.clock, **server_kwargs)
        self.client_factory = CoapFactory(client_site, role=Role.INITIATOR, reactor=self.clock)
        link = connected_pair(
            server_factory=self.server_factory,
            client_factory=self.client_factory,
            clock=self.clock,
            greet=greet,
        )
        self.client: CoapProtocol = link.client
        self.server: CoapProtocol = link.server
        self.pump = link.pump

    def flush(self) -> None:
        self.pump.flush()


def hello() -> Options:
    return Options.build(uri_path=["hello"])


def test_request_fires_with_response():
    pair = Pair()
    results = result_of(pair.client.request(Code.GET, hello()))
    assert results == []  # nothing moves until the pump runs
    pair.flush()
    response = success(results)
    assert isinstance(response, Response)
    assert response.code == Code.CONTENT
    assert response.payload == b"Hello, world!"
    assert response.content_format == 0
    assert pair.client.channel.pending_requests == 0


def test_put_then_get_round_trip():
    pair = Pair()
    store = Options.build(uri_path=["store"], content_format=0)
    put = result_of(pair.client.request(Code.PUT, store, b"stored value"))
    pair.flush()
    assert success(put).code == Code.CHANGED
    got = result_of(pair.client.request(Code.GET, Options.build(uri_path=["store"])))
    pair.flush()
    assert success(got).payload == b"stored value"


def test_many_requests_in_flight_unique_tokens_any_order():
    pair = Pair()
    count = 25
    results = [
        result_of(
            pair.client.request(Code.GET, Options.build(uri_path=["echo"], uri_query=[f"n={i}"]))
        )
        for i in range(count)
    ]
    pending = pair.client.channel._pending
    assert len(pending) == count  # one distinct token per request
    assert all(1 <= len(token) <= 8 for token in pending)
    pair.flush()
    assert len(pair.echo.waiting) == count
    assert len({r.token for r, _ in pair.echo.waiting}) == count
    rng = random.Random(1234)
    while pair.echo.waiting:
        pair.echo.answer(rng.randrange(len(pair.echo.waiting)))
        pair.flush()
    for i, result in enumerate(results):
        assert success(result).payload == f"n={i}".encode()
    assert pair.client.channel.pending_requests == 0


def test_cancel_frees_token_and_late_response_is_ignored():
    pair = Pair()
    d = pair.client.request(Code.GET, Options.build(uri_path=["echo"], uri_query=["a"]))
    results = result_of(d)
    pair.flush()
    assert pair.client.channel.pending_requests == 1
    d.cancel()
    failure(results, CancelledError)
    assert pair.client.channel._pending == {}
    assert pair.client.channel.pending_requests == 0
    # The server answers anyway; the client ignores it without error.
    pair.echo.answer(0)
    pair.flush()
    assert len(results) == 1
    # And the connection still works.
    again = result_of(pair.client.request(Code.GET, hello()))
    pair.flush()
    assert success(again).payload == b"Hello, world!"


def test_timeout_fails_and_frees_token():
    pair = Pair()
    results = result_of(
        pair.client.request(Code.GET, Options.build(uri_path=["echo"], uri_query=["t"]), timeout=5)
    )
    pair.flush()
    pair.clock.advance(4.9)
    assert results == []
    pair.clock.advance(0.2)
    failure(results, TimeoutError)
    assert pair.client.channel.pending_requests == 0
    pair.echo.answer(0)
    pair.flush()
    assert len(results) == 1


def test_timeout_does_not_fire_after_the_response():
    pair = Pair()
    results = result_of(pair.client.request(Code.GET, hello(), timeout=5))
    pair.flush()
    assert success(results).code == Code.CONTENT
    pair.clock.advance(10)
    assert len(results) == 1
    # Only the connections' idle watchdogs remain; the request's timeout is gone.
    remaining = [call.func.__name__ for call in pair.clock.getDelayedCalls()]
    assert set(remaining) <= {"check"}  # Watchdog.check


def test_request_larger_than_base_mms_waits_for_peer_csm():
    h = Harness(None, role=Role.INITIATOR)
    sent_csm = h.sent()
    assert [m.code for m in sent_csm] == [Code.CSM]
    payload = b"x" * 2000
    results = result_of(h.protocol.request(Code.PUT, Options.build(uri_path=["store"]), payload))
    assert h.sent() == []  # held back: the peer's limit is not known yet
    assert h.channel.pending_requests == 1
    # A small request may go at once (RFC 8323: the initiator need not wait).
    small = result_of(h.protocol.request(Code.GET, hello()))
    (first,) = h.sent()
    assert first.code == Code.GET
    h.feed(csm(4096))
    (big,) = h.sent()
    assert big.code == Code.PUT
    assert big.payload == payload
    h.feed(Message(Code.CHANGED, big.token), Message(Code.CONTENT, first.token, payload=b"hi"))
    assert success(results).code == Code.CHANGED
    assert success(small).payload == b"hi"


def test_waiting_request_larger_than_peer_mms_fails_with_request_not_sent():
    h = Harness(None, role=Role.INITIATOR)
    h.sent()
    results = result_of(h.protocol.request(Code.PUT, Options(), b"y" * 2000))
    h.feed(csm(1500))
    failure(results, RequestNotSent)
    assert h.sent() == []
    assert h.channel.pending_requests == 0


def test_request_larger_than_peer_mms_fails_at_once():
    h = Harness(None, role=Role.INITIATOR)
    h.open(max_message_size=300)
    results = result_of(h.protocol.request(Code.PUT, Options(), b"z" * 400))
    f = failure(results, RequestNotSent)
    assert "300" in str(f.value)
    assert h.sent() == []
    assert h.channel.pending_requests == 0


def test_waiting_request_can_time_out():
    h = Harness(None, role=Role.INITIATOR)
    h.sent()
    results = result_of(h.protocol.request(Code.PUT, Options(), b"w" * 2000, timeout=3))
    h.clock.advance(3)
    failure(results, TimeoutError)
    assert h.channel.pending_requests == 0
    h.feed(csm(4096))
    assert h.sent() == []  # it is not sent after all


def test_base_mms_boundary():
    # A request of exactly 1152 bytes goes at once; one byte more waits.
    h = Harness(None, role=Role.INITIATOR)
    h.sent()
    size = h.channel.connection.encoded_size
    n = next(
        n
        for n in range(1000, 1200)
        if size(Message(Code.POST, b"\0" * 4, Options(), b"p" * n)) == BASE_MAX_MESSAGE_SIZE
    )
    h.protocol.request(Code.POST, Options(), b"p" * n)
    (sent,) = h.sent()
    assert len(sent.payload) == n
    h.protocol.request(Code.POST, Options(), b"p" * (n + 1))
    assert h.sent() == []
    assert h.channel.pending_requests == 2


def test_pending_request_fails_when_connection_is_lost():
    pair = Pair()
    results = result_of(
        pair.client.request(Code.GET, Options.build(uri_path=["echo"], uri_query=["q"]))
    )
    pair.flush()
    pair.server.transport.loseConnection()
    pair.flush()
    f = failure(results, ConnectionClosedError)
    assert f.value.reason
    assert pair.client.channel.pending_requests == 0


def test_request_after_connection_lost_fails_at_once():
    pair = Pair()
    pair.client.transport.loseConnection()
    pair.flush()
    results = result_of(pair.client.request(Code.GET, hello()))
    failure(results, ConnectionClosedError)
    pings = result_of(pair.client.ping())
    failure(pings, ConnectionClosedError)


def test_waiting_for_csm_request_fails_when_connection_is_lost():
    h = Harness(None, role=Role.INITIATOR)
    results = result_of(h.protocol.request(Code.PUT, Options(), b"v" * 3000))
    h.lose()
    failure(results, ConnectionClosedError)


def test_non_method_code_is_refused():
    pair = Pair()
    failure(result_of(pair.client.request(Code.CONTENT, hello())))
    assert pair.client.channel.pending_requests == 0


def test_server_side_can_send_requests_to_a_client_with_a_site():
    pair = Pair(client_site=Site(make_demo_site()))
    results = result_of(pair.server.request(Code.GET, hello()))
    pair.flush()
    assert success(results).payload == b"Hello, world!"


def test_server_side_request_to_client_without_site_gets_501():
    pair = Pair()
    results = result_of(pair.server.request(Code.GET, hello()))
    pair.flush()
    assert success(results).code == Code.NOT_IMPLEMENTED


def test_responses_go_back_on_each_connection():
    # Two clients on one server factory: each gets its own answer.
    clock = MemoryReactorClock()
    server_factory = CoapFactory(Site(make_demo_site()), reactor=clock)
    pairs = []
    for _ in range(2):
        client_factory = CoapFactory(role=Role.INITIATOR, reactor=clock)
        link = connected_pair(
            server_factory=server_factory, client_factory=client_factory, clock=clock
        )
        c, _s, pump = link.client, link.server, link.pump
        pairs.append((c, pump))
    assert len(server_factory.connections) == 2
    results = [result_of(c.request(Code.GET, hello())) for c, _ in pairs]
    for _, pump in pairs:
        pump.flush()
    assert [success(r).payload for r in results] == [b"Hello, world!"] * 2


@pytest.mark.parametrize("rtt", [0.0, 0.25, 3.5])
def test_ping_rtt_from_reactor_clock(rtt):
    pair = Pair()
    results = result_of(pair.client.ping())
    pair.clock.advance(rtt)
    pair.flush()
    assert success(results) == pytest.approx(rtt)
