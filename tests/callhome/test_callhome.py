"""A device calling home, in memory: registration with its links, the back end reaching
the device over the device's own connection, updates before the lifetime ends, 4.04 and
refusals, the keepalive Ping, reconnecting with back-off, and deregistration on stop
(RFC 8323 sections 3.3, 5.4, 5.5; RFC 9176 section 5.3)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from callhome_helpers import URI, Backend, make_backend
from twisted.python.failure import Failure

from coaptcp.callhome import (
    Backoff,
    CallHome,
    CallHomeState,
    NotRegistered,
    Registration,
)
from coaptcp.core.codes import Code
from coaptcp.core.linkformat import LINK_FORMAT
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site
from coaptcp.testing import failure, result_of, success


def get_from_device(backend: Backend, key: str, *path: str) -> Response:
    """The back end's GET to the device, over the connection the device registered on."""
    channel = backend.rd.registrations[key].channel
    results = result_of(channel.request(Code.GET, Options.build(uri_path=path)))
    backend.flush()
    response: Response = success(results)
    return response


# -- registering ----------------------------------------------------------------------


def test_registers_with_its_links_and_the_lifetime() -> None:
    backend = make_backend()
    device = backend.device(lifetime=600)
    assert device.state is CallHomeState.REGISTERED
    [seen] = backend.rd.seen
    assert seen.method == Code.POST and seen.path == ("rd",)
    assert seen.query == ("ep=node1", "lt=600")
    assert seen.request.options.content_format == LINK_FORMAT
    links = seen.payload.decode()
    assert '</hello>;rt="demo.hello"' in links and "</time>" in links
    assert "/.well-known/core" not in links  # the discovery resource is not a link
    registration = device.registration
    assert isinstance(registration, Registration)
    assert registration.location == ("rd", "1") and registration.path == "/rd/1"
    assert registration.endpoint == "node1" and registration.lifetime == 600
    assert registration.expires_at == 600.0
    assert device.registrations_made == 1 and device.failures == 0
    assert len(backend.network.links) == 1


def test_the_back_end_reaches_the_device_over_the_devices_connection() -> None:
    # RFC 8323 section 3.3: either end of the connection may send requests.
    backend = make_backend()
    backend.device()
    response = get_from_device(backend, "1", "hello")
    assert response.code == Code.CONTENT
    assert response.payload == b"Hello, world!"
    assert len(backend.network.links) == 1  # the device's one connection, nothing else


def test_a_device_without_a_site_answers_5_01_and_registers_no_links() -> None:
    backend = make_backend()
    device = CallHome(URI, None, reactor=backend.clock,
                      connectors={"coap+tcp": backend.network.connector})
    device.startService()
    backend.flush()
    assert device.state is CallHomeState.REGISTERED
    assert backend.rd.seen[0].payload == b""
    assert get_from_device(backend, "1", "hello").code == Code.NOT_IMPLEMENTED


def test_links_given_replace_the_sites() -> None:
    backend = make_backend()
    backend.device(links='</temp>;rt="temperature"')
    assert backend.rd.seen[0].payload == b'</temp>;rt="temperature"'


def test_a_root_resource_is_served_as_a_site() -> None:
    class Temp(Resource):
        def render_GET(self, request: Any) -> Response:
            return Response.text("21.5")

    root = Resource()
    root.putChild("temp", Temp())
    backend = make_backend()
    device = CallHome(URI, root, reactor=backend.clock,
                      connectors={"coap+tcp": backend.network.connector})
    device.startService()
    backend.flush()
    assert backend.rd.seen[0].payload == b"</temp>"
    assert get_from_device(backend, "1", "temp").payload == b"21.5"


def test_registration_parameters_of_the_uri_are_sent() -> None:
    backend = make_backend()
    backend.device("coap+tcp://127.0.0.1/rd?ep=node1&d=floor2&et=oic.d.sensor&lt=120")
    assert backend.rd.seen[0].query == ("ep=node1", "d=floor2", "et=oic.d.sensor", "lt=120")


def test_a_host_name_goes_as_uri_host_and_the_port_is_the_uris() -> None:
    backend = make_backend()
    backend.device("coap+tcp://backend.example:15683/rd?ep=node1")
    _, host, port, _ = backend.network.attempts[0]
    assert (host, port) == ("backend.example", 15683)
    assert backend.rd.seen[0].request.options.uri_host == "backend.example"


