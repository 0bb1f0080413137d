"""The client side of Observe, in memory (RFC 7641 over RFC 8323 section 7).

Registration with GET Observe=0, every notification delivered whatever its Observe value
(empty, decreasing: section 7.1, INTEROP-NOTES 2), the end of an observation by the server,
deregistration with GET Observe=1 and the same token (section 7.4), connection loss, the
re-registration option, timeouts, and notifications larger than a message (Block2).
"""

from __future__ import annotations

from typing import Any

from client_helpers import MemoryNetwork, make_client
from raw_peer import RawPeer, csm
from twisted.internet.defer import Deferred

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.observing import ObservationState
from coaptcp.client import Client, ConnectFailed, RequestTimeout
from coaptcp.client.connectors import ConnectOptions
from coaptcp.client.observe import Observation
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import CoapError, Request, Response
from coaptcp.testing import failure, result_of, success

OBSERVE = OptionNumber.OBSERVE
URI = "coap+tcp://127.0.0.1/counter"


class Counter(ObservableResource):
    """An observable number; ``fail`` makes the next render an error."""

    def __init__(self, body: bytes = b"") -> None:
        super().__init__()
        self.value = 0
        self.body = body
        self.fail: CoapError | None = None
        self.hold = False
        self.waiting: list[Deferred[Response]] = []

    def bump(self) -> None:
        self.value += 1
        self.notify()

    def render_GET(self, request: Request) -> Response | Deferred[Response]:
        if self.fail is not None:
            raise self.fail
        if self.hold:
            d: Deferred[Response] = Deferred()
            self.waiting.append(d)
            return d
        return Response.text(f"value {self.value}" + self.body.decode())


def setup(**client_kwargs: Any) -> tuple[MemoryNetwork, Client, Counter]:
    network = MemoryNetwork()
    counter = Counter()
    network.root.putChild("counter", counter)
    return network, make_client(network, **client_kwargs), counter


def next_of(observation: Observation) -> list[Any]:
    return result_of(Deferred.fromCoroutine(observation.__anext__()))


def payloads(responses: list[Response]) -> list[bytes]:
    return [r.payload for r in responses]


def test_observe_delivers_the_first_response_and_every_notification() -> None:
    network, client, counter = setup()
    observation = client.observe(URI)
    network.flush()
    assert counter.observer_count == 1
    first = success(next_of(observation))
    assert first.payload == b"value 0"
    assert first.options.observe is not None
    counter.bump()
    counter.bump()
    network.flush()
    assert payloads([success(next_of(observation)), success(next_of(observation))]) == [
        b"value 1", b"value 2",
    ]
    waiting = next_of(observation)
    assert waiting == []  # nothing yet: the iteration waits
    counter.bump()
    network.flush()
    assert success(waiting).payload == b"value 3"
    assert observation.notifications == 4
    assert observation.registrations == 1
    assert not observation.ended


def test_cancel_deregisters_with_observe_1_and_the_same_token() -> None:
    network, client, counter = setup()
    observation = client.observe(URI)
    network.flush()
    link = network.links[0]
    channel = link.client.channel
    channel_observation = observation.channel_observation
    assert channel_observation is not None
    token = channel_observation.token
    assert channel.observing == 1
    done = result_of(observation.cancel())
    (cancel,) = link.client_output()
    assert cancel.code == Code.GET
    assert cancel.token == token
    assert cancel.options.observe == 1
    assert cancel.options.uri_path == ("counter",)
    assert done == []  # the token is held until the server answers
    assert channel.observing == 1
    assert channel_observation.state is ObservationState.CANCELLING
    network.flush()
    assert done == [None]
    assert counter.observer_count == 0
    assert channel.observing == 0
    assert observation.ended and observation.end_reason == "cancelled"
    assert failure(next_of(observation), StopAsyncIteration)
    # A second cancel is harmless and fires at once.
    assert result_of(observation.cancel()) == [None]


def test_no_notification_is_delivered_after_cancel() -> None:
    network, client, counter = setup()
    seen: list[Response] = []
    observation = client.observe(URI, callback=seen.append)
    network.flush()
    assert payloads(seen) == [b"value 0"]
    observation.cancel()
    counter.bump()  # the server notifies before it reads our deregistration
    network.flush()
    assert payloads(seen) == [b"value 0"]
    assert counter.observer_count == 0
    assert network.links[0].client.channel.observing == 0


def test_async_for_and_when_ended() -> None:
    network, client, counter = setup()
    observation = client.observe(URI)
    collected: list[bytes] = []

    async def consume() -> int:
        async for response in observation:
            collected.append(response.payload)
            if len(collected) == 3:
                await observation.cancel()
        return len(collected)

    result = result_of(Deferred.fromCoroutine(consume()))
    ended = result_of(observation.when_ended())
    network.flush()
    counter.bump()
    network.flush()
    assert result == []
    counter.bump()
    network.flush()
    assert success(result) == 3
    assert collected == [b"value 0", b"value 1", b"value 2"]
    assert ended == [None]
    assert counter.observer_count == 0


