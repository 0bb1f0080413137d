"""Observe over a reliable transport, in memory (RFC 7641 as updated by RFC 8323 section 7).

We play the client on a :class:`CoapProtocol` over a StringTransport with a
MemoryReactorClock: registration and deregistration, notifications with increasing Observe
values and a Max-Age, error responses ending the observation, the per-connection and
per-resource caps, async renders coalesced, a slow reader getting only the latest state,
and every observation dropped when the connection goes (no leak).
"""

from __future__ import annotations

from typing import Any

from sites import Slow
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options, decode_uint
from coaptcp.server.observe import SEQUENCE_MODULUS, ObservableResource, Observer
from coaptcp.server.request import CoapError, Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import ClockResource, make_demo_site
from coaptcp.testing import Harness, get

OBSERVE = OptionNumber.OBSERVE


class Counter(ObservableResource):
    """State is a number; ``fail`` makes the next render an error."""

    max_age = 42

    def __init__(self) -> None:
        super().__init__()
        self.value = 0
        self.fail: Exception | None = None
        self.renders = 0
        self.added: list[Observer] = []
        self.removed: list[Observer] = []

    def bump(self) -> None:
        self.value += 1
        self.notify()

    def render_GET(self, request: Request) -> Response:
        self.renders += 1
        if self.fail is not None:
            raise self.fail
        return Response.text(f"value {self.value}")

    def observer_added(self, observation: Observer) -> None:
        self.added.append(observation)

    def observer_removed(self, observation: Observer) -> None:
        self.removed.append(observation)


class OwnMaxAge(ObservableResource):
    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, b"cached", options=Options([(OptionNumber.MAX_AGE, 5)]))


class Deferring(Slow, ObservableResource):
    """Each render returns a Deferred the test fires (``waiting``), and it is observable."""


class Big(ObservableResource):
    body = bytes(range(256)) * 12  # 3,072 bytes: more than a 1,152-byte peer takes

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.body)


class Plain(Resource):
    def render_GET(self, request: Request) -> Response:
        return Response.text("not observable")


class Tree:
    """A site with the demo resources (its clock on our reactor) and the ones above."""

    def __init__(self) -> None:
        self.clock = MemoryReactorClock()
        root = make_demo_site(reactor=self.clock)
        self.counter = Counter()
        self.own = OwnMaxAge()
        self.deferring = Deferring()
        self.big = Big()
        root.putChild("counter", self.counter)
        root.putChild("own", self.own)
        root.putChild("deferring", self.deferring)
        root.putChild("big-obs", self.big)
        root.putChild("plain", Plain())
        self.time = root.children["time"]
        assert isinstance(self.time, ClockResource)
        self.site = Site(root)

    def connect(self, max_message_size: int | None = None) -> Harness:
        h = Harness(self.site, clock=self.clock)
        h.open(max_message_size)
        return h


def observe(token: bytes, path: str, value: int = 0) -> Message:
    return get(token, path, extra=[(OBSERVE, value)])


def observe_value(message: Message) -> int | None:
    raw = message.options.get(OBSERVE)
    return None if raw is None else decode_uint(raw)


def one(h: Harness) -> Message:
    sent = h.sent()
    assert len(sent) == 1, sent
    return sent[0]


def register(h: Harness, token: bytes = b"ob", path: str = "counter") -> Message:
    h.feed(observe(token, path))
    first = one(h)
    assert first.code == Code.CONTENT
    assert first.token == token
    return first


# -- registration --------------------------------------------------------------------------


def test_register_answers_with_observe_and_max_age() -> None:
    tree = Tree()
    h = tree.connect()
    first = register(h)
    assert first.payload == b"value 0"
    raw = first.options.get(OBSERVE)
    assert raw is not None and raw != b""  # never empty on the wire (INTEROP-NOTES 2)
    assert decode_uint(raw) > 0
    assert first.options.max_age == Counter.max_age
    assert tree.counter.observer_count == 1
    assert h.channel.observation_count == 1
    assert len(tree.counter.added) == 1
    assert tree.counter.added[0].token == b"ob"


def test_notifications_carry_the_token_fresh_state_and_increasing_observe() -> None:
    tree = Tree()
    h = tree.connect()
    values = [observe_value(register(h))]
    for expected in range(1, 6):
        tree.counter.bump()
        note = one(h)
        assert note.code == Code.CONTENT
        assert note.token == b"ob"
        assert note.payload == f"value {expected}".encode()
        assert note.options.max_age == 42
        values.append(observe_value(note))
    assert all(v is not None for v in values)
    assert values == sorted(values) and len(set(values)) == len(values), values