def test_the_hooks_and_deferreds_report_registration_and_loss() -> None:
    events: list[Any] = []

    class Device(CallHome):
        def registered(self, registration: Registration) -> None:
            events.append(("registered", registration.path))

        def disconnected(self, reason: str) -> None:
            events.append(("disconnected", reason))

    backend = make_backend()
    device = backend.device(start=False, device_class=Device)
    registered = result_of(device.when_registered())
    lost = result_of(device.when_disconnected())
    device.startService()
    backend.flush()
    assert success(registered).path == "/rd/1"
    assert success(result_of(device.when_registered())).path == "/rd/1"  # at once now
    backend.network.links[0].drop()
    assert "connection closed" in success(lost)
    assert events == [("registered", "/rd/1"), ("disconnected", success(lost))]
    backend.advance(1.0)
    assert events[-1] == ("registered", "/rd/2")


def test_a_failing_hook_is_logged_and_changes_nothing() -> None:
    class Device(CallHome):
        def registered(self, registration: Registration) -> None:
            raise RuntimeError("the app's bug")

    backend = make_backend()
    device = backend.device(device_class=Device)
    assert device.state is CallHomeState.REGISTERED


# -- updating -------------------------------------------------------------------------


def test_updates_before_the_lifetime_ends() -> None:
    # RFC 9176 section 5.3.1: an empty POST to the location, before the lifetime ends.
    backend = make_backend()
    device = backend.device(lifetime=100)
    backend.advance(89.9)
    assert len(backend.rd.seen) == 1
    backend.advance(0.1)
    update = backend.rd.seen[-1]
    assert (update.time, update.method, update.path) == (90.0, Code.POST, ("rd", "1"))
    assert update.payload == b"" and update.query == ()
    registration = device.registration
    assert registration is not None
    assert registration.updates == 1 and registration.refreshed_at == 90.0
    assert registration.expires_at == 190.0
    backend.advance(90.0)
    assert [seen.time for seen in backend.rd.seen] == [0.0, 90.0, 180.0]
    assert len(backend.network.links) == 1  # all on the one connection


def test_an_update_answered_4_04_registers_anew_on_the_same_connection() -> None:
    backend = make_backend()
    device = backend.device(lifetime=100)
    del backend.rd.registrations["1"]  # the directory forgot it
    backend.advance(90.0)
    assert [(seen.method, seen.path) for seen in backend.rd.seen] == [
        (Code.POST, ("rd",)), (Code.POST, ("rd", "1")), (Code.POST, ("rd",))]
    assert device.state is CallHomeState.REGISTERED
    assert device.registration is not None and device.registration.path == "/rd/2"
    assert len(backend.network.links) == 1
    assert device.registrations_made == 2


def test_failed_updates_are_retried_then_it_registers_anew_before_expiry() -> None:
    backend = make_backend()
    device = backend.device(lifetime=100)
    backend.rd.update_answers = [Response(Code.INTERNAL_SERVER_ERROR)] * 4
    backend.run_for(90.0)  # update 1 fails; retried after 1 s, 2 s, 4 s (back-off)
    backend.run_for(24.0)
    times = [seen.time for seen in backend.rd.seen if seen.path == ("rd", "1")]
    assert times == [90.0, 91.0, 93.0, 97.0]
    # The fourth failure at 97 s: a retry 8 s later would pass the expiry (100 s), so
    # the device registers anew at once instead.
    posts = [seen for seen in backend.rd.seen if seen.path == ("rd",)]
    assert [seen.time for seen in posts] == [0.0, 97.0]
    assert device.state is CallHomeState.REGISTERED
    assert device.registration is not None and device.registration.path == "/rd/2"


def test_an_update_answered_5_03_waits_its_max_age() -> None:
    backend = make_backend()
    backend.device(lifetime=1000)
    backend.rd.update_answers = [Response(Code.SERVICE_UNAVAILABLE,
                                          options=Options([(OptionNumber.MAX_AGE, 30)]))]
    backend.advance(900.0)
    backend.advance(29.0)
    assert [seen.time for seen in backend.rd.seen] == [0.0, 900.0]
    backend.advance(1.0)
    assert [seen.time for seen in backend.rd.seen] == [0.0, 900.0, 930.0]


# -- refusals and back-off ------------------------------------------------------------


def test_a_refused_registration_releases_the_connection_and_backs_off() -> None:
    backend = make_backend()
    backend.rd.answers = [Response(Code.FORBIDDEN, b"not you")]
    device = backend.device()
    assert device.state is CallHomeState.WAITING
    assert device.last_error == "the directory answered 4.03: not you"
    assert backend.network.links[0].closed  # released: the back end holds nothing
    assert device.retry_at == 1.0
    backend.advance(1.0)
    assert device.state is CallHomeState.REGISTERED
    assert len(backend.network.links) == 2