def test_an_error_response_ends_the_observation() -> None:
    network, client, counter = setup()
    seen: list[Response] = []
    observation = client.observe(URI, callback=seen.append)
    ended = result_of(observation.when_ended())
    network.flush()
    counter.fail = CoapError(Code.SERVICE_UNAVAILABLE, "gone for now")
    counter.bump()
    network.flush()
    assert [r.code for r in seen] == [Code.CONTENT, Code.SERVICE_UNAVAILABLE]
    assert seen[-1].payload == b"gone for now"
    assert ended == [None]
    assert observation.end_reason == (
        "the server ended the observation with 5.03 Service Unavailable"
    )
    assert network.links[0].client.channel.observing == 0


def test_a_resource_that_is_not_observable() -> None:
    # /hello answers without Observe: delivered, then the observation is over.
    network, client, _ = setup()
    observation = client.observe("coap+tcp://127.0.0.1/hello")
    network.flush()
    response = success(next_of(observation))
    assert response.payload == b"Hello, world!"
    assert OBSERVE not in response.options
    failure(next_of(observation), StopAsyncIteration)
    assert observation.end_reason == (
        "the server ended the observation (a response without Observe)"
    )
    assert network.links[0].client.channel.observing == 0
    # Not found: the error is the one response.
    missing = client.observe("coap+tcp://127.0.0.1/nothing")
    network.flush()
    assert success(next_of(missing)).code == Code.NOT_FOUND
    failure(next_of(missing), StopAsyncIteration)


def test_connection_loss_ends_the_observation_with_an_error() -> None:
    network, client, counter = setup()
    observation = client.observe(URI)
    ended = result_of(observation.when_ended())
    network.flush()
    assert success(next_of(observation)).payload == b"value 0"
    waiting = next_of(observation)
    network.links[0].drop()
    network.flush()
    error = failure(waiting, ConnectionClosedError)
    assert "coap+tcp://127.0.0.1:5683: connection closed" in str(error.value)
    failure(ended, ConnectionClosedError)
    failure(next_of(observation), ConnectionClosedError)  # stays ended with the error
    assert counter.observer_count == 0  # the server dropped it too
    assert observation.end_reason is not None and "connection closed" in observation.end_reason
    assert len(network.links) == 1  # no new connection without reregister


def test_reregister_on_a_new_connection() -> None:
    network, client, counter = setup()
    seen: list[Response] = []
    observation = client.observe(URI, callback=seen.append, reregister=True)
    network.flush()
    counter.bump()
    network.flush()
    network.links[0].drop()
    network.flush()  # the new attempt is made on the next turn of the reactor
    network.flush()
    assert len(network.links) == 2  # a new connection, at once
    assert counter.observer_count == 1  # registered again there
    counter.bump()
    network.flush()
    # The new registration's first response is the current state again.
    assert payloads(seen) == [b"value 0", b"value 1", b"value 1", b"value 2"]
    assert observation.registrations == 2
    assert not observation.ended
    assert observation.channel_observation is not None
    assert observation.channel_observation.channel is network.links[1].client.channel


def test_reregister_gives_up_after_its_attempts() -> None:
    network, client, _counter = setup()
    observation = client.observe(URI, reregister=True)
    ended = result_of(observation.when_ended())
    network.flush()
    network.refuse = True
    network.links[0].drop()
    network.flush()
    assert ended == []
    attempts = len(network.attempts)
    network.clock.advance(1)  # second attempt after 1 s
    network.clock.advance(2)  # third after 2 s more
    assert len(network.attempts) == attempts + 2
    error = failure(ended, ConnectFailed)
    assert "connection refused" in str(error.value)
    assert observation.registrations == 1


def test_a_failed_first_registration_is_not_retried() -> None:
    network, client, _ = setup()
    network.refuse = True
    observation = client.observe(URI, reregister=True)
    network.flush()
    failure(result_of(observation.when_ended()), ConnectFailed)
    assert len(network.attempts) == 1


def test_reregister_is_not_done_after_cancel_or_a_server_end() -> None:
    network, client, _counter = setup()
    observation = client.observe(URI, reregister=True)
    network.flush()
    observation.cancel()
    network.flush()
    network.links[0].drop()
    network.flush()
    assert len(network.links) == 1


def test_observe_values_are_ignored_on_reliable_transports() -> None:
    # RFC 8323 section 7.1: the value may be empty and MUST be ignored; decreasing and
    # repeated values are delivered in arrival order (INTEROP-NOTES 2).
    peer = RawPeer()
    client = peer.make_client()
    seen: list[Response] = []
    client.observe(URI, callback=seen.append)
    peer.clock.advance(0)
    _, register = peer.received()
    assert register.options.observe == 0
    token = register.token
    values: list[Any] = [7, None, 3, 3, 0, 2**24 - 1, 1]
    peer.send(csm(), *[
        Message(Code.CONTENT, token, Options([(OBSERVE, v)]), f"n{i}".encode())
        for i, v in enumerate(values)
    ])
    assert payloads(seen) == [f"n{i}".encode() for i in range(len(values))]
    assert seen[1].options.get(OBSERVE) == b""  # an empty Observe still counts