def test_resource_max_age_is_kept() -> None:
    tree = Tree()
    h = tree.connect()
    first = register(h, path="own")
    assert first.options.max_age == 5
    tree.own.notify()
    note = one(h)
    assert note.options.max_age == 5
    assert observe_value(note) is not None


def test_observe_value_wraps_past_2_24_and_is_never_zero() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    tree.counter._sequence = SEQUENCE_MODULUS - 3
    seen = []
    for _ in range(4):
        tree.counter.bump()
        seen.append(observe_value(one(h)))
    assert seen == [SEQUENCE_MODULUS - 2, SEQUENCE_MODULUS - 1, 1, 2]


def test_next_sequence_directly() -> None:
    resource = Counter()
    assert [resource.next_sequence() for _ in range(3)] == [1, 2, 3]
    resource._sequence = SEQUENCE_MODULUS - 1
    assert resource.next_sequence() == 1
    assert 0 not in {resource.next_sequence() for _ in range(10)}


def test_get_without_observe_does_not_register() -> None:
    tree = Tree()
    h = tree.connect()
    h.feed(get(b"g", "counter"))
    response = one(h)
    assert response.payload == b"value 0"
    assert OBSERVE not in response.options
    assert tree.counter.observer_count == 0
    tree.counter.bump()
    assert h.sent() == []


def test_observe_on_a_resource_that_is_not_observable() -> None:
    tree = Tree()
    h = tree.connect()
    h.feed(observe(b"p", "plain"))
    response = one(h)
    assert response.payload == b"not observable"
    assert OBSERVE not in response.options
    assert h.channel.observation_count == 0


def test_observe_on_a_non_get_does_not_register() -> None:
    tree = Tree()
    h = tree.connect()
    h.feed(Message(Code.POST, b"po", Options.build(uri_path=["counter"], observe=0)))
    response = one(h)
    assert OBSERVE not in response.options
    assert tree.counter.observer_count == 0


def test_error_on_registration_does_not_register() -> None:
    tree = Tree()
    h = tree.connect()
    tree.counter.fail = CoapError(Code.FORBIDDEN, "not you")
    h.feed(observe(b"ob", "counter"))
    response = one(h)
    assert response.code == Code.FORBIDDEN
    assert OBSERVE not in response.options
    assert tree.counter.observer_count == 0
    assert h.channel.observation_count == 0


def test_observe_values_other_than_0_and_1_do_not_register() -> None:
    tree = Tree()
    h = tree.connect()
    h.feed(observe(b"o7", "counter", 7))
    response = one(h)
    assert response.code == Code.CONTENT
    assert OBSERVE not in response.options
    assert tree.counter.observer_count == 0


# -- deregistration and the end of an observation --------------------------------------------


def test_deregister_with_observe_1_and_the_same_token() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    h.feed(observe(b"ob", "counter", 1))
    response = one(h)
    assert response.code == Code.CONTENT
    assert response.token == b"ob"
    assert OBSERVE not in response.options
    assert tree.counter.observer_count == 0
    assert h.channel.observation_count == 0
    assert len(tree.counter.removed) == 1
    tree.counter.bump()
    assert h.sent() == []


def test_deregister_with_another_token_leaves_the_observation() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    h.feed(observe(b"xx", "counter", 1))
    one(h)
    assert tree.counter.observer_count == 1
    tree.counter.bump()
    assert one(h).token == b"ob"


def test_error_notification_ends_the_observation() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    tree.counter.fail = CoapError(Code.NOT_FOUND, "gone")
    tree.counter.bump()
    note = one(h)
    assert note.code == Code.NOT_FOUND
    assert note.token == b"ob"
    assert OBSERVE not in note.options  # an error is not a notification (RFC 7641 3.2)
    assert tree.counter.observer_count == 0
    assert h.channel.observation_count == 0
    tree.counter.fail = None
    tree.counter.bump()
    assert h.sent() == []


def test_exception_while_notifying_ends_the_observation_with_5_00() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    tree.counter.fail = ZeroDivisionError("notify-boom")
    tree.counter.bump()
    note = one(h)
    assert note.code == Code.INTERNAL_SERVER_ERROR
    assert tree.counter.observer_count == 0