def test_a_registration_answered_5_03_waits_at_least_its_max_age() -> None:
    # RFC 9176 section 4 / RFC 7252 5.9.3.4: a full directory says when to come back.
    backend = make_backend()
    backend.rd.answers = [Response(Code.SERVICE_UNAVAILABLE,
                                   options=Options([(OptionNumber.MAX_AGE, 20)]))]
    device = backend.device()
    assert device.retry_at == 20.0
    backend.advance(19.9)
    assert device.state is CallHomeState.WAITING
    backend.advance(0.1)
    assert device.state is CallHomeState.REGISTERED


def test_a_created_answer_without_location_is_a_failure() -> None:
    backend = make_backend()
    backend.rd.answers = [Response(Code.CREATED)]
    device = backend.device()
    assert device.state is CallHomeState.WAITING
    assert device.last_error is not None and "Location-Path" in device.last_error


def test_back_off_grows_exponentially_up_to_the_maximum() -> None:
    backend = make_backend()
    backend.network.refuse = True
    device = backend.device(backoff=Backoff(initial=1, factor=2, max_delay=10, jitter=0))
    for _ in range(7):
        assert device.retry_at is not None
        backend.advance(device.retry_at - backend.clock.seconds())
    assert backend.attempt_times == [0.0, 1.0, 3.0, 7.0, 15.0, 25.0, 35.0, 45.0]
    assert device.failures == 8
    assert "connection refused" in (device.last_error or "")


def test_back_off_jitter_stays_within_its_bounds() -> None:
    import random

    draws = random.Random(7)
    backend = make_backend()
    backend.network.refuse = True
    times: list[float] = []
    original = backend.network.connector

    def recording(reactor: Any, host: str, port: int, options: Any) -> Any:
        times.append(backend.clock.seconds())
        return original(reactor, host, port, options)

    backoff = Backoff(initial=2, factor=3, max_delay=50, jitter=0.5)
    device = CallHome(URI, None, reactor=backend.clock, connectors={"coap+tcp": recording},
                      backoff=backoff, random=draws.random)
    device.startService()
    for _ in range(12):
        assert device.retry_at is not None
        backend.clock.advance(device.retry_at - backend.clock.seconds())
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 12
    for failures, gap in enumerate(gaps):
        ceiling = min(50.0, 2.0 * 3.0**failures)
        assert ceiling * 0.5 <= gap <= ceiling, (failures, gap)
    assert max(gaps) <= 50.0
    assert len({round(gap, 6) for gap in gaps[5:]}) > 1  # jittered, not all the maximum


def test_a_lost_connection_is_called_again_and_registers_anew() -> None:
    backend = make_backend()
    device = backend.device()
    backend.network.links[0].drop()
    assert device.state is CallHomeState.WAITING
    assert device.registration is None and device.connection is None
    assert device.connections_lost == 1
    backend.advance(1.0)
    assert device.state is CallHomeState.REGISTERED
    assert len(backend.network.links) == 2
    registrations = backend.rd.requests(Code.POST)
    assert [seen.path for seen in registrations] == [("rd",), ("rd",)]
    assert list(backend.rd.registrations) == ["2"]  # the same ep replaced the first
    assert get_from_device(backend, "2", "hello").payload == b"Hello, world!"


def test_a_connection_that_lasted_resets_the_back_off() -> None:
    backend = make_backend()
    backend.network.refuse = True
    device = backend.device()
    backend.advance(1.0)
    backend.advance(2.0)
    assert device.failures == 3
    backend.network.refuse = False
    backend.advance(4.0)
    assert device.state is CallHomeState.REGISTERED
    backend.network.links[-1].drop()  # lost after a short while: still backing off
    assert device.retry_at == backend.clock.seconds() + 8.0
    backend.advance(8.0)
    backend.advance(60.0)  # lasted the reset_after of 60 s
    backend.network.links[-1].drop()
    assert device.failures == 1
    assert device.retry_at == backend.clock.seconds() + 1.0


def test_the_back_end_releasing_the_connection_makes_the_device_call_again() -> None:
    backend = make_backend()
    device = backend.device()
    backend.network.links[0].server.release("restarting")
    backend.flush()
    assert device.state is CallHomeState.WAITING
    backend.advance(1.0)
    assert device.state is CallHomeState.REGISTERED


# -- keepalive ------------------------------------------------------------------------


def test_pings_a_silent_back_end_and_stays_registered_while_it_answers() -> None:
    backend = make_backend()
    device = backend.device(keepalive=30, ping_timeout=10)
    link = backend.network.links[0]
    backend.clock.advance(30.0)
    pings = [message for message in link.client_output() if message.code == Code.PING]
    assert len(pings) == 1  # RFC 8323 section 5.4
    backend.flush()
    backend.advance(10.0)
    assert device.state is CallHomeState.REGISTERED and not link.closed


