"""The Client in memory: URIs to options, pooling, pipelining, idle release, keepalive,
connection loss, timeouts and cancellation (RFC 8323 sections 3.3, 3.4, 5.4, 5.5, 8)."""

from __future__ import annotations

import pytest
from client_helpers import MemoryNetwork, make_client
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionRefusedError

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.client import (
    Client,
    ClientClosed,
    ConnectFailed,
    RequestTimeout,
    SchemeNotAvailable,
    parse_method,
)
from coaptcp.client.connectors import ConnectOptions, TlsOptions
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.uri import UriError
from coaptcp.server.request import Response
from coaptcp.testing import decode_all, failure, result_of, success

HELLO = "coap+tcp://127.0.0.1/hello"


def test_request_by_uri_returns_the_response() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.request("GET", HELLO))
    network.flush()
    response = success(results)
    assert isinstance(response, Response)
    assert response.code == Code.CONTENT
    assert response.payload == b"Hello, world!"
    host, port = network.attempts[0][1:3]
    assert (host, port) == ("127.0.0.1", 5683)


def test_uri_options_reach_the_server() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    success_results = result_of(client.request("GET", "coap+tcp://127.0.0.1:9999/seen?a=1&b%20c"))
    network.flush()
    success(success_results)
    request = network.seen.requests[-1]
    assert request.path == ("seen",)
    assert request.query == ("a=1", "b c")
    # An IP literal equal to the destination gives no Uri-Host; the port is the
    # destination port, so no Uri-Port either (RFC 7252 section 6.4 steps 5 and 7).
    assert OptionNumber.URI_HOST not in request.options
    assert OptionNumber.URI_PORT not in request.options


def test_a_host_name_is_sent_as_uri_host() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.request("GET", "coap+tcp://Sensor.Example/seen"))
    network.flush()
    success(results)
    assert network.attempts[0][1] == "sensor.example"
    assert network.seen.requests[-1].options.uri_host == "sensor.example"
    assert OptionNumber.URI_PORT not in network.seen.requests[-1].options


def test_websocket_scheme_sends_no_uri_host_for_its_host_header() -> None:
    # RFC 8323 section 8.4: over WebSockets the default Uri-Host is the Host header.
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.request("GET", "coap+ws://example.org/seen?u=Cel"))
    network.flush()
    success(results)
    assert network.attempts[0][1:3] == ("example.org", 80)
    request = network.seen.requests[-1]
    assert OptionNumber.URI_HOST not in request.options
    assert request.query == ("u=Cel",)


def test_explicit_options_replace_the_uri_ones_and_add_others() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    given = Options([(OptionNumber.URI_HOST, "virtual.example"), (OptionNumber.ACCEPT, 0)])
    results = result_of(client.request("GET", HELLO.replace("hello", "seen"), options=given))
    network.flush()
    success(results)
    request = network.seen.requests[-1]
    assert request.options.uri_host == "virtual.example"
    assert request.options.accept == 0
    assert request.path == ("seen",)


def test_options_as_pairs_and_payload() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(
        client.request("post", "coap+tcp://127.0.0.1/seen", b"body", options=[(12, 42)])
    )
    network.flush()
    response = success(results)
    assert response.code == Code.CHANGED
    assert response.payload == b"body"
    assert network.seen.requests[-1].content_format == 42


def test_csm_and_first_request_leave_together() -> None:
    # RFC 8323 section 3.3: the initiator sends its CSM and may send requests at once,
    # without waiting for the peer's CSM.
    network = MemoryNetwork()
    client = make_client(network)
    result_of(client.request("GET", HELLO))
    link = network.links[0]
    written = link.client_output()
    assert [m.code for m in written] == [Code.CSM, Code.GET]
    assert written[1].options.uri_path == ("hello",)


