"""URI decomposition and composition: RFC 7252 sections 6.4 and 6.5 as changed by RFC 8323
section 8 (draft -07 section 7), with the draft's coap+ws examples."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.uri import (
    DEFAULT_PORTS,
    SCHEMES,
    CoapUri,
    UriError,
    compose_uri,
    parse_uri,
    remove_dot_segments,
    websocket_url,
)

H, P, PATH, Q = OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH, \
    OptionNumber.URI_QUERY


def opts(*items: tuple[int, str | int]) -> Options:
    return Options(items)


# -- the draft's examples (draft -07 section 7.3 and 7.4, RFC 8323 appendix A) ---------------


def test_draft_coap_ws_example() -> None:
    # coap+ws://example.org/sensors/temperature?u=Cel
    #   -> ws://example.org/.well-known/coap, Uri-Path "sensors", "temperature",
    #      Uri-Query "u=Cel"; the GET in the example carries no Uri-Host (Host header).
    uri = parse_uri("coap+ws://example.org/sensors/temperature?u=Cel")
    assert (uri.scheme, uri.host, uri.port) == ("coap+ws", "example.org", 80)
    assert uri.path == ("sensors", "temperature")
    assert uri.query == ("u=Cel",)
    assert websocket_url(uri.scheme, uri.host, uri.port) == "ws://example.org/.well-known/coap"
    assert uri.request_options() == opts((PATH, "sensors"), (PATH, "temperature"),
                                         (Q, "u=Cel"))
    assert str(uri) == "coap+ws://example.org/sensors/temperature?u=Cel"


def test_draft_coaps_ws_example() -> None:
    uri = parse_uri("coaps+ws://example.org/sensors/temperature?u=Cel")
    assert (uri.scheme, uri.port, uri.secure, uri.websocket) == ("coaps+ws", 443, True, True)
    assert websocket_url(uri.scheme, uri.host, uri.port) == "wss://example.org/.well-known/coap"
    assert uri.request_options() == opts((PATH, "sensors"), (PATH, "temperature"),
                                         (Q, "u=Cel"))


def test_draft_proxy_example_target_is_coap_over_udp() -> None:
    # The draft's second example names coap://[2001:db8::1]/ in Proxy-Uri: a UDP URI.
    uri = parse_uri("coap://[2001:db8::1]/")
    assert (uri.scheme, uri.host, uri.port, uri.datagram, uri.secure) == (
        "coap", "2001:db8::1", 5683, True, False)
    assert parse_uri("coaps://h/").port == 5684 and parse_uri("coaps://h/").datagram


@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        ("coap+ws", "example.org", 8080, "ws://example.org:8080/.well-known/coap"),
        ("coaps+ws", "example.org", 80, "wss://example.org:80/.well-known/coap"),
        ("coap+ws", "::1", 80, "ws://[::1]/.well-known/coap"),
        ("coaps+ws", "192.0.2.1", 8684, "wss://192.0.2.1:8684/.well-known/coap"),
    ],
)
def test_websocket_url(scheme: str, host: str, port: int, expected: str) -> None:
    assert websocket_url(scheme, host, port) == expected


def test_websocket_url_refuses_tcp_schemes() -> None:
    with pytest.raises(ValueError, match="not a CoAP-over-WebSockets scheme"):
        websocket_url("coap+tcp", "h", 1)


# -- default ports ----------------------------------------------------------------------------


def test_default_ports() -> None:
    # RFC 7252 sections 6.1-6.2 and RFC 8323 sections 8.1-8.4; coaps+tcp moved from 443
    # (draft -07) to 5684.
    assert DEFAULT_PORTS == {"coap": 5683, "coaps": 5684, "coap+tcp": 5683, "coaps+tcp": 5684,
                             "coap+ws": 80, "coaps+ws": 443}
    for scheme, port in DEFAULT_PORTS.items():
        assert parse_uri(f"{scheme}://h/").port == port
        assert parse_uri(f"{scheme}://h:/").port == port  # an empty port is the default
    assert [s.secure for s in SCHEMES.values()] == [False, True, False, True, False, True]


def test_coaps_tcp_default_is_5684_not_443() -> None:
    uri = parse_uri("coaps+tcp://example.com/")
    assert uri.port == 5684
    assert parse_uri("coaps+tcp://example.com:443/").port == 443


# -- decomposition (RFC 7252 section 6.4) ------------------------------------------------------

DECOMPOSE = [
    # (uri, host, port, path, query, options for a direct request)
    ("coap+tcp://127.0.0.1", "127.0.0.1", 5683, (), (), []),
    ("coap+tcp://127.0.0.1/", "127.0.0.1", 5683, (), (), []),
    ("coap+tcp://127.0.0.1:61616/a", "127.0.0.1", 61616, ("a",), (), [(PATH, "a")]),
    ("coap+tcp://[::1]:5683/", "::1", 5683, (), (), []),
    ("coap+tcp://[2001:DB8:0:0:0:0:0:1]/x", "2001:db8::1", 5683, ("x",), (), [(PATH, "x")]),
    ("coap+tcp://example.com/", "example.com", 5683, (), (), [(H, "example.com")]),
    ("coap+tcp://EXAMPLE.com:5683/~sensors/temp.xml", "example.com", 5683,
     ("~sensors", "temp.xml"), (), [(H, "example.com"), (PATH, "~sensors"), (PATH, "temp.xml")]),
    # RFC 7252 section 6.3's equivalent URIs decompose the same way.
    ("coap+tcp://EXAMPLE.com/%7Esensors/temp.xml", "example.com", 5683,
     ("~sensors", "temp.xml"), (), [(H, "example.com"), (PATH, "~sensors"), (PATH, "temp.xml")]),
    ("coap+tcp://EXAMPLE.com:/%7esensors/temp.xml", "example.com", 5683,
     ("~sensors", "temp.xml"), (), [(H, "example.com"), (PATH, "~sensors"), (PATH, "temp.xml")]),
    # A trailing slash is an empty last segment; "//" is two empty segments.
    ("coap+tcp://h/a/", "h", 5683, ("a", ""), (), [(H, "h"), (PATH, "a"), (PATH, "")]),
    ("coap+tcp://h//", "h", 5683, ("", ""), (), [(H, "h"), (PATH, ""), (PATH, "")]),
    # Percent-decoding: to bytes, read as UTF-8; %2F is a slash inside one segment.
    ("coap+tcp://h/a%2Fb/%E2%82%AC", "h", 5683, ("a/b", "€"), (),
     [(H, "h"), (PATH, "a/b"), (PATH, "€")]),
    # Query splitting at '&' only; escapes decoded after splitting.
    ("coap+tcp://h/?a=1&b%26c=2&&d", "h", 5683, (), ("a=1", "b&c=2", "", "d"),
     [(H, "h"), (Q, "a=1"), (Q, "b&c=2"), (Q, ""), (Q, "d")]),
    ("coap+tcp://h?x", "h", 5683, (), ("x",), [(H, "h"), (Q, "x")]),
    ("coap+tcp://h/?", "h", 5683, (), ("",), [(H, "h"), (Q, "")]),
    ("coap+tcp://h/p?q=/?:@", "h", 5683, ("p",), ("q=/?:@",), [(H, "h"), (PATH, "p"),
                                                              (Q, "q=/?:@")]),
    # Dot segments are removed by reference resolution (step 2); escaped dots are not.
    ("coap+tcp://h/a/b/../c/./d", "h", 5683, ("a", "c", "d"), (),
     [(H, "h"), (PATH, "a"), (PATH, "c"), (PATH, "d")]),
    ("coap+tcp://h/../../x", "h", 5683, ("x",), (), [(H, "h"), (PATH, "x")]),
    ("coap+tcp://h/%2E%2E/x", "h", 5683, ("..", "x"), (), [(H, "h"), (PATH, ".."), (PATH, "x")]),
    # Case: scheme and host are case-insensitive, the path is not.
    ("CoAP+TCP://Host.Example/Path", "host.example", 5683, ("Path",), (),
     [(H, "host.example"), (PATH, "Path")]),
    # A percent-encoded host is decoded after lowercasing (step 5).
    ("coap+tcp://b%C3%BCcher.example/", "bücher.example", 5683, (), (), [(H, "bücher.example")]),
    # An IRI: non-ASCII characters are read as UTF-8 (RFC 3987).
    ("coap+tcp://bücher.example/straße?ä=ö", "bücher.example", 5683, ("straße",), ("ä=ö",),
     [(H, "bücher.example"), (PATH, "straße"), (Q, "ä=ö")]),
    # sub-delims, ':' and '@' are allowed as they are in segments.
    ("coap+tcp://h/a:b@c!$&'()*+,;=", "h", 5683, ("a:b@c!$&'()*+,;=",), (),
     [(H, "h"), (PATH, "a:b@c!$&'()*+,;=")]),
    # An IPv4-looking name with a leading zero is a reg-name (RFC 3986 dec-octet).
    ("coap+tcp://010.0.0.1/", "010.0.0.1", 5683, (), (), [(H, "010.0.0.1")]),
]


@pytest.mark.parametrize(("text", "host", "port", "path", "query", "options"), DECOMPOSE)
def test_decompose(text: str, host: str, port: int, path: tuple[str, ...],
                   query: tuple[str, ...], options: list[tuple[int, str | int]]) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port, uri.path, uri.query) == (host, port, path, query)
    assert uri.request_options() == Options(options)


def test_ip_literal_equal_to_the_destination_gives_no_uri_host() -> None:
    uri = parse_uri("coap+tcp://[2001:db8::1]/")
    assert uri.ip == ipaddress.IPv6Address("2001:db8::1")
    assert uri.request_options(destination_host="2001:db8:0::1") == Options()
    assert uri.request_options(destination_host="[2001:db8::1]") == Options()
    # A different destination (a proxy, say): the literal, in brackets, is the Uri-Host.
    assert uri.request_options(destination_host="2001:db8::2") == opts((H, "[2001:db8::1]"))
    v4 = parse_uri("coap+tcp://192.0.2.1/")
    assert v4.request_options(destination_host="192.0.2.1") == Options()
    assert v4.request_options(destination_host="192.0.2.9") == opts((H, "192.0.2.1"))


def test_uri_port_only_when_it_differs_from_the_destination_port() -> None:
    uri = parse_uri("coap+tcp://127.0.0.1:7000/a")
    assert uri.request_options() == opts((PATH, "a"))
    assert uri.request_options(destination_port=7000) == opts((PATH, "a"))
    assert uri.request_options(destination_port=5683) == opts((P, 7000), (PATH, "a"))
    default = parse_uri("coap+tcp://127.0.0.1/a")
    assert default.request_options(destination_port=5683) == opts((PATH, "a"))


def test_name_matches_a_destination_name() -> None:
    # Over TLS with SNI, or WebSockets, the default Uri-Host may be a name (RFC 8323 8.4).
    uri = parse_uri("coaps+tcp://Example.org/")
    assert uri.request_options() == opts((H, "example.org"))  # SNI is not assumed
    assert uri.request_options(destination_host="EXAMPLE.ORG") == Options()
    assert uri.request_options(destination_host="other.example") == opts((H, "example.org"))


def test_ipv6_zone_identifier() -> None:
    uri = parse_uri("coap+tcp://[fe80::1%25eth0]:5683/x")
    assert uri.host == "fe80::1%eth0"
    assert str(uri) == "coap+tcp://[fe80::1%25eth0]/x"


def test_origin() -> None:
    uri = parse_uri("COAP+TCP://[2001:DB8::1]:99/x?y")
    assert uri.origin == ("coap+tcp", "2001:db8::1", 99)
    assert uri.origin_uri == "coap+tcp://[2001:db8::1]:99"
    assert parse_uri("coap+ws://h/").origin_uri == "coap+ws://h:80"


# -- errors ---------------------------------------------------------------------------------------

ERRORS = [
    ("coap+tcp://h/x#frag", "fragment"),
    ("coap+tcp://h/#", "fragment"),
    ("http://h/", "unknown scheme 'http'"),
    ("coap+udp://h/", "unknown scheme"),
    ("/just/a/path", "not an absolute URI"),
    ("h/x", "not an absolute URI"),
    ("", "not an absolute URI"),
    ("1coap+tcp://h/", "not an absolute URI"),
    ("coap+tcp:/h/x", "need '//' and a host"),
    ("coap+tcp:h", "need '//' and a host"),
    ("coap+tcp:///x", "host is empty"),
    ("coap+tcp://:5683/", "host is empty"),
    ("coap+tcp://user@h/", "userinfo"),
    ("coap+tcp://h:port/", "not a number"),
    ("coap+tcp://h:99999/", "out of range"),
    ("coap+tcp://h:0/", "out of range"),
    ("coap+tcp://h:-1/", "not a number"),
    ("coap+tcp://[::1/", "lacks its closing"),
    ("coap+tcp://[::1]x/", "after the IPv6 literal"),
    ("coap+tcp://[not-ip]/", "not an IPv6 address"),
    ("coap+tcp://[1.2.3.4]/", "not an IPv6 address"),
    ("coap+tcp://[v7.abc]/", "IPvFuture"),
    ("coap+tcp://[fe80::1%25]/", "zone identifier"),
    ("coap+tcp://[fe80::1%eth0]/", "zone identifier in [fe80::1%eth0] is written %25"),
    ("coap+tcp://[fe80::1%lo]/", "zone identifier in [fe80::1%lo] is written %25"),
    ("coap+tcp://[fe80::1%25a%2Fb]/", "the IPv6 zone identifier 'a/b' in"),
    ("coap+tcp://[fe80::1%25a%25b]/", "the IPv6 zone identifier 'a%b' in"),
    ("coap+tcp://h/\udcff", "not UTF-8 text"),
    ("coap+tcp://h\udcc3\udca9/", "not UTF-8 text"),
    ("coap+tcp://h]/", "only allowed around an IPv6"),
    ("coap+tcp://h/a b", "U+0020 is not allowed in the path (write it as %20)"),
    ("coap+tcp://h/a\"b", "'\"' is not allowed in the path"),
    ("coap+tcp://h/a<b>", "'<' is not allowed in the path"),
    ("coap+tcp://h/?a b", "not allowed in the query"),
    ("coap+tcp://h/a[1]", "'[' is not allowed in the path"),
    ("coap+tcp://h/%", "must start a %XX escape"),
    ("coap+tcp://h/%4", "must start a %XX escape"),
    ("coap+tcp://h/%zz", "must start a %XX escape"),
    ("coap+tcp://h/%FF", "does not decode to UTF-8"),
    ("coap+tcp://h/?%C3", "does not decode to UTF-8"),
    ("coap+tcp://%FF/", "does not decode to UTF-8"),
    ("coap+tcp://h\x00/", "is not allowed in the host"),
    ("coap+tcp://h/" + "a" * 256, "longer than 255 bytes"),
    ("coap+tcp://h/?" + "a" * 256, "longer than 255 bytes"),
    ("coap+tcp://" + "h" * 256 + "/", "longer than 255 bytes"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(UriError) as caught:
        parse_uri(text)
    assert message in str(caught.value)
    assert caught.value.uri == text
    assert str(caught.value).startswith(f"bad URI {text!r}: ")


def test_escaped_space_in_a_host_is_a_name() -> None:
    # "%20" is allowed syntax in a reg-name; it decodes to a space in Uri-Host.
    assert parse_uri("coap+tcp://h%20x/").uri_host == "h x"


def test_segment_of_255_bytes_is_fine() -> None:
    assert parse_uri("coap+tcp://h/" + "é" * 127 + "a").path[0].encode() == b"\xc3\xa9" * 127 + b"a"


def test_not_a_string() -> None:
    with pytest.raises(TypeError):
        parse_uri(b"coap+tcp://h/")  # type: ignore[arg-type]


def test_remove_dot_segments_rfc3986_examples() -> None:
    # RFC 3986 section 5.2.4 and 5.4 examples.
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("mid/content=5/../6") == "mid/6"
    assert remove_dot_segments("/b/c/../../../g") == "/g"
    assert remove_dot_segments("/./g") == "/g"
    assert remove_dot_segments("/b/c/g/.") == "/b/c/g/"
    assert remove_dot_segments("/b/c/..") == "/b/"
    assert remove_dot_segments("/g..") == "/g.."
    assert remove_dot_segments("/..g") == "/..g"


# -- composition (RFC 7252 section 6.5) --------------------------------------------------------

COMPOSE = [
    # (scheme, options, destination host, destination port, URI)
    ("coap+tcp", [], "127.0.0.1", 5683, "coap+tcp://127.0.0.1/"),
    ("coap+tcp", [(PATH, "a"), (PATH, "b")], "127.0.0.1", 5683, "coap+tcp://127.0.0.1/a/b"),
    ("coap+tcp", [], "2001:db8::1", 5683, "coap+tcp://[2001:db8::1]/"),
    ("coap+tcp", [], "2001:DB8:0::1", 61616, "coap+tcp://[2001:db8::1]:61616/"),
    ("coaps+tcp", [], "192.0.2.1", 5684, "coaps+tcp://192.0.2.1/"),
    ("coaps+tcp", [], "192.0.2.1", 443, "coaps+tcp://192.0.2.1:443/"),
    ("coap+ws", [(PATH, "x")], "example.org", 80, "coap+ws://example.org/x"),
    ("coaps+ws", [], "example.org", 443, "coaps+ws://example.org/"),
    ("coap+tcp", [(H, "example.com"), (P, 5683)], "192.0.2.1", 9999, "coap+tcp://example.com/"),
    ("coap+tcp", [(H, "example.com")], "192.0.2.1", 9999, "coap+tcp://example.com:9999/"),
    ("coap+tcp", [(H, "[2001:db8::1]")], "192.0.2.1", 5683, "coap+tcp://[2001:db8::1]/"),
    ("coap+tcp", [(H, "bücher.example")], None, 5683, "coap+tcp://b%C3%BCcher.example/"),
    # Segments keep unreserved, sub-delims, ':' and '@'; everything else is escaped.
    ("coap+tcp", [(H, "h"), (PATH, "a b/c?d#e%f"), (PATH, "x:y@z&=!")], None, 5683,
     "coap+tcp://h/a%20b%2Fc%3Fd%23e%25f/x:y@z&=!"),
    ("coap+tcp", [(H, "h"), (PATH, "€")], None, 5683, "coap+tcp://h/%E2%82%AC"),
    ("coap+tcp", [(H, "h"), (PATH, "")], None, 5683, "coap+tcp://h/"),
    ("coap+tcp", [(H, "h"), (PATH, ""), (PATH, "")], None, 5683, "coap+tcp://h//"),
    # Query arguments keep '/' and '?' too, but escape '&'.
    ("coap+tcp", [(H, "h"), (Q, "a=1"), (Q, "b&c=/?:@"), (Q, "")], None, 5683,
     "coap+tcp://h/?a=1&b%26c=/?:@&"),
    ("coap+tcp", [(H, "h"), (PATH, "p"), (Q, "u=Cel")], None, 5683, "coap+tcp://h/p?u=Cel"),
]


@pytest.mark.parametrize(("scheme", "options", "host", "port", "expected"), COMPOSE)
def test_compose(scheme: str, options: list[tuple[int, str | int]], host: str | None,
                 port: int, expected: str) -> None:
    assert compose_uri(scheme, Options(options), destination_host=host,
                       destination_port=port) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([(H, "a b")], "not a valid reg-name"),
        ([(H, "[zz]")], "not a valid IP-literal"),
        ([(H, "2001:db8::1")], "not a valid reg-name"),  # an IPv6 Uri-Host needs brackets
        ([], "no Uri-Host option and no destination host"),
    ],
)
def test_compose_errors(options: list[tuple[int, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compose_uri("coap+tcp", Options(options), destination_host=None, destination_port=5683)


def test_compose_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        compose_uri("coap+udp", Options(), destination_host="h", destination_port=5683)


def test_str_is_the_composed_form() -> None:
    assert str(parse_uri("COAP+TCP://EXAMPLE.com:5683/%7esensors/a/../temp.xml")) == \
        "coap+tcp://example.com/~sensors/temp.xml"
    assert str(parse_uri("coap+tcp://[2001:DB8::1]:1234")) == "coap+tcp://[2001:db8::1]:1234/"
    assert str(parse_uri("coaps+tcp://h:5684/")) == "coaps+tcp://h/"
    assert CoapUri.parse("coap+tcp://h/?a%26b") == parse_uri("coap+tcp://h/?a%26b")


# -- round trips ----------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    path=st.lists(_TEXT, max_size=5),
    query=st.lists(_TEXT, max_size=5),
    port=st.integers(1, 65535),
    host=st.sampled_from(["example.com", "127.0.0.1", "[2001:db8::1]", "bücher.example"]),
)
def test_compose_then_decompose_round_trips(scheme: str, path: list[str], query: list[str],
                                            port: int, host: str) -> None:
    options = Options([(H, host), (P, port),
                       *((PATH, s) for s in path), *((Q, a) for a in query)])
    text = compose_uri(scheme, options, destination_host=None, destination_port=port)
    uri = parse_uri(text)
    assert uri.port == port
    assert uri.uri_host == host
    # An empty path list and a single empty segment both compose to "/"; dot segments
    # such as "." or ".." are removed on the way back (RFC 3986 reference resolution).
    if path != [""] and not any(s in (".", "..") for s in path):
        assert list(uri.path) == path
    assert list(uri.query) == query
    assert parse_uri(str(uri)) == uri
