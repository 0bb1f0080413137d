"""Abandoned Block1 uploads (issue 12, item 2): expiry on the reactor's clock and the byte
budgets, through CoapProtocol over a StringTransport on a MemoryReactorClock.

A partial upload is dropped ``upload_timeout`` seconds after its last block, whatever else
the peer sends (Pings, other requests); a later block gets 4.08 (RFC 7959 section 2.9.2).
The bytes of a connection's partial uploads count against its own budget and against the
factory's, shared by all its connections; a block past either gets 5.03 with Max-Age, and
the refusal is logged once (per connection, per server episode).  Every ending gives the
bytes back: completion, expiry, the connection lost mid-upload, an Abort either way, a
Release.
"""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from coaptcp.channel.channel import Channel
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.core.blockwise import (
    DEFAULT_MAX_CONNECTION_UPLOAD_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_UPLOAD_LIFETIME,
    UPLOAD_RETRY_AFTER,
    Block,
    UploadBudget,
)
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, get
from coaptcp.transport.tcp import CoapFactory

KIB = 1024


def factory_with(clock: MemoryReactorClock, **limits: float) -> CoapFactory:
    return CoapFactory(
        make_demo_site(clock), reactor=clock, limits=Limits(**limits), max_body_size=64 * KIB
    )


def opened(factory: CoapFactory) -> Harness:
    h = Harness(factory=factory)
    h.open()
    return h


def part(token: bytes, num: int, *, tag: int = 1, more: bool = True, size: int = KIB
         ) -> Message:
    """Block ``num`` (1024 bytes) of the upload to /store with Request-Tag ``tag``."""
    options = Options(
        [
            (OptionNumber.URI_PATH, "store"),
            (OptionNumber.BLOCK1, Block(num, more, 6).encode()),
            (292, bytes([tag])),  # Request-Tag (RFC 9175): concurrent uploads
        ]
    )
    return Message(Code.PUT, token, options, b"u" * size)  # type: ignore[arg-type]


def codes(h: Harness) -> list[Code]:
    return [m.code for m in h.sent()]


def upload_timers(clock: MemoryReactorClock, channel: Channel) -> list:
    return [
        c for c in clock.getDelayedCalls()
        if getattr(c.func, "__func__", None) is Channel._uploads_timed_out
        and c.func.__self__ is channel
    ]


def warnings(events: list) -> list[str]:
    return [formatEvent(e) for e in events if "5.03 to Block1 uploads" in formatEvent(e)]


# -- expiry on the clock -------------------------------------------------------------------


def test_an_abandoned_upload_expires_although_the_peer_keeps_pinging() -> None:
    clock = MemoryReactorClock()
    factory = factory_with(clock, upload_timeout=60.0, idle_timeout=45.0)
    h = opened(factory)
    h.feed(part(b"a", 0), part(b"b", 1))
    assert codes(h) == [Code.CONTINUE, Code.CONTINUE]
    assert factory.upload_budget.held == 2 * KIB
    # A Ping before each idle timeout, and other requests: none of it touches the upload.
    for _ in range(5):
        clock.advance(11.9)
        h.feed(Message(Code.PING), get(b"g", "hello"))
        assert [m.code for m in h.sent()] == [Code.PONG, Code.CONTENT]
    assert h.channel.blockwise.uploads_in_progress == 1  # 59.5 s after its last block
    clock.advance(0.5)
    assert h.channel.blockwise.uploads_in_progress == 0
    assert factory.upload_budget.held == 0 and h.channel.blockwise.held_bytes == 0
    assert h.sent() == []  # dropped silently; the peer learns it at its next block
    assert not upload_timers(clock, h.channel)
    h.feed(part(b"c", 2, more=False))
    (late,) = h.sent()
    assert late.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert not h.transport.disconnecting


def test_one_timer_per_connection_follows_the_oldest_upload() -> None:
    clock = MemoryReactorClock()
    h = opened(factory_with(clock, upload_timeout=60.0))
    blockwise = h.channel.blockwise
    h.feed(part(b"a", 0, tag=1))
    for num in range(40):  # many blocks, many uploads: never more than one timer
        h.feed(part(b"b", num, tag=2), part(b"c", num, tag=3))
        assert len(upload_timers(clock, h.channel)) == 1
    clock.advance(30)
    h.feed(part(b"d", 40, tag=2))  # upload 2 is refreshed at 30 s
    clock.advance(30)  # 60 s: uploads 1 and 3 expire, 2 is kept
    assert blockwise.uploads_in_progress == 1
    (timer,) = upload_timers(clock, h.channel)
    assert timer.getTime() == 90.0
    clock.advance(30)
    assert blockwise.uploads_in_progress == 0 and blockwise.held_bytes == 0
    assert not upload_timers(clock, h.channel)
    h.sent()
    h.feed(part(b"e", 0, tag=4))  # a new upload arms a new timer
    assert codes(h) == [Code.CONTINUE]
    (timer,) = upload_timers(clock, h.channel)
    assert timer.getTime() == 150.0