def test_requests_to_one_endpoint_share_one_connection() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    for path in ("hello", "info", "hello"):
        results = result_of(client.request("GET", f"coap+tcp://127.0.0.1/{path}"))
        network.flush()
        assert success(results).code == Code.CONTENT
    assert len(network.links) == 1
    assert client.connections_made == 1
    assert client.open_endpoints == ["coap+tcp://127.0.0.1:5683"]


def test_equivalent_uris_share_a_connection() -> None:
    # RFC 7252 section 6.3: case of scheme and host, the default port and %-escapes of
    # unreserved characters do not change the endpoint.
    network = MemoryNetwork()
    client = make_client(network)
    for uri in ("coap+tcp://127.0.0.1/hello", "COAP+TCP://127.0.0.1:5683/%68ello",
                "coap+tcp://127.0.0.1:/hello"):
        results = result_of(client.request("GET", uri))
        network.flush()
        assert success(results).payload == b"Hello, world!"
    assert len(network.links) == 1


def test_different_endpoints_get_their_own_connections() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    uris = ["coap+tcp://127.0.0.1/hello", "coap+tcp://127.0.0.1:5684/hello",
            "coap+tcp://localhost/hello", "coap+ws://127.0.0.1/hello"]
    for uri in uris:
        results = result_of(client.request("GET", uri))
        network.flush()
        success(results)
    assert len(network.links) == 4
    assert sorted(client.open_endpoints) == sorted(
        ["coap+tcp://127.0.0.1:5683", "coap+tcp://127.0.0.1:5684",
         "coap+tcp://localhost:5683", "coap+ws://127.0.0.1:80"]
    )


def test_requests_made_while_connecting_are_pipelined_on_one_connection() -> None:
    network = MemoryNetwork()
    network.hold = True
    client = make_client(network)
    calls = [result_of(client.request("GET", f"coap+tcp://127.0.0.1/held?n={i}"))
             for i in range(10)]
    assert len(network.attempts) == 1  # one connection attempt for all ten
    network.complete()
    network.flush()
    assert len(network.held.waiting) == 10  # all ten in flight at the server at once
    assert all(results == [] for results in calls)
    tokens = {request.token for request, _ in network.held.waiting}
    assert len(tokens) == 10
    for _ in range(10):
        network.held.answer(-1)  # answer in reverse order
    network.flush()
    for i, results in enumerate(calls):
        assert success(results).payload == f"n={i}".encode()
    assert len(network.links) == 1


def test_many_requests_in_flight_on_an_open_connection() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    calls = [result_of(client.request("GET", f"coap+tcp://127.0.0.1/held?{i}"))
             for i in range(50)]
    network.flush()
    assert len(network.held.waiting) == 50
    while network.held.waiting:
        network.held.answer(len(network.held.waiting) // 2)
    network.flush()
    assert [success(r).payload for r in calls] == [str(i).encode() for i in range(50)]
    assert len(network.links) == 1


def test_peer_max_message_size_is_respected() -> None:
    network = MemoryNetwork()
    network.server_max_message_size = 200  # the server's CSM says so
    client = make_client(network)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    assert network.links[0].client.channel.connection.peer.max_message_size == 200
    # Too large for one message to this peer: sent in Block1 blocks that fit (RFC 7959).
    big = result_of(client.request("POST", "coap+tcp://127.0.0.1/seen", b"x" * 300))
    network.flush()
    assert success(big).payload == b"x" * 300
    assert network.seen.requests[-1].options.block1 is not None
    # Options alone larger than the peer's limit cannot be cut: RequestNotSent.
    long_query = result_of(client.request("GET", "coap+tcp://127.0.0.1/seen?" + "q" * 250))
    failure(long_query, RequestNotSent)
    small = result_of(client.request("POST", "coap+tcp://127.0.0.1/seen", b"x" * 100))
    network.flush()
    assert success(small).code == Code.CHANGED


# -- idle release --------------------------------------------------------------------------


def test_idle_connection_is_released_then_closed() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=30, keepalive=None)
    results = result_of(client.request("GET", HELLO))
    network.flush()
    success(results)
    link = network.links[0]
    network.clock.advance(29.9)
    network.flush()
    assert not link.closed
    assert link.client_output() == []
    network.clock.advance(0.1)
    assert [m.code for m in link.client_output()] == [Code.RELEASE]
    network.flush()
    assert link.closed
    assert client.open_endpoints == []
    again = result_of(client.request("GET", HELLO))
    network.flush()
    assert success(again).payload == b"Hello, world!"
    assert len(network.links) == 2