def cancelled_observation() -> tuple[RawPeer, Message, list[Any]]:
    """An observation the peer has answered once, then cancelled by the client: the
    peer, the registration request and what the cancel's Deferred fired with."""
    peer = RawPeer()
    observation = peer.make_client().observe(URI)
    peer.clock.advance(0)
    _, register = peer.received()
    peer.send(csm(), Message(Code.CONTENT, register.token, Options([(OBSERVE, 1)]), b"x"))
    return peer, register, result_of(observation.cancel())


def test_deregistration_answer_frees_the_token_even_if_it_is_an_error() -> None:
    peer, register, done = cancelled_observation()
    (cancel,) = peer.received()
    assert (cancel.token, cancel.options.observe) == (register.token, 1)
    peer.send(Message(Code.CONTENT, register.token, Options([(OBSERVE, 2)]), b"late"))
    assert done == []  # a late notification is not the answer
    peer.send(Message(Code.NOT_FOUND, register.token))
    assert done == [None]
    assert peer.protocol is not None and peer.protocol.channel.observing == 0


def test_deregistration_times_out_and_frees_the_token() -> None:
    peer, _register, done = cancelled_observation()
    peer.clock.advance(4.9)
    assert done == []
    peer.clock.advance(0.2)
    assert done == [None]
    assert peer.protocol is not None and peer.protocol.channel.observing == 0


def test_registration_timeout() -> None:
    network, client, counter = setup()
    counter.hold = True
    observation = client.observe(URI, timeout=2)
    network.flush()
    results = next_of(observation)
    network.clock.advance(2)
    network.flush()
    error = failure(results, RequestTimeout)
    assert str(error.value) == "no response from coap+tcp://127.0.0.1:5683 within 2 s"
    # The registration was cancelled on the wire (GET Observe=1, which this resource
    # holds too), and since it was never answered, its token is freed at once: nothing
    # waits for the deregistration's answer (closing the client is not held up).
    channel = network.links[0].client.channel
    assert channel.observing == 0
    assert len(counter.waiting) == 2  # the registration and the deregistration arrived
    # Late answers to the freed token are ignored.
    for d in counter.waiting:
        d.callback(Response.text("late"))
    network.flush()
    assert observation.notifications == 0
    closed = result_of(client.close())
    network.flush()
    assert closed == [None] and network.links[0].closed


def test_the_timeout_only_covers_the_first_response() -> None:
    network, client, counter = setup()
    observation = client.observe(URI, timeout=2)
    network.flush()
    network.clock.advance(60)
    network.flush()
    assert not observation.ended
    counter.bump()
    network.flush()
    assert observation.notifications == 2


def test_an_observation_keeps_its_connection_open() -> None:
    network, client, _counter = setup(idle_timeout=30, keepalive=None)
    observation = client.observe(URI)
    network.flush()
    network.clock.advance(120)
    network.flush()
    assert not network.links[0].closed
    observation.cancel()
    network.flush()
    network.clock.advance(30)
    network.flush()
    assert network.links[0].closed  # idle release once the observation is gone


def test_close_deregisters_first() -> None:
    network, client, counter = setup()
    observation = client.observe(URI)
    network.flush()
    closed = result_of(client.close())
    messages = network.links[0].client_output()
    assert messages[0].code == Code.GET and messages[0].options.observe == 1
    network.flush()
    assert closed == [None]
    assert counter.observer_count == 0
    assert observation.ended


def test_large_notifications_are_completed_block_wise() -> None:
    # Our Max-Message-Size is the base 1152: a 3,000-byte state comes as Block2 block 0;
    # the client fetches the rest with GETs (no Observe) before delivering it.
    network = MemoryNetwork()
    counter = Counter(body=b"." * 3000)
    network.root.putChild("counter", counter)
    client = make_client(network, connect_options=ConnectOptions(max_message_size=1152))
    seen: list[Response] = []
    client.observe(URI, callback=seen.append)
    network.flush()
    counter.bump()
    network.flush()
    assert [len(r.payload) for r in seen] == [3007, 3007]
    assert seen[1].payload.startswith(b"value 1...")
    assert OptionNumber.BLOCK2 not in seen[1].options
    assert seen[1].options.observe is not None


def test_a_failing_callback_does_not_stop_the_observation() -> None:
    network, client, counter = setup()
    calls: list[bytes] = []

    def callback(response: Response) -> None:
        calls.append(response.payload)
        raise RuntimeError("application bug")

    client.observe(URI, callback=callback)
    network.flush()
    counter.bump()
    network.flush()
    assert calls == [b"value 0", b"value 1"]


def test_bad_uri_raises_at_once() -> None:
    from coaptcp.core.uri import UriError

    _network, client, _ = setup()
    try:
        client.observe("coap+tcp://127.0.0.1/x#fragment")
    except UriError as error:
        assert "fragment" in str(error)
    else:
        raise AssertionError("no UriError")