def test_a_request_without_block1_never_touches_the_upload_state() -> None:
    """The hot path: a plain request costs nothing for uploads (no lookup, no timer)."""

    class Untouchable:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"blockwise.{name} used for a request without Block1")

    clock = MemoryReactorClock()
    h = opened(factory_with(clock))
    h.channel.blockwise = Untouchable()
    h.feed(get(b"1", "hello"), Message(Code.PUT, b"2", Options.build(uri_path=["store"]), b"x"))
    assert codes(h) == [Code.CONTENT, Code.CHANGED]
    assert not upload_timers(clock, h.channel)


# -- the budgets ---------------------------------------------------------------------------


def test_a_connection_past_its_budget_gets_5_03_logged_once() -> None:
    clock = MemoryReactorClock()
    factory = factory_with(clock, max_upload_bytes_per_connection=4 * KIB)
    h = opened(factory)
    other = opened(factory)
    with capturedLogs() as events:
        h.feed(*(part(b"a%d" % n, n, tag=1) for n in range(3)))
        h.feed(part(b"b0", 0, tag=2), part(b"b1", 1, tag=2))
        # Upload 2 was dropped with its refusal, giving its bytes back: 3 has room.
        h.feed(part(b"c0", 0, tag=3), part(b"c1", 1, tag=3))
        sent = h.sent()
    unavailable = Code.SERVICE_UNAVAILABLE
    assert [m.code for m in sent] == [Code.CONTINUE] * 4 + [unavailable, Code.CONTINUE,
                                                            unavailable]
    refusal = sent[4]
    assert refusal.token == b"b1"
    assert refusal.options.max_age == UPLOAD_RETRY_AFTER
    assert refusal.payload == (
        b"the partial uploads of this connection would exceed 4096 bytes; retry later"
    )
    (line,) = warnings(events)
    assert "its partial uploads hold 4096 bytes, a connection's budget is 4096 bytes" in line
    assert str(h.channel.peer) in line
    # Uploads 2 and 3 are gone; 1 still goes on and completes.
    h.feed(part(b"b2", 2, tag=2, more=False))
    h.feed(part(b"a3", 3, tag=1, more=False, size=10))
    assert codes(h) == [Code.REQUEST_ENTITY_INCOMPLETE, Code.CHANGED]
    assert factory.upload_budget.held == h.channel.blockwise.held_bytes == 0
    # Another connection has a budget of its own.
    other.feed(*(part(b"o%d" % n, n) for n in range(4)))
    assert codes(other) == [Code.CONTINUE] * 4


def test_the_factory_budget_is_shared_and_logged_once_per_episode() -> None:
    clock = MemoryReactorClock()
    factory = factory_with(clock, max_upload_bytes_per_connection=6 * KIB,
                           max_upload_bytes=8 * KIB)
    first, second, third = (opened(factory) for _ in range(3))
    with capturedLogs() as events:
        first.feed(*(part(b"f", n) for n in range(6)))
        second.feed(part(b"s", 0), part(b"s", 1))
        assert codes(first) == [Code.CONTINUE] * 6 and codes(second) == [Code.CONTINUE] * 2
        assert factory.upload_budget.held == 8 * KIB
        second.feed(part(b"s", 2))  # second has room, the server has none
        (refusal,) = second.sent()
        assert refusal.code == Code.SERVICE_UNAVAILABLE
        assert refusal.options.max_age == UPLOAD_RETRY_AFTER
        assert refusal.payload == b"the server holds too many partial uploads; retry later"
        (line,) = warnings(events)
        assert "the partial uploads of all connections hold 8192 bytes" in line
        assert "the server's budget is 8192 bytes" in line
        # second's upload went with its refusal: room for 2 KiB, and the next refusal
        # is the same episode, not logged again.
        assert factory.upload_budget.held == 6 * KIB
        third.feed(part(b"t", 0), part(b"t", 1), part(b"t", 2))
        assert codes(third) == [Code.CONTINUE, Code.CONTINUE, Code.SERVICE_UNAVAILABLE]
        assert len(warnings(events)) == 1
        # The episode ends once the bytes held fall to half the budget: the next
        # refusal is logged again.
        first.lose()
        assert factory.upload_budget.held == 0
        third.feed(*(part(b"t", n) for n in range(6)))
        second.feed(*(part(b"s", n) for n in range(3)))
        assert codes(third) == [Code.CONTINUE] * 6
        assert codes(second) == [Code.CONTINUE] * 2 + [Code.SERVICE_UNAVAILABLE]
        assert len(warnings(events)) == 2
    assert factory.upload_budget.refusals == 3


def test_factories_given_one_budget_share_it() -> None:
    clock = MemoryReactorClock()
    budget = UploadBudget(3 * KIB)
    factories = [
        CoapFactory(make_demo_site(clock), reactor=clock, upload_budget=budget,
                    max_body_size=3 * KIB, limits=Limits(max_upload_bytes_per_connection=3 * KIB))
        for _ in range(2)
    ]
    one, two = (opened(f) for f in factories)
    one.feed(part(b"a", 0), part(b"a", 1))
    two.feed(part(b"b", 0), part(b"b", 1))
    assert codes(one) == [Code.CONTINUE] * 2
    assert codes(two) == [Code.CONTINUE, Code.SERVICE_UNAVAILABLE]
    assert budget.held == 2 * KIB