def test_requests_keep_a_connection_from_idling_out() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=30, keepalive=None)
    for _ in range(5):
        results = result_of(client.request("GET", HELLO))
        network.flush()
        success(results)
        network.clock.advance(20)
        network.flush()
    assert len(network.links) == 1
    assert not network.links[0].closed


def test_a_slow_request_is_not_idle() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=30, keepalive=None)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/held"))
    network.flush()
    network.clock.advance(100)
    network.flush()
    assert not network.links[0].closed
    network.held.answer(0)
    network.flush()
    assert success(results).code == Code.CONTENT
    network.clock.advance(30)
    network.flush()
    assert network.links[0].closed


def test_idle_timeout_none_keeps_connections() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=None, keepalive=None)
    results = result_of(client.request("GET", HELLO))
    network.flush()
    success(results)
    network.clock.advance(10_000)
    network.flush()
    assert not network.links[0].closed


# -- keepalive and dead connections ------------------------------------------------------------


def test_silence_brings_a_ping_and_a_pong_keeps_the_connection() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=None, keepalive=15, ping_timeout=5)
    results = result_of(client.request("GET", HELLO))
    network.flush()
    success(results)
    link = network.links[0]
    assert link.client_output() == []
    network.clock.advance(15)
    assert [m.code for m in link.client_output()] == [Code.PING]
    network.flush()
    network.clock.advance(5)
    network.flush()
    assert not link.closed
    again = result_of(client.request("GET", HELLO))
    network.flush()
    success(again)
    assert len(network.links) == 1


def test_a_dead_peer_fails_requests_in_flight_and_is_replaced() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=None, keepalive=15, ping_timeout=5)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    link = network.links[0]
    link.freeze()
    stuck = result_of(client.request("GET", HELLO))  # no timeout of its own
    network.flush()
    network.clock.advance(15)  # silence: a Ping goes out
    network.flush()
    assert stuck == []
    network.clock.advance(5)  # no Pong: the connection is dropped
    network.flush()
    error = failure(stuck, ConnectionClosedError).value
    assert "coap+tcp://127.0.0.1:5683" in str(error)
    assert "no Pong within 5 s" in str(error)
    assert link.closed
    written = [m.code for m in decode_all(link.from_client)]
    assert written == [Code.GET, Code.PING, Code.ABORT]
    # The next request opens a new connection and succeeds.
    again = result_of(client.request("GET", HELLO))
    network.flush()
    assert success(again).payload == b"Hello, world!"
    assert len(network.links) == 2


def test_dead_idle_connection_is_replaced_on_the_next_request() -> None:
    network = MemoryNetwork()
    client = make_client(network, idle_timeout=None, keepalive=15, ping_timeout=5)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    network.links[0].freeze()
    network.clock.advance(15)  # a Ping
    network.flush()
    network.clock.advance(5)  # no Pong
    network.flush()
    assert network.links[0].closed
    assert client.open_endpoints == []
    again = result_of(client.request("GET", HELLO))
    network.flush()
    assert success(again).code == Code.CONTENT
    assert len(network.links) == 2


