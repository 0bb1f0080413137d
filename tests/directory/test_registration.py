"""The registration interface: discovery, registration, update, removal and expiry
(RFC 9176 sections 4.3, 5 and 5.3)."""

from __future__ import annotations

import pytest
from rd_helpers import LINKS, DirectorySite

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber
from coaptcp.directory import DEFAULT_LIFETIME, Registration


def test_well_known_core_advertises_the_directory(rd: DirectorySite) -> None:
    answer = rd.request(Code.GET, ".well-known/core", "rt=core.rd*")
    assert answer.payload.decode() == ('</rd>;rt="core.rd";ct=40,'
                                       '</rd-lookup/ep>;rt="core.rd-lookup-ep";ct=40,'
                                       '</rd-lookup/res>;rt="core.rd-lookup-res";ct=40')
    only_rd = rd.request(Code.GET, ".well-known/core", "rt=core.rd").payload
    assert only_rd == b'</rd>;rt="core.rd";ct=40'


def test_a_registration_is_created_at_a_location_with_its_parameters(rd: DirectorySite) -> None:
    answer = rd.request(Code.POST, "rd", "ep=node1", "lt=600", "et=oic.d.sensor",
                        payload=LINKS, content_format=40, peer=("192.0.2.7", 5683))
    assert answer.code == Code.CREATED
    assert OptionNumber.LOCATION_QUERY not in answer.options  # section 5: MUST NOT
    prefix, key = answer.options.location_path
    registration = rd.directory.find("node1")
    assert isinstance(registration, Registration)
    assert (prefix, key) == ("rd", registration.key)
    assert registration.location == f"/rd/{key}"
    assert registration.lifetime == 600
    assert registration.base == "coap://192.0.2.7"  # the default port is left out
    assert not registration.base_given
    assert registration.attributes == (("et", "oic.d.sensor"),)
    assert [link.target for link in registration.links] == [
        "/sensors/temp", "http://www.example.com/sensors/temp"]
    assert registration.connection is None  # over UDP
    assert rd.directory.find("node1", "other") is None


def test_without_lt_the_lifetime_is_25_hours(rd: DirectorySite) -> None:
    rd.register("ep=node1")
    registration = rd.directory.find("node1")
    assert registration is not None and registration.lifetime == DEFAULT_LIFETIME == 90000
    assert registration.expires_at == rd.clock.seconds() + 90000


def test_the_same_ep_and_d_replace_the_registration_at_the_same_location(
    rd: DirectorySite,
) -> None:
    first = rd.register("ep=node1", "et=a", "base=coap://old.example")
    again = rd.register("ep=node1", payload=b"</other>", peer=("192.0.2.9", 6000))
    assert again == first
    registration = rd.directory.find("node1")
    assert registration is not None and len(rd.directory) == 1
    assert [link.target for link in registration.links] == ["/other"]
    assert registration.attributes == ()  # the parameters are replaced too
    assert registration.base == "coap://192.0.2.9:6000"
    other_sector = rd.register("ep=node1", "d=floor-3")
    assert other_sector != first and len(rd.directory) == 2


def test_a_payload_without_content_format_is_read_as_link_format(rd: DirectorySite) -> None:
    rd.register("ep=n", payload=b"</a>;rt=x")
    registration = rd.directory.find("n")
    assert registration is not None and registration.links[0].values("rt") == ["x"]


@pytest.mark.parametrize(
    ("query", "diagnostic"),
    [
        ((), "ep (the endpoint name) is required"),
        (("ep=",), "ep is empty"),
        (("ep=" + "x" * 64,), "longer than 63 bytes"),
        (("ep=a\x85b",), "control character U+0085"),
        (("ep=a", "ep=b"), "ep is given more than once"),
        (("ep=a", "lt=0"), "lt must be between 1 and 4294967295"),
        (("ep=a", "lt=4294967296"), "lt must be between"),
        (("ep=a", "lt=soon"), "lt must be a number"),
        (("ep=a", "base=/relative"), "base must be an absolute URI"),
        (("ep=a", "base=coap://h#f"), "query or a fragment"),
        (("ep=a", "base=coap://[fe80::1%25eth0]"), "zone identifier"),
        (("ep=a", "d=" + "é" * 32), "d is longer than 63 bytes"),
        (("ep=a", "count=3"), "lookup parameter"),
    ],
)
def test_bad_registration_parameters_get_4_00_with_a_diagnostic(
    rd: DirectorySite, query: tuple[str, ...], diagnostic: str
) -> None:
    answer = rd.request(Code.POST, "rd", *query, payload=LINKS)
    assert answer.code == Code.BAD_REQUEST
    assert diagnostic in answer.payload.decode()
    assert len(rd.directory) == 0


def test_other_content_formats_and_bad_payloads_are_refused(rd: DirectorySite) -> None:
    answer = rd.request(Code.POST, "rd", "ep=a", payload=b"{}", content_format=50)
    assert answer.code == Code.UNSUPPORTED_CONTENT_FORMAT
    answer = rd.request(Code.POST, "rd", "ep=a", payload=b"\xff</a>")
    assert (answer.code, answer.payload[:19]) == (Code.BAD_REQUEST, b"the links are not U")
    answer = rd.request(Code.POST, "rd", "ep=a", payload=b"</a>;;")
    assert answer.code == Code.BAD_REQUEST and b"not link-format" in answer.payload
    assert len(rd.directory) == 0


