"""Link-format as the directory reads and writes it (RFC 6690 section 2), and URI
reference resolution (RFC 3986 section 5.2, its examples in section 5.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coaptcp.directory.links import (
    LinkFormatError,
    LinkParam,
    StoredLink,
    format_link,
    format_links,
    format_param,
    parse_links,
    resolve_reference,
)


def test_the_rfc_6690_example_parses_with_every_parameter_kept() -> None:
    links = parse_links('</sensors/temp>;rt="temperature-c";if="sensor",\n'
                        '</sensors/light>;ct=41;rt="light-lux";if="sensor";obs,'
                        '<http://www.example.com/sensors/t123>;anchor="/sensors/temp"'
                        ';rel="describedby"')
    assert [link.target for link in links] == [
        "/sensors/temp", "/sensors/light", "http://www.example.com/sensors/t123"]
    assert links[1].params == (LinkParam("ct", "41"), LinkParam("rt", "light-lux", True),
                               LinkParam("if", "sensor", True), LinkParam("obs", None))
    assert links[2].anchor == "/sensors/temp"
    assert links[0].anchor is None


def test_values_split_relation_types_and_flags_count_as_empty() -> None:
    [link] = parse_links('</a>;rt="x y";title="a b";obs;RT=z')
    assert link.values("rt") == ["x", "y", "z"]  # names are case-insensitive
    assert link.values("title") == ["a b"]
    assert link.values("obs") == [""]
    assert link.values("if") == []


def test_quoted_pairs_and_whitespace_between_links() -> None:
    [a, b] = parse_links(' </a> ; title="say \\"hi\\"\\\\" ,\r\n\t</b>;sz=5 ')
    assert a.values("title") == ['say "hi"\\']
    assert b.params == (LinkParam("sz", "5"),)


def test_an_empty_document_has_no_links() -> None:
    assert parse_links("") == []
    assert parse_links(" \n") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/a", "expected '<'"),
        ("</a", "closing '>'"),
        ("</a>;", "parameter name"),
        ("</a>;rt=", "value for 'rt'"),
        ('</a>;rt="x', "closing '\"'"),
        ("</a>,", "ends with ','"),
        ("</a> </b>", "expected ','"),
        ("</a b>", "URI reference"),
        ('</a>;title="x\x01"', "control character"),
    ],
)
def test_what_is_not_link_format_is_refused_with_where(text: str, problem: str) -> None:
    with pytest.raises(LinkFormatError, match=problem):
        parse_links(text)


def test_more_links_than_allowed_is_refused() -> None:
    parse_links("</a>,</b>", max_links=2)
    with pytest.raises(LinkFormatError, match="more than 2 links"):
        parse_links("</a>,</b>,</c>", max_links=2)


BASE = "http://a/b/c/d;p?q"


@pytest.mark.parametrize(
    ("reference", "resolved"),
    [
        ("g:h", "g:h"), ("g", "http://a/b/c/g"), ("./g", "http://a/b/c/g"),
        ("g/", "http://a/b/c/g/"), ("/g", "http://a/g"), ("//g", "http://g"),
        ("?y", "http://a/b/c/d;p?y"), ("g?y", "http://a/b/c/g?y"), ("#s", "http://a/b/c/d;p?q#s"),
        ("", "http://a/b/c/d;p?q"), (".", "http://a/b/c/"), ("..", "http://a/b/"),
        ("../g", "http://a/b/g"), ("../../g", "http://a/g"), ("../../../g", "http://a/g"),
        ("/./g", "http://a/g"), ("g;x=1/../y", "http://a/b/c/y"),
    ],
)
def test_reference_resolution_follows_rfc_3986_section_5_4(reference: str,
                                                           resolved: str) -> None:
    assert resolve_reference(BASE, reference) == resolved


def test_a_base_without_a_path_takes_path_absolute_and_relative_references() -> None:
    assert resolve_reference("coap://[2001:db8::1]:61616", "/temp") == \
        "coap://[2001:db8::1]:61616/temp"
    assert resolve_reference("coap+tcp://h", "temp") == "coap+tcp://h/temp"
    assert resolve_reference("coap://h", "") == "coap://h"


def test_format_link_resolves_target_and_anchor_and_keeps_the_rest_as_written() -> None:
    [link] = parse_links('</t>;anchor="/sensors/temp";rel=alternate;title="x y";obs')
    assert format_link(link, "coap://h:1") == (
        '<coap://h:1/t>;anchor="coap://h:1/sensors/temp";rel=alternate;title="x y";obs')
    assert format_link(link) == '</t>;anchor="/sensors/temp";rel=alternate;title="x y";obs'


def test_format_param_quotes_what_is_not_a_plain_token() -> None:
    assert format_param("ep", "node1") == ";ep=node1"
    assert format_param("base", "coap://h") == ';base="coap://h"'
    assert format_param("title", 'a"b') == ';title="a\\"b"'
    assert format_param("x", "", False) == ';x=""'  # an empty value must be quoted
    assert format_param("obs", None) == ";obs"


_values = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12)
_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=6)


@given(st.lists(st.tuples(st.text("abc/._-", max_size=10),
                          st.lists(st.tuples(_names, st.none() | _values), max_size=4)),
                max_size=5))
def test_what_is_written_reads_back_the_same(links: list[tuple[str, list]]) -> None:  # type: ignore[type-arg]
    stored = [StoredLink(target, tuple(LinkParam(n, v, v is not None) for n, v in params))
              for target, params in links]
    assert parse_links(format_links(stored)) == stored
