"""The pure parts of calling home: reading the call-home URI (RFC 9176 section 5), the
answers to a registration (section 5.3) and the back-off delays."""

from __future__ import annotations

import pytest

from coaptcp.callhome import Backoff, CallHome, Directory, RegistrationRefused
from coaptcp.callhome.registration import (
    DEFAULT_LIFETIME,
    links_of,
    refresh_delay,
    registration_location,
)
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.uri import UriError
from coaptcp.server.request import Response
from coaptcp.server.resource import Resource, Site

# -- the URI --------------------------------------------------------------------------


def test_the_uri_gives_the_registration_resource_and_parameters() -> None:
    directory = Directory.from_uri("coap+tcp://backend.example/rd?ep=node1&d=lab")
    assert directory.endpoint == "node1"
    assert directory.lifetime == DEFAULT_LIFETIME
    assert directory.uri.path == ("rd",)
    assert directory.uri.query == ("ep=node1", "d=lab", "lt=90000")
    assert directory.origin == "coap+tcp://backend.example:5683"
    assert directory.location_uri(("rd", "7")).path == ("rd", "7")
    assert directory.location_uri(("rd", "7")).query == ()


def test_the_lifetime_comes_from_the_argument_or_the_uri() -> None:
    assert Directory.from_uri("coap+tcp://b/rd?ep=n", 120).uri.query == ("ep=n", "lt=120")
    assert Directory.from_uri("coap+tcp://b/rd?ep=n&lt=77").lifetime == 77
    assert Directory.from_uri("coap+tcp://b/rd?lt=77&ep=n", 77).uri.query == ("ep=n", "lt=77")


@pytest.mark.parametrize(
    ("uri", "lifetime", "words"),
    [
        ("coap://b/rd?ep=n", None, "no connection"),
        ("coaps://b/rd?ep=n", None, "no connection"),
        ("coap+tcp://b?ep=n", None, "path of the directory"),
        ("coap+tcp://b/rd", None, "?ep=NAME"),
        ("coap+tcp://b/rd?ep=", None, "ep is empty"),
        ("coap+tcp://b/rd?ep=a&ep=b", None, "more than once"),
        ("coap+tcp://b/rd?ep=" + "x" * 64, None, "longer than 63"),
        ("coap+tcp://b/rd?ep=n&lt=0", None, "between 1 and"),
        ("coap+tcp://b/rd?ep=n&lt=4294967296", None, "between 1 and"),
        ("coap+tcp://b/rd?ep=n&lt=ten", None, "whole number"),
        ("coap+tcp://b/rd?ep=n&lt=1&lt=2", None, "more than once"),
        ("coap+tcp://b/rd?ep=n&lt=60", 90, "differs"),
        ("coap+tcp://b/rd?ep=n", 0, "between 1 and"),
    ],
)
def test_bad_call_home_uris_are_refused(uri: str, lifetime: int | None, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("?", r"\?")):
        Directory.from_uri(uri, lifetime)


def test_over_tls_the_name_may_come_from_the_identity() -> None:
    # The directory can take the name from the certificate or PSK identity.
    directory = Directory.from_uri("coaps+tcp://b/rd")
    assert directory.endpoint is None and directory.uri.query == ("lt=90000",)


def test_a_bad_uri_is_a_uri_error() -> None:
    with pytest.raises(UriError):
        Directory.from_uri("http://b/rd?ep=n")


def test_paths_and_uris_on_the_back_end_resolve_and_others_do_not() -> None:
    directory = Directory.from_uri("coap+tcp://b:9999/rd?ep=n")
    assert directory.resolve("/a/b?x=1").path == ("a", "b")
    assert directory.resolve("coap+tcp://b:9999/c").path == ("c",)
    with pytest.raises(ValueError, match="not on the back end"):
        directory.resolve("coap+tcp://b/c")
    with pytest.raises(ValueError, match="starts with"):
        directory.resolve("c")


def test_call_home_checks_its_settings() -> None:
    for keyword in ("keepalive", "ping_timeout", "request_timeout", "deregister_timeout"):
        with pytest.raises(ValueError, match=keyword):
            CallHome("coap+tcp://b/rd?ep=n", reactor=object(), **{keyword: 0})
    with pytest.raises(ValueError, match="max_observations"):
        CallHome("coap+tcp://b/rd?ep=n", reactor=object(), max_observations=-1)


# -- the answers ----------------------------------------------------------------------


def test_a_created_answer_gives_the_location() -> None:
    location = Options([(OptionNumber.LOCATION_PATH, "rd"), (OptionNumber.LOCATION_PATH, "x")])
    assert registration_location(Response(Code.CREATED, options=location)) == ("rd", "x")


def test_other_answers_are_refusals_with_their_diagnostic() -> None:
    with pytest.raises(RegistrationRefused) as refused:
        registration_location(Response(Code.BAD_REQUEST, b"ep is empty\x00"))
    assert refused.value.code == Code.BAD_REQUEST
    assert refused.value.diagnostic == "ep is empty?"
    assert refused.value.retry_after is None
    with pytest.raises(RegistrationRefused) as busy:
        registration_location(Response(Code.SERVICE_UNAVAILABLE))
    assert busy.value.retry_after == 60  # Max-Age's default (RFC 7252 section 5.10.5)
    with pytest.raises(RegistrationRefused, match="no Location-Path"):
        registration_location(Response(Code.CREATED))


def test_the_links_are_the_sites_well_known_core() -> None:
    class Temp(Resource):
        link_attributes = {"rt": "temperature", "ct": 0}

        def render_GET(self, request: object) -> Response:
            return Response.text("1")

    root = Resource()
    root.putChild("temp", Temp())
    root.putChild("empty", Resource())  # renders nothing: not a link
    assert links_of(Site(root)) == '</temp>;rt="temperature";ct=0'
    assert links_of(None) == ""


def test_updates_go_at_nine_tenths_of_the_lifetime() -> None:
    assert refresh_delay(100) == 90.0
    assert refresh_delay(90_000) == 81_000.0


# -- back-off -------------------------------------------------------------------------


def test_the_ceiling_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1, factor=2, max_delay=300)
    assert [backoff.ceiling(n) for n in range(10)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff.ceiling(10_000) == 300  # no overflow, however many failures


def test_jitter_shortens_each_delay_by_at_most_its_share() -> None:
    backoff = Backoff(initial=4, factor=2, max_delay=100, jitter=0.25)
    assert backoff.delay(0, lambda: 0.0) == 4.0
    assert backoff.delay(0, lambda: 0.999999) == pytest.approx(3.0, abs=1e-5)
    assert backoff.delay(1, lambda: 0.5) == 7.0
    assert backoff.delay(3, lambda: 2.0) == 24.0  # a bad random source stays in bounds
    assert Backoff(jitter=1).delay(0, lambda: 0.999) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "settings",
    [
        {"initial": 0},
        {"factor": 0.5},
        {"initial": 10, "max_delay": 5},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"reset_after": -1},
        {"initial": float("inf")},
        {"max_delay": float("nan")},
    ],
)
def test_bad_back_off_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**settings)
