"""A calling-home device observing its back end (RFC 7641 over RFC 8323 section 7): the
observation is registered with the registration, follows the device onto every new
connection, ends for good only when the back end ends it or it is cancelled, and is
bounded."""

from __future__ import annotations

from callhome_helpers import Backend, make_backend

from coaptcp.callhome import CallHomeError, CallHomeState
from coaptcp.core.codes import Code
from coaptcp.server.request import Response
from coaptcp.testing import result_of, success


def observer_count(backend: Backend) -> int:
    return backend.config.observer_count


def test_an_observation_made_before_registering_starts_with_the_registration() -> None:
    backend = make_backend()
    device = backend.device(start=False)
    seen: list[Response] = []
    observation = device.observe("/config", seen.append)
    assert not observation.active
    device.startService()
    backend.flush()
    assert observation.active and observer_count(backend) == 1
    assert [response.payload for response in seen] == [b"v1"]
    backend.config.change("v2")
    backend.flush()
    assert [response.payload for response in seen] == [b"v1", b"v2"]
    assert observation.notifications == 2 and observation.registrations == 1


def test_the_observation_is_registered_again_after_every_reconnect() -> None:
    backend = make_backend()
    device = backend.device()
    seen: list[bytes] = []
    observation = device.observe("/config", lambda response: seen.append(response.payload))
    backend.flush()
    assert seen == [b"v1"]
    backend.network.links[0].drop()
    assert not observation.active and not observation.ended
    assert observer_count(backend) == 0  # it ended with the connection (section 7.4)
    backend.config.change("v2")  # while the device is away
    backend.advance(1.0)
    assert device.state is CallHomeState.REGISTERED
    assert observation.active and observation.registrations == 2
    assert observer_count(backend) == 1
    assert seen == [b"v1", b"v2"]  # the current state, at once on the new connection
    backend.config.change("v3")
    backend.flush()
    assert seen == [b"v1", b"v2", b"v3"]
    # The registration went out after the directory's answer, on the new connection.
    [_first, second] = backend.rd.requests(Code.POST)
    assert second.request.channel is backend.network.links[1].server.channel


def test_an_observation_the_back_end_ends_is_not_registered_again() -> None:
    backend = make_backend()
    device = backend.device()
    seen: list[Response] = []
    observation = device.observe("/nothing-here", seen.append)
    backend.flush()
    assert [response.code for response in seen] == [Code.NOT_FOUND]
    assert observation.ended and observation.end_reason is not None
    assert device.observations == []
    backend.network.links[0].drop()
    backend.advance(1.0)
    assert observation.registrations == 1
    assert [response.code for response in seen] == [Code.NOT_FOUND]


def test_cancel_deregisters_and_frees_the_slot() -> None:
    backend = make_backend()
    device = backend.device(max_observations=1)
    observation = device.observe("/config", lambda response: None)
    backend.flush()
    try:
        device.observe("/config", lambda response: None)
    except CallHomeError as error:
        assert "max_observations" in str(error)
    else:
        raise AssertionError("a second observation was accepted beyond the bound")
    ended = result_of(observation.when_ended())
    cancelled = result_of(observation.cancel())
    backend.flush()
    assert success(cancelled) is None and success(ended) is None
    assert observer_count(backend) == 0
    assert device.observations == []
    device.observe("/config", lambda response: None)  # the slot is free again
    backend.network.links[0].drop()
    backend.advance(1.0)
    assert observer_count(backend) == 1


def test_stop_deregisters_the_observations_and_start_registers_them_again() -> None:
    backend = make_backend()
    device = backend.device()
    seen: list[bytes] = []
    observation = device.observe("/config", lambda response: seen.append(response.payload))
    backend.flush()
    result_of(device.stopService())
    backend.flush()
    assert observer_count(backend) == 0 and not observation.ended
    device.startService()
    backend.flush()
    assert observer_count(backend) == 1 and seen == [b"v1", b"v1"]


def test_a_failing_callback_is_logged_and_the_observation_goes_on() -> None:
    backend = make_backend()
    device = backend.device()
    calls: list[bytes] = []

    def callback(response: Response) -> None:
        calls.append(response.payload)
        raise RuntimeError("the app's bug")

    observation = device.observe("/config", callback)
    backend.flush()
    backend.config.change("v2")
    backend.flush()
    assert calls == [b"v1", b"v2"] and not observation.ended