def test_connection_lost_fails_requests_in_flight_with_a_clear_error() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    calls = [result_of(client.request("GET", f"coap+tcp://127.0.0.1/held?{i}")) for i in range(3)]
    network.flush()
    assert len(network.held.waiting) == 3
    network.links[0].drop()
    for results in calls:
        error = failure(results, ConnectionClosedError).value
        assert str(error).startswith("coap+tcp://127.0.0.1:5683: connection")
    again = result_of(client.request("GET", HELLO))
    network.flush()
    assert success(again).code == Code.CONTENT
    assert len(network.links) == 2


def test_peer_release_makes_the_next_request_use_a_new_connection() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    network.links[0].server.release("going away")
    network.flush()
    again = result_of(client.request("GET", HELLO))
    network.flush()
    assert success(again).code == Code.CONTENT
    assert len(network.links) == 2
    assert network.links[0].closed


def test_peer_abort_fails_requests_in_flight() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    pending = result_of(client.request("GET", "coap+tcp://127.0.0.1/held"))
    network.flush()
    network.links[0].server.abort("overloaded")
    network.flush()
    error = failure(pending, ConnectionClosedError).value
    assert "overloaded" in str(error)


# -- connecting ----------------------------------------------------------------------------------


def test_refused_connection_fails_every_waiting_request() -> None:
    network = MemoryNetwork()
    network.hold = True
    client = make_client(network)
    calls = [result_of(client.request("GET", HELLO)) for _ in range(3)]
    network.fail_held(ConnectionRefusedError())
    for results in calls:
        error = failure(results, ConnectFailed).value
        assert str(error) == "cannot connect to coap+tcp://127.0.0.1:5683: connection refused"
    network.hold = False
    again = result_of(client.request("GET", HELLO))  # a new attempt, not a cached failure
    network.flush()
    success(again)
    assert len(network.attempts) == 2


def test_refused_at_once() -> None:
    network = MemoryNetwork()
    network.refuse = True
    client = make_client(network)
    results = result_of(client.request("GET", HELLO))
    assert isinstance(failure(results, ConnectFailed).value, ConnectFailed)


def test_a_connector_that_raises_is_a_connect_failure() -> None:
    def broken(reactor, host, port, options):
        raise OSError("no route to host")

    client = Client(MemoryNetwork().clock, connectors={"coap+tcp": broken})
    error = failure(result_of(client.request("GET", HELLO)), ConnectFailed).value
    assert "no route to host" in str(error)


def test_connect_options_reach_the_connector() -> None:
    network = MemoryNetwork()
    tls = TlsOptions(cafile="/ca.pem", insecure=False)
    options = ConnectOptions(max_message_size=5000, connect_timeout=3)
    client = make_client(network, connect_options=options, tls=tls)
    result_of(client.request("GET", HELLO))
    given = network.attempts[0][3]
    assert given.max_message_size == 5000
    assert given.connect_timeout == 3
    assert given.tls is tls
    assert network.attempts[0][0] is network.clock


def test_every_scheme_has_a_real_connector_by_default() -> None:
    from coaptcp.client import connectors
    from coaptcp.client.dtls import DtlsConnector
    from coaptcp.client.udp import UdpConnector

    made = dict(connectors.default_connectors())
    assert isinstance(made.pop("coap"), UdpConnector)
    assert isinstance(made.pop("coaps"), DtlsConnector)
    assert made == {
        "coap+tcp": connectors.tcp_connector,
        "coaps+tcp": connectors.tls_connector,
        "coap+ws": connectors.ws_connector,
        "coaps+ws": connectors.wss_connector,
    }


def test_a_scheme_left_out_fails_clearly_and_is_not_pooled() -> None:
    from coaptcp.client.connectors import scheme_not_available

    client = Client(MemoryNetwork().clock, connectors={
        "coaps+tcp": scheme_not_available("coaps+tcp", "not in this build"),
        "coaps+ws": scheme_not_available("coaps+ws", "not in this build"),
    })
    for uri in ("coaps+tcp://127.0.0.1/x", "coaps+ws://h/x"):
        error = failure(result_of(client.request("GET", uri)), SchemeNotAvailable).value
        assert "not available yet" in str(error)
        assert uri.split(":")[0] in str(error)
    # and it is not cached as a connection
    assert client.open_endpoints == []


