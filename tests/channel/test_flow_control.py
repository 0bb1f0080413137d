"""Flow control in the Channel: what one peer's reads may cost (issue 12).

A transport here holds what is written until the test drains it, and pauses its producer
once it holds more than its high-water mark, from within ``write``, as Twisted's
``FileDescriptor`` does.  So a peer that never reads is a transport never drained.
"""

from __future__ import annotations

from typing import Any

from sites import slow_site
from twisted.internet.testing import MemoryReactorClock

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options, PingPongOption
from coaptcp.server.request import Response
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import (
    HOST_ADDRESS,
    PEER_ADDRESS,
    Harness,
    RecordingTransport,
    csm,
    custody_ping,
    decode_all,
    frames,
    get,
)

HIGH_WATER = 65536  # Twisted's FileDescriptor.bufferSize


class SlowReaderTransport(RecordingTransport):
    """Holds output until :meth:`drain`; pauses the producer above ``HIGH_WATER``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unread = 0
        self.peak = 0
        self.reading = True
        self.read_log: list[bool] = []
        self._producer_paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self.unread += len(data)
        self.peak = max(self.peak, self.unread)
        if self.unread > HIGH_WATER and not self._producer_paused and self.producer:
            self._producer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> list[Message]:
        """The peer reads all we wrote: the buffer empties, the producer resumes.
        Returns the messages read."""
        read = decode_all(self.value())
        self.clear()
        self.unread = 0
        if self._producer_paused and self.producer:
            self._producer_paused = False
            self.producer.resumeProducing()
        return read

    def unread_messages(self) -> list[Message]:
        return decode_all(self.value())

    # reading from the transport, as the protocol turns it on and off
    def pauseProducing(self) -> None:
        self.reading = False
        self.read_log.append(False)

    def resumeProducing(self) -> None:
        self.reading = True
        self.read_log.append(True)


def slow_reader(site: Any, **kwargs: Any) -> Any:
    transport = SlowReaderTransport(hostAddress=HOST_ADDRESS, peerAddress=PEER_ADDRESS)
    return Harness(site, transport=transport, **kwargs)


def one_turn(clock: MemoryReactorClock) -> None:
    """Run the calls due now, not those they schedule (one reactor turn)."""
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = True
        call.func(*call.args, **call.kw)


def many_gets(count: int, path: str = "hello") -> bytes:
    return frames(*(get(n.to_bytes(2, "big"), path) for n in range(count)))


def tokens(messages: list[Message]) -> list[int]:
    return [int.from_bytes(m.token, "big") for m in messages]


# -- a budget per read: the rest waits for later reactor turns ----------------------------


def test_one_read_is_processed_within_its_budget_and_the_rest_in_later_turns():
    h = Harness(Site(make_demo_site()), limits=Limits(messages_per_read=10))
    h.open()
    h.feed_bytes(many_gets(35), turns=False)
    assert tokens(h.sent()) == list(range(10))
    assert h.transport.producerState == "paused"  # no more reading while a backlog waits
    for turn in range(1, 4):
        one_turn(h.clock)
        assert tokens(h.sent()) == list(range(10 * turn, min(35, 10 * turn + 10)))
    assert h.transport.producerState == "producing"
    assert not h.channel.input_backlog


def test_a_ping_flood_costs_one_budget_per_turn_and_requests_after_it_are_answered():
    h = Harness(Site(make_demo_site()), limits=Limits(messages_per_read=64))
    h.open()
    pings = b"".join(encode_frame(Message(Code.PING, n.to_bytes(2, "big"))) for n in range(1000))
    h.feed_bytes(pings + encode_frame(get(b"g", "hello")), turns=False)
    first = h.sent()
    assert [m.code for m in first] == [Code.PONG] * 64
    h.clock.advance(0)
    rest = h.sent()
    assert tokens([m for m in first + rest if m.code == Code.PONG]) == list(range(1000))
    assert (rest[-1].code, rest[-1].token) == (Code.CONTENT, b"g")


def test_data_arriving_while_a_backlog_waits_is_kept_in_order():
    h = Harness(Site(make_demo_site()), limits=Limits(messages_per_read=4))
    h.open()
    data = many_gets(12)
    h.feed_bytes(data[:100], turns=False)  # some whole requests and a partial one
    h.feed_bytes(data[100:], turns=False)  # what the transport still delivers
    h.clock.advance(0)
    assert tokens(h.sent()) == list(range(12))


def test_a_backlog_does_not_count_as_a_slow_frame():
    h = Harness(
        Site(make_demo_site()), limits=Limits(messages_per_read=1, frame_timeout=30)
    )
    h.open()
    h.protocol.channel.pause()  # the peer reads nothing: the backlog waits long
    h.feed_bytes(many_gets(3), turns=False)
    h.clock.advance(31)
    assert not h.transport.disconnecting
    h.protocol.channel.resume()
    h.clock.advance(0)
    assert [m.code for m in h.sent()] == [Code.CONTENT] * 3


# -- output bound: a peer that does not read stops being served --------------------------


def test_pipelined_large_answers_stop_at_the_high_water_mark_and_go_on_as_the_peer_reads():
    h = slow_reader(Site(make_demo_site()))
    h.feed(csm(4 * 1024 * 1024))  # big answers allowed: /big (1 MiB) goes whole
    h.transport.drain()
    h.feed_bytes(many_gets(100, "big"))
    # One answer of 1 MiB fills the buffer: the 99 others wait, unprocessed.
    answered = h.transport.unread_messages()
    assert tokens(answered) == [0]
    assert not h.transport.reading
    h.clock.advance(1)
    assert len(h.transport.unread_messages()) == 1
    for expected in range(1, 100):
        assert len(h.transport.drain()) == 1
        h.clock.advance(0)
        answered += h.transport.unread_messages()
        assert len(answered) == 1 + expected
    assert tokens(answered) == list(range(100))
    assert h.transport.peak < HIGH_WATER + 1024 * 1024 + 4096
    h.transport.drain()
    h.clock.advance(0)
    assert h.transport.reading


def test_small_answers_stop_once_the_buffer_is_full():
    # Small answers are written once per turn: a turn's budget of them at most goes
    # beyond the high-water mark before processing stops.
    budget = Limits().messages_per_read
    h = slow_reader(Site(make_demo_site()))
    h.open()
    h.transport.drain()
    h.feed_bytes(many_gets(4000, "large"))  # 4,000 bytes each: Block2 blocks of 1 KiB
    assert HIGH_WATER < h.transport.unread <= HIGH_WATER + budget * 1200
    assert not h.transport.reading
    answered = len(h.transport.unread_messages())
    h.clock.advance(30)
    assert len(h.transport.unread_messages()) == answered  # nothing more until read
    total = 0
    while total < 4000:
        total += len(h.transport.drain())
        h.clock.advance(0)
    assert total == 4000
    assert h.transport.peak <= HIGH_WATER + budget * 1200 * 2


def test_a_peer_that_reads_nothing_for_the_write_timeout_is_aborted_and_its_observations_freed():
    clock = MemoryReactorClock()
    site = make_demo_site(reactor=clock)
    h = slow_reader(Site(site), clock=clock, limits=Limits(write_timeout=60))
    h.feed(csm(4 * 1024 * 1024))
    time = site.children["time"]
    h.feed(Message(Code.GET, b"o", Options.build(uri_path=["time"], observe=0)))
    assert time.observer_count == 1
    h.feed(get(b"b", "big"))  # 1 MiB nobody reads
    assert not h.transport.disconnecting
    clock.advance(59)
    assert not h.transport.disconnecting
    clock.advance(2)
    assert h.transport.disconnecting
    assert time.observer_count == 0
    abort = decode_all(h.transport.value())[-1]
    assert abort.code == Code.ABORT
    assert abort.payload == b"you read nothing of our output for 60 s"


def test_a_peer_that_reads_in_time_is_not_aborted():
    h = slow_reader(Site(make_demo_site()), limits=Limits(write_timeout=60))
    h.feed(csm(4 * 1024 * 1024))
    for _ in range(5):
        h.feed(get(b"b", "big"))
        h.clock.advance(50)
        h.transport.drain()
    assert not h.transport.disconnecting


# -- Custody Pings: bounded, released in order -------------------------------------------


def test_custody_pings_behind_a_slow_request_are_bounded_and_released_in_order():
    site, slow = slow_site()
    h = Harness(site, limits=Limits(max_custody_pings=8, messages_per_read=10_000))
    h.open()
    h.feed(get(b"s", "slow"), *(custody_ping(n.to_bytes(2, "big")) for n in range(20)))
    early = h.sent()
    # Beyond the bound, Pongs go at once and without Custody (they promise nothing).
    assert tokens(early) == list(range(8, 20))
    assert all(PingPongOption.CUSTODY not in m.options for m in early)
    slow.waiting[0].callback(Response.text("done"))
    late = h.sent()
    assert late[0].code == Code.CONTENT
    assert tokens(late[1:]) == list(range(8))
    assert all(PingPongOption.CUSTODY in m.options for m in late[1:])


def test_custody_waits_only_for_the_requests_before_it():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"a", "slow"), custody_ping(b"p1"), get(b"b", "slow"), custody_ping(b"p2"))
    assert h.sent() == []
    slow.waiting[1].callback(Response.text("b"))  # b answered, a still out: nothing yet
    assert [m.token for m in h.sent()] == [b"b"]
    slow.waiting[0].callback(Response.text("a"))
    assert [m.token for m in h.sent()] == [b"a", b"p1", b"p2"]


# -- half-close and the end of a Release ---------------------------------------------------


def test_requests_before_a_fin_are_answered_then_the_connection_closes():
    h = Harness(Site(make_demo_site()), limits=Limits(messages_per_read=64))
    h.open()
    h.feed_bytes(many_gets(2000), turns=False)
    h.protocol.readConnectionLost()
    assert not h.transport.disconnecting  # the backlog is still being answered
    h.clock.advance(0)
    assert tokens(h.sent()) == list(range(2000))
    assert h.transport.disconnecting


def test_a_request_in_progress_at_a_fin_is_answered_before_the_close():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"s", "slow"))
    h.protocol.readConnectionLost()
    assert not h.transport.disconnecting
    slow.waiting[0].callback(Response.text("late"))
    (answer,) = h.sent()
    assert (answer.token, answer.payload) == (b"s", b"late")
    assert h.transport.disconnecting


def test_renders_still_running_when_the_release_time_is_up_are_answered_5_03():
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"s", "slow"))
    h.protocol.release("server shutting down")
    (release,) = h.sent()
    assert release.code == Code.RELEASE
    h.clock.advance(10)
    (answer,) = h.sent()
    assert (answer.code, answer.token, answer.payload) == (
        Code.SERVICE_UNAVAILABLE,
        b"s",
        b"shutting down",
    )
    assert h.transport.disconnecting
    slow.waiting[0].callback(Response.text("too late"))  # dropped: answered already
    assert h.sent() == []
