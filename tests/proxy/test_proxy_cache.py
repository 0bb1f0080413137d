"""The proxy's cache: freshness by Max-Age, ETag revalidation, the byte bound (RFC 7252
sections 5.6 and 5.10.6), through the forward proxy and on the cache itself."""

from __future__ import annotations

from test_proxy_forward import answer_of, make_proxy, proxy_request

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.proxy import ResponseCache
from coaptcp.server import Response

N = OptionNumber
URI = [(N.PROXY_URI, "coap://127.0.0.1/t")]


def content(payload: bytes, *, etag: bytes | None = None, max_age: int | None = None) -> Response:
    options = Options()
    if etag is not None:
        options = options.add(N.ETAG, etag)
    if max_age is not None:
        options = options.add(N.MAX_AGE, max_age)
    return Response(Code.CONTENT, payload, options=options)


def test_a_stale_response_with_an_etag_is_validated_and_served_again() -> None:
    proxy, client, clock = make_proxy(["any"], cache=ResponseCache())
    first = proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"21.5", etag=b"v1", max_age=10))
    assert answer_of(first).payload == b"21.5"
    clock.advance(11)
    again = proxy.handle(proxy_request(URI))
    [_, (_, _, _, options, _)] = client.sent
    assert options.etag == (b"v1",)  # asks upstream whether v1 is still valid
    client.answers[1].callback(Response(Code.VALID, b"", options=Options(
        [(N.ETAG, b"v1"), (N.MAX_AGE, 30)])))
    served = answer_of(again)
    assert (served.code, served.payload) == (Code.CONTENT, b"21.5")
    assert served.options.max_age == 30 and served.options.etag == (b"v1",)
    assert proxy.cache is not None and proxy.cache.revalidations == 1
    clock.advance(20)
    hit = answer_of(proxy.handle(proxy_request(URI)))  # fresh again for the 2.03's Max-Age
    assert hit.payload == b"21.5" and hit.options.max_age == 10 and len(client.sent) == 2


def test_a_changed_representation_replaces_the_stored_one() -> None:
    proxy, client, clock = make_proxy(["any"], cache=ResponseCache())
    proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"old", etag=b"v1", max_age=1))
    clock.advance(2)
    again = proxy.handle(proxy_request(URI))
    client.answers[1].callback(content(b"new", etag=b"v2", max_age=60))
    assert answer_of(again).payload == b"new"
    assert answer_of(proxy.handle(proxy_request(URI))).payload == b"new"
    assert len(client.sent) == 2


def test_a_client_with_the_current_etag_gets_2_03_from_the_cache() -> None:
    proxy, client, clock = make_proxy(["any"], cache=ResponseCache())
    proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"body", etag=b"v1", max_age=60))
    clock.advance(5)
    valid = answer_of(proxy.handle(proxy_request([*URI, (N.ETAG, b"v0"), (N.ETAG, b"v1")])))
    assert (valid.code, valid.payload) == (Code.VALID, b"")
    assert valid.options.etag == (b"v1",) and valid.options.max_age == 55
    other = answer_of(proxy.handle(proxy_request([*URI, (N.ETAG, b"v0")])))
    assert (other.code, other.payload) == (Code.CONTENT, b"body")
    assert len(client.sent) == 1


def test_the_client_s_own_validation_is_relayed_when_it_is_not_ours() -> None:
    proxy, client, _ = make_proxy(["any"], cache=ResponseCache())
    pending = proxy.handle(proxy_request([*URI, (N.ETAG, b"mine")]))
    [(_, _, _, options, _)] = client.sent
    assert options.etag == (b"mine",)
    client.answers[0].callback(Response(Code.VALID, b"", options=Options([(N.ETAG, b"mine")])))
    assert answer_of(pending).code == Code.VALID
    assert proxy.cache is not None and len(proxy.cache) == 0


def test_stale_entries_count_against_the_byte_bound() -> None:
    cache = ResponseCache(max_bytes=300)
    for index in range(5):
        key = cache.key(f"coap://h/{index}", Options())
        cache.put(key, content(b"x" * 80, etag=b"e", max_age=0), now=0.0)
        assert cache.held_bytes <= 300
    assert 1 <= len(cache) < 5
    assert cache.lookup(cache.key("coap://h/4", Options()), 1.0).etag == b"e"
    assert cache.lookup(cache.key("coap://h/0", Options()), 1.0).etag is None  # evicted


def test_a_response_without_etag_or_max_age_is_not_kept() -> None:
    cache = ResponseCache()
    key = cache.key("coap://h/x", Options())
    cache.put(key, content(b"x", max_age=0), now=0.0)
    assert len(cache) == 0
    cache.put(key, Response(Code.NOT_FOUND, b""), now=0.0)
    assert len(cache) == 0
