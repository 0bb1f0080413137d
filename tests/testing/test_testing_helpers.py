"""coaptcp.testing on its own: what each helper promises in its docstring (the rest of
the suite uses them everywhere, so here only the edges)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock

from coaptcp import Code, Options, Site
from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.core.connection import Role
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import (
    HOST_ADDRESS,
    PEER_ADDRESS,
    FrameReader,
    Harness,
    RecordingTransport,
    connected_pair,
    csm,
    custody_ping,
    decode_all,
    failure,
    frames,
    get,
    join,
    result_of,
    success,
)
from coaptcp.transport.tcp import CoapFactory


def test_result_of_is_empty_until_the_deferred_fires() -> None:
    d: Deferred[int] = Deferred()
    results = result_of(d)
    assert results == []
    d.callback(7)
    assert success(results) == 7


def test_success_and_failure_fail_the_test_on_the_other_outcome() -> None:
    with pytest.raises(AssertionError):
        success(result_of(fail(ValueError("no"))))
    with pytest.raises(AssertionError):
        failure(result_of(succeed(1)))
    with pytest.raises(AssertionError):
        failure(result_of(fail(ValueError("no"))), KeyError)
    assert failure(result_of(fail(ValueError("no"))), KeyError, ValueError).check(ValueError)


def test_csm_options() -> None:
    assert list(csm().options) == []
    assert list(csm(4096, block_wise=True).options) == [(2, b"\x10\x00"), (4, b"")]
    assert custody_ping(b"p").code == Code.PING


def test_get_builds_path_query_and_extra_options() -> None:
    message = get(b"t", "a", "b", query=("x=1",), extra=[(17, 0)])
    assert (message.code, message.token) == (Code.GET, b"t")
    assert message.options.uri_path == ("a", "b")
    assert message.options.uri_query == ("x=1",)


def test_frame_reader_keeps_an_incomplete_frame_for_the_next_feed() -> None:
    data = frames(csm(), get(b"t", "hello"))
    reader = FrameReader()
    first = reader.feed(data[:-1])
    assert [m.code for m in first] == [Code.CSM] and reader.buffered > 0
    (second,) = reader.feed(data[-1:])
    assert second.token == b"t" and reader.buffered == 0
    with pytest.raises(AssertionError):
        decode_all(data[:-1])


def test_recording_transport_records_the_order_of_writes_and_closes() -> None:
    transport = RecordingTransport(hostAddress=HOST_ADDRESS, peerAddress=PEER_ADDRESS)
    transport.write(b"a")
    transport.writeSequence([b"b", b"c"])
    transport.loseConnection()
    transport.abortConnection()
    assert transport.calls == ["write", "write", "loseConnection", "abortConnection"]
    assert transport.value() == b"abc" and transport.aborted and transport.disconnected


def test_harness_plays_the_client_in_raw_frames() -> None:
    harness = Harness(make_demo_site())
    harness.open()
    harness.feed(get(b"h", "hello"))
    (answer,) = harness.sent()
    assert (answer.code, answer.token) == (Code.CONTENT, b"h")
    assert harness.sent() == []
    assert [m.code for m in harness.all_sent()] == [Code.CSM, Code.CONTENT]
    harness.lose()
    assert harness.channel.close_reason


def test_harness_takes_the_clock_of_a_given_factory() -> None:
    clock = MemoryReactorClock()
    harness = Harness(factory=CoapFactory(make_demo_site(), reactor=clock))
    assert harness.clock is clock


def test_connected_pair_greets_and_answers_on_flush() -> None:
    pair = connected_pair(Site(make_demo_site()))
    assert pair.client.channel.connection.peer_csm_received
    assert pair.server.channel.connection.peer_csm_received
    results = result_of(pair.request(Code.GET, "hello"))
    assert results == [] and [m.code for m in pair.client_output()] == [Code.GET]
    assert pair.flush()
    assert success(results).payload == b"Hello, world!"
    assert not pair.flush()


def test_connected_pair_drop_fails_what_is_pending() -> None:
    pair = connected_pair(Site(make_demo_site()), greet=False)
    results = result_of(pair.client.request(Code.GET, Options.build(uri_path=["hello"])))
    pair.drop()
    assert pair.closed
    failure(results, ConnectionClosedError)


def test_join_takes_protocols_built_elsewhere() -> None:
    clock = MemoryReactorClock()
    server = CoapFactory(make_demo_site(), reactor=clock).buildProtocol(PEER_ADDRESS)
    client = CoapFactory(reactor=clock, role=Role.INITIATOR).buildProtocol(HOST_ADDRESS)
    link = join(server, client, clock=clock, greet=False)
    assert [m.code for m in link.server_output()] == [Code.CSM]
    link.flush()
    assert link.server_output() == [] and link.client_output() == []
