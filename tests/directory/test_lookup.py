"""The lookup interface: endpoint and resource lookup, filters, paging (RFC 9176
sections 6.1-6.4)."""

from __future__ import annotations

from typing import Any

import pytest
from rd_helpers import DirectorySite

from coaptcp.core.codes import Code
from coaptcp.directory import parse_links

#: The payload of RFC 6690 section 5's 6th response, as in RFC 9176 figure 22.
PLATFORM = (b'</sensors>;ct=40;title="Sensor Index",'
            b'</sensors/temp>;rt=temperature-c;if=sensor,'
            b'</sensors/light>;rt=light-lux;if=sensor,'
            b'<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel=describedby,'
            b'</t>;anchor="/sensors/temp";rel=alternate')


@pytest.fixture
def two(rd: DirectorySite) -> DirectorySite:
    rd.register("ep=sensor1", "base=coap://sensor1.example.com", "et=tag:example.com,2020:platform",
                payload=PLATFORM)
    rd.register("ep=sensor2", "base=coap://sensor2.example.com", "et=tag:example.com,2020:platform",
                payload=PLATFORM)
    rd.register("ep=lamp", "d=floor-3", payload=b'</light>;rt="tag:example.com,2020:light"',
                peer=("2001:db8:3::129", 61616))
    return rd


def test_resource_lookup_resolves_relative_targets_and_anchors(two: DirectorySite) -> None:
    # RFC 9176 figure 22: absolute targets stay as they are, relative ones are resolved.
    assert two.lookup("res", "et=tag:example.com,2020:platform").split(",") == [
        f'<coap://{h}.example.com/sensors>;ct=40;title="Sensor Index"' for h in ["sensor1"]
    ] + [
        '<coap://sensor1.example.com/sensors/temp>;rt=temperature-c;if=sensor',
        '<coap://sensor1.example.com/sensors/light>;rt=light-lux;if=sensor',
        '<http://www.example.com/sensors/t123>;anchor="coap://sensor1.example.com/sensors/temp"'
        ';rel=describedby',
        '<coap://sensor1.example.com/t>;anchor="coap://sensor1.example.com/sensors/temp"'
        ';rel=alternate',
        '<coap://sensor2.example.com/sensors>;ct=40;title="Sensor Index"',
        '<coap://sensor2.example.com/sensors/temp>;rt=temperature-c;if=sensor',
        '<coap://sensor2.example.com/sensors/light>;rt=light-lux;if=sensor',
        '<http://www.example.com/sensors/t123>;anchor="coap://sensor2.example.com/sensors/temp"'
        ';rel=describedby',
        '<coap://sensor2.example.com/t>;anchor="coap://sensor2.example.com/sensors/temp"'
        ';rel=alternate',
    ]


def test_an_implicit_ipv6_base_has_brackets_and_its_port(two: DirectorySite) -> None:
    assert two.lookup("res", "ep=lamp") == (
        '<coap://[2001:db8:3::129]:61616/light>;rt="tag:example.com,2020:light"')


def test_endpoint_lookup_shows_ep_d_base_rt_and_the_attributes(two: DirectorySite) -> None:
    lamp = two.directory.find("lamp", "floor-3")
    assert lamp is not None
    assert two.lookup("ep", "d=floor-3") == (
        f'<{lamp.location}>;ep=lamp;d=floor-3;base="coap://[2001:db8:3::129]:61616"'
        f';rt=core.rd-ep')
    sensor1 = two.directory.find("sensor1")
    assert sensor1 is not None
    assert two.lookup("ep", "ep=sensor1") == (
        f'<{sensor1.location}>;ep=sensor1;base="coap://sensor1.example.com";rt=core.rd-ep'
        f';et="tag:example.com,2020:platform"')


def _endpoints(rd: DirectorySite, *query: str, **kwargs: Any) -> list[str]:
    return [link.values("ep")[0] for link in parse_links(rd.lookup("ep", *query, **kwargs))]


def _targets(rd: DirectorySite, *query: str, **kwargs: Any) -> list[str]:
    return [link.target for link in parse_links(rd.lookup("res", *query, **kwargs))]


def test_filters_on_endpoints_and_their_resources(two: DirectorySite) -> None:
    assert _endpoints(two) == ["sensor1", "sensor2", "lamp"]
    assert _endpoints(two, "ep=sensor*") == ["sensor1", "sensor2"]
    assert _endpoints(two, "rt=core.rd-ep") == ["sensor1", "sensor2", "lamp"]
    # An endpoint matches when one of its resource links does (section 6.2).
    assert _endpoints(two, "rt=tag:example.com,2020:light") == ["lamp"]
    assert _endpoints(two, "rt=light-lux") == ["sensor1", "sensor2"]
    assert _endpoints(two, "rt=light-lux", "ep=sensor2") == ["sensor2"]
    assert _endpoints(two, "if=nothing") == []
    assert _endpoints(two, "base=coap://sensor2*") == ["sensor2"]
    # A flag-style criterion asks for the attribute's presence.
    assert _endpoints(two, "d") == ["lamp"]


def test_resource_filters_all_hold_and_endpoint_criteria_apply_to_every_link(
    two: DirectorySite,
) -> None:
    assert _targets(two, "rt=temperature-c") == [
        "coap://sensor1.example.com/sensors/temp", "coap://sensor2.example.com/sensors/temp"]
    assert _targets(two, "rt=temperature-c", "ep=sensor2") == [
        "coap://sensor2.example.com/sensors/temp"]
    assert _targets(two, "if=sensor", "rt=light*") == [
        "coap://sensor1.example.com/sensors/light", "coap://sensor2.example.com/sensors/light"]
    assert _targets(two, "d=floor-3") == ["coap://[2001:db8:3::129]:61616/light"]
    assert _targets(two, "title=Sensor Index", "ep=sensor1") == [
        "coap://sensor1.example.com/sensors"]
    assert _targets(two, "ep=nobody") == []