def test_no_pong_drops_the_connection_and_calls_home_again() -> None:
    backend = make_backend()
    device = backend.device(keepalive=30, ping_timeout=10)
    link = backend.network.links[0]
    link.freeze()  # the back end (or the NAT) went silent
    backend.advance(30.0)
    assert device.state is CallHomeState.REGISTERED
    backend.advance(10.0)
    assert link.closed
    assert device.state is CallHomeState.WAITING
    assert device.connections_lost == 1
    backend.advance(1.0)
    assert device.state is CallHomeState.REGISTERED
    assert len(backend.network.links) == 2


def test_no_keepalive_sends_no_ping() -> None:
    backend = make_backend()
    backend.device(keepalive=None)
    backend.clock.advance(3600.0)
    assert not [m for m in backend.network.links[0].client_output() if m.code == Code.PING]


# -- talking to the back end ----------------------------------------------------------


def test_requests_to_the_back_end_go_over_the_registered_connection() -> None:
    backend = make_backend()
    device = backend.device()
    results = result_of(device.request("GET", "/hello"))
    backend.flush()
    assert success(results).payload == b"Hello, world!"
    rtt = result_of(device.ping())
    backend.flush()
    assert success(rtt) >= 0
    assert len(backend.network.links) == 1


def test_requests_fail_when_not_registered_and_elsewhere() -> None:
    backend = make_backend()
    backend.network.refuse = True
    device = backend.device()
    failure(result_of(device.request("GET", "/hello")), NotRegistered)
    failure(result_of(device.ping()), NotRegistered)
    backend.network.refuse = False
    backend.advance(1.0)
    failure(result_of(device.request("GET", "coap+tcp://elsewhere/hello")), ValueError)
    failure(result_of(device.request("GET", "hello")), ValueError)
    assert len(backend.network.links) == 1  # nothing opened a connection on its own


# -- stopping -------------------------------------------------------------------------


def test_stop_removes_the_registration_and_releases_the_connection() -> None:
    # RFC 9176 section 5.3.2 (DELETE the location), RFC 8323 section 5.5 (Release).
    backend = make_backend()
    device = backend.device()
    lost = result_of(device.when_disconnected())
    stopped = result_of(device.stopService())
    backend.flush()
    assert success(stopped) is None
    delete = backend.rd.seen[-1]
    assert (delete.method, delete.path) == (Code.DELETE, ("rd", "1"))
    assert backend.rd.registrations == {}
    link = backend.network.links[0]
    assert link.closed
    assert link.server.channel.connection.release_received
    assert device.state is CallHomeState.STOPPED and device.registration is None
    assert success(lost) == "call home stopped"
    backend.advance(3600.0)
    assert len(backend.network.attempts) == 1  # nothing calls home any more
    assert backend.clock.getDelayedCalls() == []


def test_stop_while_backing_off_cancels_the_next_attempt() -> None:
    backend = make_backend()
    backend.network.refuse = True
    device = backend.device()
    stopped = result_of(device.stopService())
    assert success(stopped) is None
    backend.advance(3600.0)
    assert len(backend.network.attempts) == 1
    assert device.state is CallHomeState.STOPPED


def test_stop_while_connecting_abandons_the_attempt() -> None:
    backend = make_backend()
    backend.network.hold = True
    device = backend.device()
    assert device.state is CallHomeState.CONNECTING
    stopped = result_of(device.stopService())
    backend.flush()
    assert success(stopped) is None
    backend.network.complete()
    backend.advance(3600.0)
    assert backend.rd.seen == []
    assert device.state is CallHomeState.STOPPED


def test_stop_when_the_directory_does_not_answer_the_removal_still_releases() -> None:
    backend = make_backend()
    device = backend.device(deregister_timeout=5)
    link = backend.network.links[0]
    link.freeze()
    stopped = result_of(device.stopService())
    backend.advance(5.0)
    backend.advance(10.0)  # the Release's own timeout
    assert len(stopped) == 1 and not isinstance(stopped[0], Failure)
    assert link.closed


def test_a_stopped_device_can_start_again() -> None:
    backend = make_backend()
    device = backend.device()
    result_of(device.stopService())
    backend.flush()
    device.startService()
    backend.flush()
    assert device.state is CallHomeState.REGISTERED
    assert device.registration is not None and device.registration.path == "/rd/2"


@pytest.mark.parametrize("scheme", ["coap+ws"])
def test_other_connection_schemes_use_their_connector(scheme: str) -> None:
    backend = make_backend()
    device = backend.device(f"{scheme}://127.0.0.1/rd?ep=node1")
    assert device.state is CallHomeState.REGISTERED
    assert backend.network.attempts[0][2] == 80


def test_the_site_is_served_to_the_back_end_on_every_new_connection() -> None:
    backend = make_backend()
    site = Site(Resource())
    device = backend.device(site=site)
    assert device.connect_options.site is site
    assert backend.network.attempts[0][3].site is site