def test_connectors_for_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schemes"):
        Client(MemoryNetwork().clock, connectors={"http": lambda *a: None})


def test_bad_uri_and_method_fail_without_connecting() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    failure(result_of(client.request("GET", "coap+tcp://h/#frag")), UriError)
    failure(result_of(client.request("GET", "http://h/")), UriError)
    failure(result_of(client.request("BREW", HELLO)), ValueError)
    failure(result_of(client.request(Code.CONTENT, HELLO)), ValueError)
    failure(result_of(client.ping("coap+udp://h")), UriError)
    assert network.attempts == []


def test_bad_arguments_fail_as_documented_without_connecting() -> None:
    # docs/client.md: a bad argument is a ValueError (a wrong payload type a TypeError),
    # failed before anything is sent; -1 s used to trip Twisted's callLater assertion
    # after the request had already started.
    network = MemoryNetwork()
    client = make_client(network)
    for seconds in (-1, float("nan"), float("-inf")):
        error = failure(result_of(client.request("GET", HELLO, timeout=seconds)), ValueError)
        assert "timeout" in str(error.value)
        failure(result_of(client.ping(HELLO, timeout=seconds)), ValueError)
        with pytest.raises(ValueError, match="timeout"):
            client.observe(HELLO, timeout=seconds)
    error = failure(result_of(client.request("GET", HELLO, options=[(99999, b"")])), ValueError)
    assert "option number 99999" in str(error.value)
    error = failure(result_of(client.request("PUT", HELLO, "text")), TypeError)  # type: ignore[arg-type]
    assert "the payload is bytes, not str" in str(error.value)
    network.flush()
    assert network.attempts == []
    assert network.clock.getDelayedCalls() == []
    for name in ("timeout", "idle_timeout", "keepalive", "ping_timeout"):
        with pytest.raises(ValueError, match=name):
            Client(network.clock, **{name: -1})


def test_parse_method() -> None:
    assert parse_method("get") is Code.GET
    assert parse_method("iPATCH") is Code.IPATCH
    assert parse_method(Code.FETCH) is Code.FETCH
    assert parse_method(2) is Code.POST
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("ping")


# -- timeouts and cancellation -----------------------------------------------------------------


def test_timeout_fires_and_frees_the_token() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/held", timeout=2))
    network.flush()
    channel = network.links[0].client.channel
    assert channel.pending_requests == 1
    network.clock.advance(1.9)
    assert results == []
    network.clock.advance(0.1)
    error = failure(results, RequestTimeout, TimeoutError).value
    assert str(error) == "no response from coap+tcp://127.0.0.1:5683 within 2 s"
    assert channel.pending_requests == 0
    network.held.answer(0)  # the late response is ignored
    network.flush()
    assert len(results) == 1


def test_default_timeout_from_the_client() -> None:
    network = MemoryNetwork()
    client = make_client(network, timeout=7)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/held"))
    network.flush()
    network.clock.advance(7)
    failure(results, RequestTimeout)


def test_timeout_counts_the_connection_set_up() -> None:
    network = MemoryNetwork()
    network.hold = True
    client = make_client(network)
    results = result_of(client.request("GET", HELLO, timeout=3))
    network.clock.advance(3)
    failure(results, RequestTimeout)
    # The attempt itself goes on; a later request uses it when it completes.
    later = result_of(client.request("GET", HELLO))
    network.complete()
    network.flush()
    success(later)
    assert len(network.attempts) == 1


def test_cancel_frees_the_token() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    d = client.request("GET", "coap+tcp://127.0.0.1/held")
    results = result_of(d)
    network.flush()
    channel = network.links[0].client.channel
    assert channel.pending_requests == 1
    d.cancel()
    failure(results, CancelledError)
    assert channel.pending_requests == 0