def test_reregistering_the_same_token_keeps_one_observation() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    register(h)
    assert tree.counter.observer_count == 1
    assert h.channel.observation_count == 1
    tree.counter.bump()
    assert len(h.sent()) == 1


def test_same_token_moved_to_another_resource() -> None:
    tree = Tree()
    h = tree.connect()
    register(h, path="counter")
    register(h, path="own")
    assert tree.counter.observer_count == 0
    assert tree.own.observer_count == 1
    tree.counter.bump()
    assert h.sent() == []
    tree.own.notify()
    assert one(h).payload == b"cached"


def test_two_tokens_on_one_connection_each_get_notifications() -> None:
    tree = Tree()
    h = tree.connect()
    register(h, b"t1")
    register(h, b"t2")
    assert tree.counter.observer_count == 2
    tree.counter.bump()
    notes = h.sent()
    assert sorted(n.token for n in notes) == [b"t1", b"t2"]
    assert {n.payload for n in notes} == {b"value 1"}


# -- connection loss: no leak (RFC 8323 section 7.4) -----------------------------------------


def test_connection_loss_drops_every_observation() -> None:
    tree = Tree()
    h = tree.connect()
    register(h, b"a", "counter")
    register(h, b"b", "counter")
    register(h, b"c", "own")
    assert tree.counter.observer_count == 2 and tree.own.observer_count == 1
    h.lose()
    assert tree.counter.observer_count == 0
    assert tree.own.observer_count == 0
    assert h.channel.observation_count == 0
    assert len(tree.counter.removed) == 2
    written = len(h.transport.value())
    tree.counter.bump()
    tree.own.notify()
    assert len(h.transport.value()) == written


def test_other_connections_keep_observing_when_one_goes() -> None:
    tree = Tree()
    h1, h2 = tree.connect(), tree.connect()
    register(h1, b"same")
    register(h2, b"same")  # the same token on another connection is another observer
    assert tree.counter.observer_count == 2
    h1.lose()
    assert tree.counter.observer_count == 1
    tree.counter.bump()
    note = one(h2)
    assert note.payload == b"value 1"


def test_async_registration_finishing_after_the_connection_went_does_not_leak() -> None:
    tree = Tree()
    h = tree.connect()
    h.feed(observe(b"late", "deferring"))
    assert len(tree.deferring.waiting) == 1
    h.lose()
    tree.deferring.waiting.pop().callback(Response.text("too late"))
    assert tree.deferring.observer_count == 0
    assert h.channel.observation_count == 0


def test_many_connections_come_and_go_without_leaking() -> None:
    tree = Tree()
    for i in range(50):
        h = tree.connect()
        register(h, b"%d" % i)
        register(h, b"x%d" % i, "time")
        h.lose()
    assert tree.counter.observer_count == 0
    assert tree.time.observer_count == 0


# -- caps ------------------------------------------------------------------------------------


def test_per_connection_cap_answers_further_registrations_without_observe() -> None:
    tree = Tree()
    h = tree.connect()
    h.channel.max_observations = 2
    register(h, b"1")
    register(h, b"2", "own")
    third = register(h, b"3")
    assert third.payload == b"value 0"  # still answered, just not registered
    assert OBSERVE not in third.options
    assert h.channel.observation_count == 2
    assert tree.counter.observer_count == 1
    # re-registering an existing token is not a new observation
    again = register(h, b"1")
    assert OBSERVE in again.options
    # another connection has its own budget
    other = tree.connect()
    assert OBSERVE in register(other, b"3").options
    # freeing one makes room
    h.feed(observe(b"2", "own", 1))
    one(h)
    assert OBSERVE in register(h, b"3").options


def test_default_per_connection_cap_is_bounded() -> None:
    tree = Tree()
    h = tree.connect()
    cap = h.channel.max_observations
    assert 0 < cap <= 1024
    for i in range(cap + 5):
        h.feed(observe(b"%d" % i, "counter"))
    responses = h.sent()
    assert len(responses) == cap + 5
    assert sum(OBSERVE in r.options for r in responses) == cap
    assert tree.counter.observer_count == cap


def test_per_resource_cap() -> None:
    tree = Tree()
    tree.counter.max_observers = 1  # type: ignore[misc]
    h1, h2 = tree.connect(), tree.connect()
    assert OBSERVE in register(h1, b"a").options
    declined = register(h2, b"b")
    assert OBSERVE not in declined.options
    assert tree.counter.observer_count == 1
    assert h2.channel.observation_count == 0