def test_href_and_anchor_compare_with_resolved_uris(two: DirectorySite) -> None:
    assert _targets(two, "href=coap://sensor2.example.com/t") == [
        "coap://sensor2.example.com/t"]
    assert _targets(two, "href=/t") == []  # section 6.2: href queries are in URI form
    assert _targets(two, "anchor=coap://sensor1.example.com/sensors/temp") == [
        "http://www.example.com/sensors/t123", "coap://sensor1.example.com/t"]
    lamp = two.directory.find("lamp", "floor-3")
    assert lamp is not None
    assert _endpoints(two, f"href={lamp.location}") == ["lamp"]
    # On a resource lookup href also matches the registration resource.
    assert _targets(two, f"href={lamp.location}") == ["coap://[2001:db8:3::129]:61616/light"]


def test_page_and_count(two: DirectorySite) -> None:
    every = _targets(two)
    assert len(every) == 11  # 5 + 5 + 1
    assert _targets(two, "count=4") == every[:4]
    assert _targets(two, "page=0", "count=4") == every[:4]
    assert _targets(two, "page=2", "count=4") == every[8:]
    assert _targets(two, "page=3", "count=4") == []
    assert _endpoints(two, "page=1", "count=2") == ["lamp"]
    assert two.lookup("res", "count=0") == ""


@pytest.mark.parametrize(
    ("query", "diagnostic"),
    [
        (("page=1",), "page cannot be used without count"),
        (("count=-1",), "count must be a number"),
        (("count=2", "count=3"), "count is given more than once"),
    ],
)
def test_bad_paging_gets_4_00(rd: DirectorySite, query: tuple[str, ...], diagnostic: str) -> None:
    for kind in ("ep", "res"):
        answer = rd.request(Code.GET, f"rd-lookup/{kind}", *query)
        assert answer.code == Code.BAD_REQUEST and diagnostic in answer.payload.decode()


def test_lookups_answer_link_format_only(rd: DirectorySite) -> None:
    assert rd.request(Code.GET, "rd-lookup/res", accept=50).code == Code.NOT_ACCEPTABLE
    assert rd.request(Code.GET, "rd-lookup/ep", accept=40).code == Code.CONTENT
    assert rd.lookup("res") == "" and rd.lookup("ep") == ""


def test_an_expired_or_removed_registration_is_not_shown(two: DirectorySite) -> None:
    sensor1 = two.directory.find("sensor1")
    assert sensor1 is not None
    two.directory.remove(sensor1)
    assert _endpoints(two) == ["sensor2", "lamp"]
    two.clock.advance(90000)
    assert _endpoints(two) == [] and _targets(two) == []


def test_link_local_registrations_are_shown_only_on_their_link(rd: DirectorySite) -> None:
    rd.register("ep=local", payload=b"</x>", peer=("fe80::1", 5683))
    rd.register("ep=global", payload=b"</y>", peer=("2001:db8::1", 5683))
    assert _endpoints(rd, peer=("2001:db8::2", 1)) == ["global"]
    assert _endpoints(rd, peer=("fe80::2", 1)) == ["local", "global"]
    assert _targets(rd, peer=("fe80::2", 1)) == ["coap://[fe80::1]/x", "coap://[2001:db8::1]/y"]
    assert _targets(rd, peer=("192.0.2.1", 1)) == ["coap://[2001:db8::1]/y"]


def test_answers_are_kept_until_a_registration_changes(two: DirectorySite) -> None:
    resource = two.root.children["rd-lookup"].children["res"]
    first = two.request(Code.GET, "rd-lookup/res", "rt=light*").payload
    assert two.request(Code.GET, "rd-lookup/res", "rt=light*").payload is first  # kept
    assert len(resource.cache) == 1  # type: ignore[attr-defined]
    two.register("ep=sensor3", payload=b"</l>;rt=light-lux")
    again = two.request(Code.GET, "rd-lookup/res", "rt=light*").payload
    assert again is not first and again.count(b"light-lux") == 3
    lamp = two.directory.find("lamp", "floor-3")
    assert lamp is not None
    before = two.lookup("res", "d=floor-3")
    assert before == two.lookup("res", "d=floor-3")
    two.request(Code.POST, lamp.location, "base=coap://lamp.example")  # an update changes it
    assert two.lookup("res", "d=floor-3").startswith("<coap://lamp.example/light>")


def test_the_answer_cache_is_bounded() -> None:
    from coaptcp.directory.lookup import LookupCache

    cache = LookupCache(max_entries=2, max_bytes=400)
    cache.put("a", 1, b"x" * 100)
    cache.put("b", 1, b"y" * 100)
    assert cache.get("a", 1) == b"x" * 100  # "a" is now the most recently used
    cache.put("c", 1, b"z" * 100)
    assert cache.get("b", 1) is None and len(cache) == 2 and cache.size == 200
    cache.put("d", 1, b"w" * 101)  # more than a quarter of max_bytes: not kept
    assert cache.get("d", 1) is None and cache.size == 200
    assert cache.get("a", 2) is None and len(cache) == 1  # another version: dropped
    cache.put("c", 1, b"")
    assert cache.size == 0
