"""The upstream side of a proxied request (RFC 7252 sections 5.7 and 5.10.2, RFC 8768)."""

from __future__ import annotations

import pytest

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.proxying import ProxyRefusal, forward_request, is_proxy_request

N = OptionNumber


def test_proxy_uri_gives_the_target_and_takes_precedence_over_uri_options() -> None:
    options = Options([
        (N.PROXY_URI, "coap://[2001:db8::1]/"),
        (N.URI_PATH, "ignored"),
        (N.ACCEPT, 0),
        (N.ETAG, b"\x01\x02"),
    ])
    assert is_proxy_request(options)
    forwarded = forward_request(options)
    assert forwarded.uri == "coap://[2001:db8::1]/"
    assert forwarded.options.get_uint(N.ACCEPT) == 0
    assert forwarded.options.get(N.ETAG) == b"\x01\x02"
    assert N.URI_PATH not in forwarded.options and N.PROXY_URI not in forwarded.options
    assert forwarded.options.get_uint(N.HOP_LIMIT) == 15  # 16 inserted, minus this hop


def test_proxy_scheme_composes_the_uri_from_the_uri_options() -> None:
    options = Options([
        (N.PROXY_SCHEME, "coap"),
        (N.URI_HOST, "sensor.example"),
        (N.URI_PORT, 61616),
        (N.URI_PATH, "a b"),
        (N.URI_PATH, "c"),
        (N.URI_QUERY, "x=1"),
    ])
    assert forward_request(options).uri == "coap://sensor.example:61616/a%20b/c?x=1"


def test_without_uri_host_or_target_the_request_is_bad() -> None:
    with pytest.raises(ProxyRefusal) as refused:
        forward_request(Options([(N.PROXY_SCHEME, "coap"), (N.URI_PATH, "x")]))
    assert refused.value.code == Code.BAD_REQUEST
    assert not is_proxy_request(Options([(N.URI_PATH, "x")]))


def test_block_wise_and_observe_stay_on_their_side() -> None:
    options = Options([
        (N.PROXY_URI, "coap://h/"),
        (N.BLOCK2, 0x16), (N.BLOCK1, 0x0E), (N.SIZE1, 10), (N.SIZE2, 0), (N.OBSERVE, 0),
    ])
    forwarded = forward_request(options).options
    assert [number for number, _ in forwarded] == [N.HOP_LIMIT]


def test_an_unrecognised_unsafe_option_is_5_02_and_a_safe_one_travels() -> None:
    safe_unknown = 2052  # bit 1 clear: safe to forward
    unsafe_unknown = 2054  # bit 1 set: unsafe
    travels = forward_request(Options([(N.PROXY_URI, "coap://h/"), (safe_unknown, b"v")]))
    assert travels.options.get(safe_unknown) == b"v"
    with pytest.raises(ProxyRefusal) as refused:
        forward_request(Options([(N.PROXY_URI, "coap://h/"), (unsafe_unknown, b"v")]))
    assert refused.value.code == Code.BAD_GATEWAY


def test_the_hop_limit_counts_down_and_ends_loops_with_5_08() -> None:
    forwarded = forward_request(Options([(N.PROXY_URI, "coap://h/"), (N.HOP_LIMIT, 2)]))
    assert forwarded.options.get_uint(N.HOP_LIMIT) == 1
    with pytest.raises(ProxyRefusal) as refused:
        forward_request(Options([(N.PROXY_URI, "coap://h/"), (N.HOP_LIMIT, 1)]))
    assert refused.value.code == Code(0xA8)


def test_an_unknown_proxy_scheme_is_5_05() -> None:
    with pytest.raises(ProxyRefusal) as refused:
        forward_request(Options([(N.PROXY_SCHEME, "http"), (N.URI_HOST, "h")]))
    assert refused.value.code == Code.PROXYING_NOT_SUPPORTED