def test_declined_registrations_are_logged_once_per_episode() -> None:
    # A peer (or many) retrying against a full budget must not flood the log: one warning
    # per connection for its own cap, one per resource until it has room again.
    from twisted.logger import capturedLogs

    def warnings(events: list[dict[str, Any]], text: str) -> int:
        return sum(text in str(e.get("log_format")) for e in events)

    tree = Tree()
    tree.counter.max_observers = 1  # type: ignore[misc]
    h1, h2 = tree.connect(), tree.connect()
    with capturedLogs() as events:
        register(h1, b"a")
        for n in range(5):
            assert OBSERVE not in register(h2, b"b%d" % n).options
    assert warnings(events, "Not registering further observers") == 1
    # Room again (the observer leaves), full again: the next episode is logged again.
    h1.feed(observe(b"a", "counter", 1))
    one(h1)
    with capturedLogs() as events:
        register(h2, b"c")
        for n in range(3):
            assert OBSERVE not in register(h1, b"d%d" % n).options
    assert warnings(events, "Not registering further observers") == 1

    h3 = tree.connect()
    h3.channel.max_observations = 1
    with capturedLogs() as events:
        register(h3, b"t", "time")
        for n in range(4):
            assert OBSERVE not in register(h3, b"u%d" % n, "time").options
    assert warnings(events, "Declining further observations") == 1


# -- async renders are coalesced ---------------------------------------------------------------


def test_notify_during_a_render_re_renders_once_afterwards() -> None:
    tree = Tree()
    h = tree.connect()
    res = tree.deferring
    h.feed(observe(b"as", "deferring"))
    res.waiting.pop().callback(Response.text("state 0"))
    first = one(h)
    assert observe_value(first) is not None
    res.notify()
    assert len(res.waiting) == 1  # one render in flight
    res.notify()
    res.notify()
    res.notify()
    assert len(res.waiting) == 1  # not three more
    assert h.sent() == []
    res.waiting.pop().callback(Response.text("state 1"))
    assert one(h).payload == b"state 1"
    assert len(res.waiting) == 1  # exactly one re-render for the changes meanwhile
    res.waiting.pop().callback(Response.text("state 4"))
    note = one(h)
    assert note.payload == b"state 4"
    assert res.waiting == []
    assert observe_value(note) > observe_value(first)  # type: ignore[operator]


def test_render_finishing_after_deregistration_is_not_sent() -> None:
    tree = Tree()
    h = tree.connect()
    res = tree.deferring
    h.feed(observe(b"as", "deferring"))
    res.waiting.pop().callback(Response.text("state 0"))
    one(h)
    res.notify()
    in_flight = res.waiting.pop()
    h.feed(observe(b"as", "deferring", 1))
    res.waiting.pop().callback(Response.text("deregistered"))
    assert one(h).payload == b"deregistered"
    in_flight.callback(Response.text("stale"))
    assert h.sent() == []


def test_async_render_failing_ends_the_observation() -> None:
    tree = Tree()
    h = tree.connect()
    res = tree.deferring
    h.feed(observe(b"as", "deferring"))
    res.waiting.pop().callback(Response.text("state 0"))
    one(h)
    res.notify()
    res.waiting.pop().errback(CoapError(Code.SERVICE_UNAVAILABLE, "down"))
    note = one(h)
    assert note.code == Code.SERVICE_UNAVAILABLE
    assert res.observer_count == 0


# -- a slow reader gets the latest state, not a queue ------------------------------------------


def test_protocol_is_the_transports_streaming_producer() -> None:
    tree = Tree()
    h = tree.connect()
    assert h.transport.producer is h.protocol
    assert h.transport.streaming is True


def test_paused_connection_gets_only_the_latest_state_on_resume() -> None:
    tree = Tree()
    h = tree.connect()
    register(h, b"s1")
    register(h, b"s2", "own")
    h.protocol.pauseProducing()
    assert h.transport.producerState == "paused"
    for _ in range(100):
        tree.counter.bump()
    assert h.sent() == []
    assert tree.counter.renders == 1  # nothing rendered while paused
    h.protocol.resumeProducing()
    assert h.transport.producerState == "producing"
    notes = h.sent()
    assert [(n.token, n.payload) for n in notes] == [(b"s1", b"value 100")]
    # after resuming, notifications flow one by one again
    tree.counter.bump()
    assert one(h).payload == b"value 101"


