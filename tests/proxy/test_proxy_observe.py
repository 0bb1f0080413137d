"""Observe through the proxy (RFC 7641 section 5, RFC 8323 section 7), in memory.

The downstream side is real: a Site with the forward proxy (or a reverse-proxy mount)
served by our protocol on a recording transport, the test playing the downstream clients
in raw frames.  The upstream side is a client double: it records each upstream
observation and the test delivers its notifications and its end.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.client import RequestTimeout
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options, decode_uint
from coaptcp.core.uri import CoapUri
from coaptcp.proxy import ForwardProxy, ProxyPolicy
from coaptcp.proxy.reverse import ReverseProxy
from coaptcp.proxy.upstream import Upstream
from coaptcp.server import Resource, Response, Site
from coaptcp.testing import Harness, get

N = OptionNumber
TIME = "coap://127.0.0.1:5683/time"


class UpstreamObservation:
    def __init__(self, target: CoapUri, options: Options, callback: Any) -> None:
        self.target = target
        self.options = options
        self.callback = callback
        self.ended = False
        self.cancelled = 0
        self._ended: Deferred[None] = Deferred()

    def when_ended(self) -> Deferred[None]:
        return self._ended

    def cancel(self) -> Deferred[None]:
        self.cancelled += 1
        self.end()
        return Deferred()

    def notify(self, payload: bytes, observe: int | None, code: Code = Code.CONTENT,
               max_age: int | None = None) -> None:
        options = Options()
        if observe is not None:
            options = options.add(N.OBSERVE, observe)
        if max_age is not None:
            options = options.add(N.MAX_AGE, max_age)
        self.callback(Response(code, payload, options=options))

    def end(self, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if error is None:
            self._ended.callback(None)
        else:
            self._ended.errback(Failure(error))


class ObservingClient:
    def __init__(self) -> None:
        self.observations: list[UpstreamObservation] = []
        self.requests: list[tuple[Code, CoapUri, bytes, Options]] = []
        self.answers: list[Deferred[Response]] = []

    def observe(self, target: CoapUri, *, options: Options, callback: Any,
                reregister: bool, timeout: float | None) -> UpstreamObservation:
        assert reregister  # a lost upstream connection is replaced
        observation = UpstreamObservation(target, options, callback)
        self.observations.append(observation)
        return observation

    def request(self, method: Code, target: CoapUri, payload: bytes = b"", *,
                options: Options, timeout: float | None = None) -> Deferred[Response]:
        self.requests.append((method, target, payload, options))
        answer: Deferred[Response] = Deferred()
        self.answers.append(answer)
        return answer


class Setup:
    def __init__(self, **kwargs: Any) -> None:
        self.clock = MemoryReactorClock()
        self.client = ObservingClient()
        self.upstream = Upstream(self.client, reactor=self.clock, **kwargs)  # type: ignore[arg-type]
        self.proxy = ForwardProxy(self.client, ProxyPolicy(["127.0.0.0/8"]),  # type: ignore[arg-type]
                                  upstream=self.upstream)
        root = Resource()
        root.putChild("plant", ReverseProxy("coap://127.0.0.1:5700/base", self.upstream))
        self.site = Site(root, proxy=self.proxy)

    def connect(self) -> Harness:
        h = Harness(self.site, clock=self.clock)
        h.open()
        return h

    @property
    def table_size(self) -> int:
        return len(self.upstream.observations)


def observe(token: bytes, uri: str = TIME, value: int = 0) -> Message:
    return Message(Code.GET, token, Options([(N.OBSERVE, value), (N.PROXY_URI, uri)]))


def observe_value(message: Message) -> int | None:
    raw = message.options.get(N.OBSERVE)
    return None if raw is None else decode_uint(raw)


def one(h: Harness) -> Message:
    sent = h.sent()
    assert len(sent) == 1, sent
    return sent[0]


def test_observers_of_one_resource_share_one_upstream_observation() -> None:
    s = Setup()
    a, b = s.connect(), s.connect()
    a.feed(observe(b"a1"))
    assert a.sent() == []  # waiting for the upstream's first answer
    [up] = s.client.observations
    assert str(up.target) == "coap://127.0.0.1/time"
    assert N.PROXY_URI not in up.options and N.OBSERVE not in up.options
    assert up.options.get_uint(N.HOP_LIMIT) == 15
    up.notify(b"12:00", observe=900, max_age=30)
    first = one(a)
    assert (first.code, first.token, first.payload) == (Code.CONTENT, b"a1", b"12:00")
    assert first.options.max_age == 30
    b.feed(observe(b"b1"))
    second = one(b)
    assert (second.token, second.payload) == (b"b1", b"12:00")
    assert len(s.client.observations) == 1  # no second upstream observation
    # Notifications fan out, each downstream sequence increasing, whatever upstream sent.
    values = {b"a1": [observe_value(first)], b"b1": [observe_value(second)]}
    for upstream_value, payload in [(3, b"12:01"), (2**23, b"12:02")]:
        up.notify(payload, observe=upstream_value)
        for h in (a, b):
            note = one(h)
            assert note.payload == payload and N.BLOCK2 not in note.options
            values[note.token].append(observe_value(note))
    for sequence in values.values():
        assert None not in sequence and sequence == sorted(sequence)  # type: ignore[type-var]
        assert len(set(sequence)) == len(sequence)


def test_the_upstream_observation_is_cancelled_when_the_last_observer_goes() -> None:
    s = Setup()
    a, b = s.connect(), s.connect()
    a.feed(observe(b"a1"))
    [up] = s.client.observations
    up.notify(b"v0", observe=1)
    b.feed(observe(b"b1"))
    a.sent(), b.sent()
    a.feed(observe(b"a1", value=1))  # deregister (RFC 8323 section 7.4)
    answer = one(a)
    assert answer.code == Code.CONTENT and observe_value(answer) is None
    assert up.cancelled == 0 and s.table_size == 1
    up.notify(b"v1", observe=2)
    assert a.sent() == [] and one(b).payload == b"v1"
    b.lose()
    assert up.cancelled == 1 and s.table_size == 0
    # The next observer starts a new upstream observation.
    c = s.connect()
    c.feed(observe(b"c1"))
    assert len(s.client.observations) == 2


def test_an_upstream_error_ends_every_downstream_observation() -> None:
    s = Setup()
    a, b = s.connect(), s.connect()
    a.feed(observe(b"a1"))
    [up] = s.client.observations
    up.notify(b"on", observe=1)
    b.feed(observe(b"b1"))
    a.sent(), b.sent()
    up.notify(b"gone", observe=None, code=Code.NOT_FOUND)
    up.end()
    for h in (a, b):
        note = one(h)
        assert note.code == Code.NOT_FOUND and note.payload == b"gone"
        assert h.channel.observation_count == 0
    assert s.table_size == 0 and up.cancelled == 0


def test_a_lost_upstream_ends_the_downstream_observations_with_5_02() -> None:
    s = Setup()
    a = s.connect()
    a.feed(observe(b"a1"))
    [up] = s.client.observations
    up.notify(b"on", observe=1)
    a.sent()
    up.end(ConnectionClosedError("lost, and registering again failed"))
    note = one(a)
    assert note.code == Code.BAD_GATEWAY and b"lost" in note.payload
    assert a.channel.observation_count == 0 and s.table_size == 0


def test_no_first_answer_in_time_is_5_04() -> None:
    s = Setup()
    a = s.connect()
    a.feed(observe(b"a1"))
    s.client.observations[0].end(RequestTimeout("no response"))
    answer = one(a)
    assert answer.code == Code.GATEWAY_TIMEOUT and a.channel.observation_count == 0


def test_a_resource_upstream_does_not_let_us_observe_is_answered_once() -> None:
    s = Setup()
    a = s.connect()
    a.feed(observe(b"a1"))
    [up] = s.client.observations
    up.notify(b"static", observe=None)
    up.end()
    answer = one(a)
    assert answer.payload == b"static" and observe_value(answer) is None
    assert a.channel.observation_count == 0 and s.table_size == 0


def test_upstream_observations_and_observers_are_bounded() -> None:
    s = Setup(max_observations=1, max_observers=1)
    a, b = s.connect(), s.connect()
    a.feed(observe(b"a1"))
    s.client.observations[0].notify(b"v", observe=1)
    assert observe_value(one(a)) is not None
    b.feed(observe(b"b1"))  # a second observer of the same resource: over the bound
    declined = one(b)
    assert declined.payload == b"v" and observe_value(declined) is None
    assert b.channel.observation_count == 0
    b.feed(observe(b"b2", uri="coap://127.0.0.1:5683/other"))  # a second upstream one
    busy = one(b)
    assert busy.code == Code.SERVICE_UNAVAILABLE and busy.options.max_age == 5
    assert len(s.client.observations) == 1


def test_a_denied_destination_is_not_observed() -> None:
    s = Setup()
    a = s.connect()
    a.feed(observe(b"a1", uri="coap://192.0.2.7/time"))
    answer = one(a)
    assert answer.code == Code.PROXYING_NOT_SUPPORTED and b"not allowed" in answer.payload
    assert s.client.observations == [] and s.table_size == 0


def test_observe_through_the_reverse_proxy() -> None:
    s = Setup()
    a, b = s.connect(), s.connect()
    a.feed(get(b"a1", "plant", "time", query=["unit=s"], extra=[(N.OBSERVE, 0)]))
    [up] = s.client.observations
    assert str(up.target) == "coap://127.0.0.1:5700/base/time?unit=s"
    assert N.URI_PATH not in up.options and N.URI_QUERY not in up.options
    up.notify(b"t0", observe=5)
    b.feed(get(b"b1", "plant", "time", query=["unit=s"], extra=[(N.OBSERVE, 0)]))
    assert observe_value(one(a)) is not None and observe_value(one(b)) is not None
    assert len(s.client.observations) == 1
    up.notify(b"t1", observe=6)
    assert one(a).payload == one(b).payload == b"t1"


def test_the_reverse_proxy_forwards_every_method_below_its_mount() -> None:
    s = Setup()
    a = s.connect()
    a.feed(Message(Code.POST, b"p1", Options.build(uri_path=("plant", "valve", "3"))
                   .add(N.CONTENT_FORMAT, 0), b"open"))
    [(method, target, payload, options)] = s.client.requests
    assert (method, str(target), payload) == (Code.POST, "coap://127.0.0.1:5700/base/valve/3",
                                              b"open")
    assert options.content_format == 0 and options.get_uint(N.HOP_LIMIT) == 15
    assert N.URI_PATH not in options
    s.client.answers[0].callback(Response(Code.CHANGED, b"ok", options=Options(
        [(N.LOCATION_PATH, "valve"), (N.BLOCK2, 0)])))
    answer = one(a)
    assert (answer.code, answer.payload) == (Code.CHANGED, b"ok")
    assert answer.options.location_path == ("valve",) and N.BLOCK2 not in answer.options
    a.feed(Message(Code.GET, b"p2", Options.build(uri_path=("plant",)).add(0x7F1E, b"x")))
    refused = one(a)  # 0x7F1E: elective, unsafe (bit 1), unknown
    assert refused.code == Code.BAD_GATEWAY and len(s.client.requests) == 1


def test_a_silent_upstream_is_registered_again_after_max_age() -> None:
    s = Setup()
    a = s.connect()
    a.feed(observe(b"a1"))
    [first] = s.client.observations
    first.notify(b"v0", observe=1, max_age=20)
    a.sent()
    s.clock.advance(20 + 4)
    assert len(s.client.observations) == 1  # still within Max-Age and the grace
    s.clock.advance(2)
    old, new = s.client.observations
    assert old.cancelled == 1 and str(new.target) == str(first.target)
    old.notify(b"late", observe=2)  # the old registration is ignored from now on
    assert a.sent() == []
    new.notify(b"v1", observe=7, max_age=20)
    note = one(a)
    assert note.payload == b"v1" and observe_value(note) is not None
    assert s.table_size == 1 and a.channel.observation_count == 1
    s.clock.advance(26)  # silent again, and this time the device does not answer
    third = s.client.observations[2]
    third.end(RequestTimeout("no response"))
    gone = one(a)
    assert gone.code == Code.GATEWAY_TIMEOUT and a.channel.observation_count == 0
    assert s.table_size == 0
    # No re-registration timer is left (the connection's own watchdog is).
    assert all("Watchdog" in repr(call) for call in s.clock.getDelayedCalls())