# -- every ending gives the bytes back -----------------------------------------------------


@pytest.mark.parametrize(
    "ending", ["lost", "abort-received", "our-abort", "release-received", "violation"]
)
def test_the_connection_ending_mid_upload_gives_the_bytes_back(ending: str) -> None:
    clock = MemoryReactorClock()
    factory = factory_with(clock)
    h = opened(factory)
    stays = opened(factory)
    h.feed(part(b"a", 0, tag=1), part(b"b", 1, tag=1), part(b"c", 0, tag=2))
    stays.feed(part(b"s", 0))
    assert factory.upload_budget.held == 4 * KIB
    assert upload_timers(clock, h.channel)
    if ending == "lost":
        h.lose()
    elif ending == "abort-received":
        h.feed(Message(Code.ABORT, payload=b"bye"))
    elif ending == "our-abort":
        h.protocol.abort("enough")
    elif ending == "release-received":
        h.feed(Message(Code.RELEASE))
    elif ending == "violation":
        h.feed_bytes(b"\x10\x01\xf0")  # a GET with the reserved option delta 15: Abort
    # Freed at once, while the transport may still be closing, and no timer left.
    assert h.channel.blockwise.uploads_in_progress == 0
    assert factory.upload_budget.held == KIB  # the other connection's upload
    assert not upload_timers(clock, h.channel)
    h.lose()
    assert factory.upload_budget.held == KIB
    stays.lose()
    assert factory.upload_budget.held == 0
    assert not clock.getDelayedCalls() or all(
        getattr(c.func, "__func__", None) is not Channel._uploads_timed_out
        for c in clock.getDelayedCalls()
    )


def test_completion_and_expiry_give_the_bytes_back() -> None:
    clock = MemoryReactorClock()
    factory = factory_with(clock, upload_timeout=10.0)
    h = opened(factory)
    h.feed(part(b"a", 0, tag=1), part(b"b", 0, tag=2))
    h.feed(part(b"a", 1, tag=1, more=False, size=5))
    assert codes(h) == [Code.CONTINUE, Code.CONTINUE, Code.CHANGED]
    assert factory.upload_budget.held == KIB
    clock.advance(10)
    assert factory.upload_budget.held == 0


# -- options ------------------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULT_LIMITS.upload_timeout == DEFAULT_UPLOAD_LIFETIME == 60.0
    assert DEFAULT_LIMITS.max_upload_bytes_per_connection == DEFAULT_MAX_CONNECTION_UPLOAD_BYTES
    assert DEFAULT_MAX_CONNECTION_UPLOAD_BYTES == 16 << 20
    assert DEFAULT_LIMITS.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 128 << 20
    clock = MemoryReactorClock()
    h = opened(CoapFactory(make_demo_site(clock), reactor=clock))
    blockwise = h.channel.blockwise
    assert blockwise.upload_lifetime == 60.0
    assert blockwise.connection_budget.limit == 16 << 20
    assert blockwise.budget is h.factory.upload_budget
    assert h.factory.upload_budget.limit == 128 << 20


def test_twistd_options_reach_every_listener() -> None:
    options = tap.Options()
    options.parseOptions(
        ["--tcp", "tcp:0", "--ws", "tcp:0", "--upload-timeout", "2.5",
         "--max-upload-bytes-per-connection", "20000000", "--max-upload-bytes", "30000000"]
    )
    limits = options["limits"]
    assert (limits.upload_timeout, limits.max_upload_bytes_per_connection,
            limits.max_upload_bytes) == (2.5, 20_000_000, 30_000_000)
    service = tap.makeService(options)
    factory = service.factory
    assert factory.upload_budget.limit == 30_000_000
    ws_factories = [child.factory for child in service if hasattr(child, "factory")
                    and child.factory is not factory and hasattr(child.factory, "upload_budget")]
    assert ws_factories, list(service)
    assert all(f.upload_budget is factory.upload_budget for f in ws_factories)
    assert all(f.max_body_size == factory.max_body_size for f in ws_factories)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--upload-timeout", "0"], "--upload-timeout must be a positive number of seconds"),
        (["--upload-timeout", "later"], "--upload-timeout must be a number"),
        (["--max-upload-bytes", "-5"], "--max-upload-bytes must be positive"),
        (["--max-upload-bytes-per-connection", "1.5"], "must be a number"),
        (
            ["--max-upload-bytes-per-connection", "1000"],
            "--max-body-size 16777216 exceeds --max-upload-bytes-per-connection 1000",
        ),
        (
            ["--max-upload-bytes", "1000000"],
            "--max-upload-bytes-per-connection 16777216 exceeds --max-upload-bytes 1000000",
        ),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError) as raised:
        tap.Options().parseOptions(argv)
    assert message in str(raised.value)