def test_pause_and_resume_without_changes_send_nothing() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    h.protocol.pauseProducing()
    h.protocol.resumeProducing()
    assert h.sent() == []


def test_error_state_while_paused_is_delivered_on_resume_and_ends_it() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    h.protocol.pauseProducing()
    tree.counter.fail = CoapError(Code.NOT_FOUND, "gone")
    tree.counter.bump()
    h.protocol.resumeProducing()
    assert one(h).code == Code.NOT_FOUND
    assert tree.counter.observer_count == 0


def test_connection_lost_while_paused_cleans_up() -> None:
    tree = Tree()
    h = tree.connect()
    register(h)
    h.protocol.pauseProducing()
    tree.counter.bump()
    h.lose()
    h.protocol.resumeProducing()
    assert tree.counter.observer_count == 0
    assert h.sent() == []


# -- notifications and block-wise ---------------------------------------------------------------


def test_notification_larger_than_the_peer_takes_is_sent_as_block_0() -> None:
    tree = Tree()
    h = tree.connect(max_message_size=1152)
    h.feed(observe(b"bo", "big-obs"))
    first = one(h)
    assert OBSERVE in first.options
    assert first.options.get_uint(OptionNumber.BLOCK2) == 0x08 | 6  # 0/1/1024
    assert first.options.get_uint(OptionNumber.SIZE2) == len(Big.body)
    assert first.payload == Big.body[:1024]
    tree.big.notify()
    note = one(h)
    assert observe_value(note) > observe_value(first)  # type: ignore[operator]
    assert note.options.get_uint(OptionNumber.BLOCK2) == 0x08 | 6
    assert len(note.payload) == 1024


# -- the demo clock --------------------------------------------------------------------------


def clock_text(seconds: int) -> bytes:
    return b"1970-01-01T00:00:%02dZ" % seconds


def test_clock_ticks_only_while_observed() -> None:
    tree = Tree()
    ticker: Any = tree.time._ticker
    h = tree.connect()
    h.feed(get(b"g", "time"))
    assert one(h).payload == clock_text(0)
    assert not ticker.running
    first = register(h, b"tm", "time")
    assert first.payload == clock_text(0)
    assert first.options.max_age == 1
    assert ticker.running
    seen = [observe_value(first)]
    for second in (1, 2, 3):
        tree.clock.advance(1)
        note = one(h)
        assert note.token == b"tm"
        assert note.payload == clock_text(second)
        assert note.options.max_age == 1
        seen.append(observe_value(note))
    assert seen == sorted(seen) and len(set(seen)) == 4
    h.feed(observe(b"tm", "time", 1))
    one(h)
    assert not ticker.running
    tree.clock.advance(5)
    assert h.sent() == []


def test_clock_stops_when_the_last_observer_connection_goes() -> None:
    tree = Tree()
    ticker: Any = tree.time._ticker
    h1, h2 = tree.connect(), tree.connect()
    register(h1, b"a", "time")
    register(h2, b"b", "time")
    h1.lose()
    assert ticker.running
    tree.clock.advance(1)
    assert one(h2).payload == clock_text(1)
    h2.lose()
    assert not ticker.running
    assert tree.time.observer_count == 0
    # the ticker's timer is gone from the reactor, not just ignored
    assert not [c for c in tree.clock.getDelayedCalls() if "LoopingCall" in repr(c.func)]


def test_mark_notification_adds_observe_and_max_age_in_order() -> None:
    from coaptcp.server.observe import mark_notification

    resource = ObservableResource()
    options = Options([(OptionNumber.ETAG, b"e"), (OptionNumber.CONTENT_FORMAT, 0),
                       (OptionNumber.SIZE2, 5)])
    response = Response(Code.CONTENT, b"x", options=options)
    mark_notification(response, resource)
    assert [n for n, _ in response.options.items] == [4, 6, 12, 14, 28]
    assert response.options.observe == 1 and response.options.max_age == resource.max_age
    own = Response(Code.CONTENT, b"x", options=Options([(OptionNumber.MAX_AGE, 7)]))
    mark_notification(own, resource)
    assert own.options.max_age == 7 and own.options.observe == 2
    again = Response(Code.CONTENT, b"x", options=Options([(OptionNumber.OBSERVE, 99)]))
    mark_notification(again, resource)
    assert tuple(again.options.get_all(OptionNumber.OBSERVE)) == (b"\x03",)