def test_cancel_while_connecting() -> None:
    network = MemoryNetwork()
    network.hold = True
    client = make_client(network)
    d = client.request("GET", HELLO)
    results = result_of(d)
    d.cancel()
    failure(results, CancelledError)
    network.complete()
    network.flush()
    assert network.links[0].client.channel.pending_requests == 0


# -- ping ------------------------------------------------------------------------------------


def test_ping_reports_the_round_trip_time() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.ping("coap+tcp://127.0.0.1/any/path"))
    sent = network.links[0].client_output()
    assert [m.code for m in sent] == [Code.CSM, Code.PING]
    network.clock.advance(0.25)
    network.flush()
    assert success(results) == pytest.approx(0.25)
    assert len(network.links) == 1


def test_ping_times_out_against_a_dead_peer() -> None:
    network = MemoryNetwork()
    client = make_client(network, ping_timeout=2)
    first = result_of(client.request("GET", HELLO))
    network.flush()
    success(first)
    network.links[0].freeze()
    results = result_of(client.ping("coap+tcp://127.0.0.1"))
    network.clock.advance(2)
    error = failure(results, RequestTimeout).value
    assert str(error) == "no Pong from coap+tcp://127.0.0.1:5683 within 2 s"


# -- coroutines and closing -------------------------------------------------------------------


def test_coroutine_forms() -> None:
    network = MemoryNetwork()
    client = make_client(network)

    async def go() -> tuple[bytes, float]:
        response = await client.arequest("GET", HELLO)
        rtt = await client.aping(HELLO)
        return response.payload, rtt

    results = result_of(Deferred.fromCoroutine(go()))
    network.flush()
    payload, rtt = success(results)
    assert payload == b"Hello, world!"
    assert rtt >= 0


def test_close_releases_every_connection() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    for uri in (HELLO, "coap+tcp://localhost/hello"):
        results = result_of(client.request("GET", uri))
        network.flush()
        success(results)
    closed = result_of(client.close())
    for link in network.links:
        assert link.client_output()[-1].code == Code.RELEASE
    network.flush()
    assert success(closed) is None
    assert all(link.closed for link in network.links)
    failure(result_of(client.request("GET", HELLO)), ClientClosed)


def test_close_waits_for_requests_in_flight() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    pending = result_of(client.request("GET", "coap+tcp://127.0.0.1/held?x"))
    network.flush()
    closed = result_of(client.close())
    network.flush()
    assert closed == []
    network.held.answer(0)
    network.flush()
    assert success(pending).payload == b"x"
    assert success(closed) is None


def test_close_abandons_connection_attempts() -> None:
    network = MemoryNetwork()
    network.hold = True
    client = make_client(network)
    pending = result_of(client.request("GET", HELLO))
    closed = result_of(client.close())
    assert success(closed) is None
    assert isinstance(failure(pending, ClientClosed).value, ClientClosed)


def test_connection_for_and_request_options() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    assert client.connection_for(HELLO) is None
    results = result_of(client.request("GET", HELLO))
    network.flush()
    success(results)
    connection = client.connection_for("coap+tcp://127.0.0.1:5683/other")
    assert connection is network.links[0].client
    options = client.request_options("coap+tcp://example.com/a?b", options=[(17, 50)])
    assert options == Options([(3, "example.com"), (11, "a"), (15, "b"), (17, 50)])


def test_server_requests_to_the_client_get_5_01() -> None:
    # RFC 8323 section 3.3: either side may send requests; the client serves nothing.
    network = MemoryNetwork()
    client = make_client(network)
    results = result_of(client.request("GET", HELLO))
    network.flush()
    success(results)
    server = network.links[0].server
    answer = result_of(server.request(Code.GET, Options.build(uri_path=["x"])))
    network.flush()
    assert success(answer).code == Code.NOT_IMPLEMENTED

