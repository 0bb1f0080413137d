"""The Channel's client side of Observe and its CSM wait, in memory (RFC 8323 sections
5.3 and 7): ``Channel.observe`` keeps its token for every notification, whatever the
Observe value; the token is never reused while held; ``when_csm_received``.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.observing import ChannelObservation, ObservationState
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Response
from coaptcp.testing import Harness, csm, failure, result_of

OBSERVE = OptionNumber.OBSERVE
PATH = Options.build(uri_path=["temp"])


class Recorder:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.ends: list[BaseException | None] = []

    def observe(self, h: Harness, options: Options = PATH) -> ChannelObservation:
        observation: ChannelObservation = h.channel.observe(
            options, on_notification=self.responses.append, on_end=self.ends.append
        )
        return observation


def opened() -> Harness:
    h = Harness(role=Role.INITIATOR)
    h.open()
    return h


def notification(token: bytes, value: Any, payload: bytes = b"") -> Message:
    return Message(Code.CONTENT, token, Options([(OBSERVE, value)]), payload)


def test_registration_is_a_get_with_observe_0() -> None:
    h = opened()
    recorder = Recorder()
    observation = recorder.observe(h, PATH.add(OBSERVE, 5))  # a given Observe is replaced
    (sent,) = h.sent()
    assert sent.code == Code.GET
    assert sent.token == observation.token and len(sent.token) == 4
    assert sent.options == Options([(OptionNumber.URI_PATH, "temp"), (OBSERVE, 0)])
    assert observation.state is ObservationState.REGISTERING
    assert h.channel.observing == 1


def test_every_notification_is_delivered_whatever_its_observe_value() -> None:
    h = opened()
    recorder = Recorder()
    observation = recorder.observe(h)
    h.sent()
    token = observation.token
    h.feed(*[notification(token, v, bytes([i])) for i, v in enumerate([9, 2, None, 2, 0])])
    assert [r.payload for r in recorder.responses] == [bytes([i]) for i in range(5)]
    assert observation.state is ObservationState.ACTIVE
    assert observation.notifications == 5
    assert recorder.ends == []
    # Pipelined requests meanwhile get their own tokens and responses.
    d = result_of(h.channel.request(Code.GET, PATH))
    (request,) = [m for m in h.sent() if m.code == Code.GET]
    assert request.token != token
    h.feed(Message(Code.CONTENT, request.token, payload=b"plain"))
    assert d[0].payload == b"plain"
    assert len(recorder.responses) == 5


def test_a_response_without_observe_ends_it_and_frees_the_token() -> None:
    h = opened()
    recorder = Recorder()
    observation = recorder.observe(h)
    h.feed(notification(observation.token, 1), Message(Code.CONTENT, observation.token))
    assert len(recorder.responses) == 2
    assert recorder.ends == [None]
    assert observation.state is ObservationState.ENDED
    assert h.channel.observing == 0
    h.feed(notification(observation.token, 2))  # a stray one afterwards is ignored
    assert len(recorder.responses) == 2


@pytest.mark.parametrize("code", [Code.NOT_FOUND, Code.INTERNAL_SERVER_ERROR])
def test_an_error_ends_it_even_with_observe(code: Code) -> None:
    h = opened()
    recorder = Recorder()
    observation = recorder.observe(h)
    h.feed(Message(code, observation.token, Options([(OBSERVE, 3)])))
    assert [r.code for r in recorder.responses] == [code]
    assert recorder.ends == [None]
    assert observation.end_reason == f"the server ended the observation with {code}"


def test_cancel_sends_observe_1_with_the_token_and_waits_for_the_answer() -> None:
    h = opened()
    recorder = Recorder()
    observation = recorder.observe(h)
    h.sent()
    h.feed(notification(observation.token, 1))
    done = result_of(observation.cancel())
    (cancel,) = h.sent()
    assert (cancel.code, cancel.token, cancel.options.observe) == (
        Code.GET, observation.token, 1
    )
    assert cancel.options.uri_path == ("temp",)
    assert recorder.ends == [None]  # over for the application at once
    h.feed(notification(observation.token, 2))  # in flight before the server saw it
    assert len(recorder.responses) == 1 and done == []
    # The token stays taken: new requests never get it.
    tokens = set()
    for _ in range(3):
        h.channel.request(Code.GET, PATH)
        tokens |= {m.token for m in h.sent()}
    assert observation.token not in tokens
    answer = Message(Code.CONTENT, observation.token, payload=b"last")
    h.feed(answer)
    assert len(done) == 1 and done[0].payload == b"last"
    assert h.channel.observing == 0
    # Cancelling again does nothing more.
    assert result_of(observation.cancel()) == [None]
    assert h.sent() == []


def test_connection_loss_ends_observations_with_an_error() -> None:
    h = opened()
    first, second = Recorder(), Recorder()
    first.observe(h)
    cancelling = second.observe(h)
    done = result_of(cancelling.cancel())
    h.lose()
    (error,) = first.ends
    assert isinstance(error, ConnectionClosedError)
    assert error.reason == "connection closed"
    assert second.ends == [None]  # it was cancelled already
    assert done == [None]
    assert h.channel.observing == 0


def test_observe_on_a_closed_channel_raises() -> None:
    h = opened()
    h.lose()
    with pytest.raises(ConnectionClosedError):
        Recorder().observe(h)


def test_a_registration_too_large_for_the_peer_is_not_sent() -> None:
    h = Harness(role=Role.INITIATOR)
    h.open(max_message_size=64)
    with pytest.raises(RequestNotSent):
        Recorder().observe(h, Options.build(uri_path=["x" * 100]))
    assert h.channel.observing == 0


def test_callback_errors_are_contained() -> None:
    h = opened()
    ends: list[Any] = []

    def broken(response: Response) -> None:
        raise RuntimeError("application bug")

    observation = h.channel.observe(PATH, on_notification=broken, on_end=ends.append)
    h.feed(notification(observation.token, 1), notification(observation.token, 2))
    assert observation.notifications == 2
    assert ends == []


# -- when_csm_received -----------------------------------------------------------------------


def test_when_csm_received_fires_on_the_peer_csm() -> None:
    h = Harness(role=Role.INITIATOR)
    waiting = result_of(h.channel.when_csm_received())
    assert waiting == []
    h.feed(csm(4096))
    assert waiting == [None]
    assert result_of(h.channel.when_csm_received()) == [None]


def test_when_csm_received_in_lenient_mode() -> None:
    h = Harness(role=Role.INITIATOR, require_csm=False)
    waiting = result_of(h.channel.when_csm_received())
    h.feed(Message(Code.CONTENT, b"\x01"))  # the peer's first message, not a CSM
    assert waiting == [None]


def test_when_csm_received_fails_on_loss_and_can_be_cancelled() -> None:
    h = Harness(role=Role.INITIATOR)
    waiting = result_of(h.channel.when_csm_received())
    cancelled: Deferred[None] = h.channel.when_csm_received()
    cancelled.cancel()
    h.lose()
    failure(waiting, ConnectionClosedError)
    failure(result_of(h.channel.when_csm_received()), ConnectionClosedError)