def test_an_update_restarts_the_lifetime_and_an_unrefreshed_registration_expires(
    rd: DirectorySite,
) -> None:
    location = rd.register("ep=node1", "lt=100")
    rd.clock.advance(90)
    assert rd.request(Code.POST, location).code == Code.CHANGED
    rd.clock.advance(90)  # 180 s after registering, 90 after the update
    assert rd.directory.find("node1") is not None
    rd.clock.advance(10)
    assert rd.directory.find("node1") is None
    assert rd.request(Code.POST, location).code == Code.NOT_FOUND
    assert rd.clock.getDelayedCalls() == []


def test_an_update_may_change_lt_base_attributes_and_links(rd: DirectorySite) -> None:
    location = rd.register("ep=node1", "lt=100", "et=a", "x=1")
    answer = rd.request(Code.POST, location, "lt=7200", "base=coaps://new.example.com", "x=2",
                        payload=b"</b>", content_format=40)
    assert answer.code == Code.CHANGED
    registration = rd.directory.find("node1")
    assert registration is not None
    assert registration.lifetime == 7200 and registration.base_given
    assert registration.base == "coaps://new.example.com"
    assert registration.attributes == (("et", "a"), ("x", "2"))  # same key: overridden
    assert [link.target for link in registration.links] == ["/b"]
    assert rd.lookup("res", "ep=node1") == "<coaps://new.example.com/b>"
    # Without lt the last lifetime holds; an empty payload keeps the links.
    rd.clock.advance(7000)
    assert rd.request(Code.POST, location).code == Code.CHANGED
    assert registration.lifetime == 7200 and len(registration.links) == 1
    assert registration.expires_at == rd.clock.seconds() + 7200


def test_an_implicit_base_follows_the_updates_source_an_explicit_one_stays(
    rd: DirectorySite,
) -> None:
    location = rd.register("ep=a", peer=("192.0.2.1", 1000))
    rd.request(Code.POST, location, peer=("192.0.2.1", 2000))  # a NAT rebinding
    registration = rd.directory.find("a")
    assert registration is not None and registration.base == "coap://192.0.2.1:2000"
    location = rd.register("ep=b", "base=coap://fixed")
    rd.request(Code.POST, location, peer=("192.0.2.1", 3000))
    registration = rd.directory.find("b")
    assert registration is not None and registration.base == "coap://fixed"


def test_an_update_cannot_rename(rd: DirectorySite) -> None:
    location = rd.register("ep=a")
    answer = rd.request(Code.POST, location, "ep=b")
    assert answer.code == Code.BAD_REQUEST and b"cannot change ep" in answer.payload
    assert rd.request(Code.POST, location, "ep=a").code == Code.CHANGED


def test_delete_removes_and_get_reads_the_links_as_registered(rd: DirectorySite) -> None:
    location = rd.register("ep=node1")
    answer = rd.request(Code.GET, location)
    assert (answer.code, answer.content_format) == (Code.CONTENT, 40)
    assert answer.payload.decode() == (
        '</sensors/temp>;rt=temperature-c;if=sensor,'
        '<http://www.example.com/sensors/temp>;anchor="/sensors/temp";rel=describedby')
    registration = rd.directory.find("node1")
    assert registration is not None
    gone: list[str] = []
    registration.when_gone().addCallback(gone.append)
    assert rd.request(Code.DELETE, location).code == Code.DELETED
    assert rd.directory.find("node1") is None and not registration.alive
    assert gone == ["removed by its registrant (DELETE)"]
    assert rd.request(Code.DELETE, location).code == Code.NOT_FOUND
    assert rd.request(Code.GET, location).code == Code.NOT_FOUND
    assert rd.request(Code.GET, location + "/deeper").code == Code.NOT_FOUND
    assert rd.request(Code.GET, "rd").code == Code.METHOD_NOT_ALLOWED
    assert rd.request(Code.PUT, rd.register("ep=x")).code == Code.METHOD_NOT_ALLOWED


def test_registrations_are_not_listed_in_well_known_core(rd: DirectorySite) -> None:
    rd.register("ep=node1")
    payload = rd.request(Code.GET, ".well-known/core").payload
    assert b"/rd/" not in payload


def test_many_lifetimes_share_one_timer(rd: DirectorySite) -> None:
    for i in range(50):
        rd.register(f"ep=n{i}", f"lt={100 + i}")
    assert len(rd.clock.getDelayedCalls()) == 1
    for i in range(50):  # every refresh pushes a deadline; the stale ones are dropped
        location = rd.directory.find(f"n{i}").location.lstrip("/")  # type: ignore[union-attr]
        for _ in range(5):
            rd.request(Code.POST, location)
    assert len(rd.directory._expiry) <= 2 * 50 + 64
    assert len(rd.clock.getDelayedCalls()) == 1
    rd.clock.advance(120)  # n20 is due at 120 exactly
    assert sorted(r.endpoint for r in rd.directory) == [f"n{i}" for i in range(21, 50)]
    rd.clock.advance(100)
    assert len(rd.directory) == 0 and rd.clock.getDelayedCalls() == []


def test_without_an_ip_address_to_make_a_base_from_base_is_required(rd: DirectorySite) -> None:
    from coaptcp.core.options import Options
    from coaptcp.server import Request

    request = Request(Code.POST, b"t", Options.build(uri_path=["rd"], uri_query=["ep=a"]),
                      b"")  # e.g. from a UNIX socket: no IP address, no port
    answer = rd.site.handle(request)
    assert answer.code == Code.BAD_REQUEST and b"base is required" in answer.payload  # type: ignore[union-attr]
    request = Request(Code.POST, b"t", Options.build(
        uri_path=["rd"], uri_query=["ep=a", "base=coap://device.example"]), b"")
    assert rd.site.handle(request).code == Code.CREATED  # type: ignore[union-attr]
