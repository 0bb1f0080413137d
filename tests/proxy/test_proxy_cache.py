"""The proxy's cache: freshness by Max-Age, ETag revalidation, the byte bound (RFC 7252
sections 5.6 and 5.10.6), through the forward proxy and on the cache itself."""

from __future__ import annotations

import gc
import tracemalloc

from test_proxy_forward import answer_of, make_proxy, proxy_request

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.proxy import ResponseCache
from coaptcp.proxy.cache import ENTRY_OVERHEAD, CacheLookup
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
    budget = 3 * (ENTRY_OVERHEAD + 100)
    cache = ResponseCache(max_bytes=budget)
    for index in range(5):
        key = cache.key(f"coap://h/{index}", Options())
        cache.put(key, content(b"x" * 80, etag=b"e", max_age=0), now=0.0)
        assert cache.held_bytes <= budget
    assert 1 <= len(cache) < 5
    assert cache.lookup(cache.key("coap://h/4", Options()), 1.0).etag == b"e"
    assert cache.lookup(cache.key("coap://h/0", Options()), 1.0).etag is None  # evicted


def test_the_byte_bound_holds_for_what_python_takes_for_small_entries() -> None:
    # Counting only payload and option bytes, a 1 MiB cache of 13-byte answers under
    # distinct queries held 14,768 entries and took 17 MB (16.5 times its bound; a
    # default 16 MiB cache would have taken some 270 MB).  Each entry now counts its
    # bookkeeping too.
    budget = 1 << 20
    tracemalloc.start()
    try:
        cache = ResponseCache(max_bytes=budget)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(20_000):
            key = cache.key(f"coap+tcp://127.0.0.1:41700/hello?{index}",
                            Options([(N.URI_QUERY, str(index))]))
            cache.put(key, Response(Code.CONTENT, b"Hello, world!",
                                    options=Options([(N.CONTENT_FORMAT, 0)])), now=0.0)
        gc.collect()
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.held_bytes <= budget
    assert len(cache) > 100
    assert taken <= budget * 1.25, f"{len(cache)} entries took {taken} bytes"


def test_a_response_without_etag_or_max_age_is_not_kept() -> None:
    cache = ResponseCache()
    key = cache.key("coap://h/x", Options())
    cache.put(key, content(b"x", max_age=0), now=0.0)
    assert len(cache) == 0
    cache.put(key, Response(Code.NOT_FOUND, b""), now=0.0)
    assert len(cache) == 0


def test_a_put_that_changed_the_resource_makes_the_stored_response_not_fresh() -> None:
    # RFC 7252 section 5.9.1.4: after 2.04 Changed the next GET goes upstream.
    proxy, client, _ = make_proxy(["any"], cache=ResponseCache())
    proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"old", max_age=60))
    assert answer_of(proxy.handle(proxy_request(URI))).payload == b"old"  # a hit
    put = proxy.handle(proxy_request(URI, Code.PUT, b"new"))
    client.answers[1].callback(Response(Code.CHANGED, b""))
    assert answer_of(put).code == Code.CHANGED
    assert proxy.cache is not None and len(proxy.cache) == 0
    again = proxy.handle(proxy_request(URI))
    assert len(client.sent) == 3
    client.answers[2].callback(content(b"new", max_age=60))
    assert answer_of(again).payload == b"new"


def test_a_delete_keeps_a_stored_response_with_an_etag_only_to_validate_it() -> None:
    # RFC 7252 section 5.9.1.2: not fresh after 2.02 Deleted; its ETag may still be asked.
    proxy, client, _ = make_proxy(["any"], cache=ResponseCache())
    proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"there", etag=b"v1", max_age=60))
    deleted = proxy.handle(proxy_request(URI, Code.DELETE))
    client.answers[1].callback(Response(Code.DELETED, b""))
    assert answer_of(deleted).code == Code.DELETED
    again = proxy.handle(proxy_request(URI))
    [_, _, (_, _, _, options, _)] = client.sent
    assert options.etag == (b"v1",)
    client.answers[2].callback(Response(Code.NOT_FOUND, b""))
    assert answer_of(again).code == Code.NOT_FOUND


def test_a_failed_put_leaves_the_stored_response_fresh() -> None:
    proxy, client, _ = make_proxy(["any"], cache=ResponseCache())
    proxy.handle(proxy_request(URI))
    client.answers[0].callback(content(b"kept", max_age=60))
    put = proxy.handle(proxy_request(URI, Code.PUT, b"x"))
    client.answers[1].callback(Response(Code.FORBIDDEN, b""))
    assert answer_of(put).code == Code.FORBIDDEN
    assert answer_of(proxy.handle(proxy_request(URI))).payload == b"kept"
    assert len(client.sent) == 2


def test_invalidate_marks_every_variant_of_the_uri_and_no_other() -> None:
    cache = ResponseCache()
    json_key = cache.key("coap://h/a", Options([(N.ACCEPT, 50)]))
    text_key = cache.key("coap://h/a", Options())
    other_key = cache.key("coap://h/b", Options())
    cache.put(json_key, content(b"{}", etag=b"j", max_age=60), now=0.0)
    cache.put(text_key, content(b"t", max_age=60), now=0.0)
    cache.put(other_key, content(b"b", max_age=60), now=0.0)
    assert cache.invalidate("coap://h/a", now=1.0) == 2
    assert cache.lookup(json_key, 1.0) == CacheLookup(etag=b"j")
    assert cache.lookup(text_key, 1.0) == CacheLookup()
    assert cache.get(other_key, 1.0) is not None
    assert len(cache) == 2
    assert cache.invalidate("coap://h/a", now=2.0) == 0  # already stale
    assert cache.invalidate("coap://h/none", now=2.0) == 0
    cache.put(other_key, content(b"b2", max_age=60), now=3.0)  # a replaced entry is indexed once
    assert cache.invalidate("coap://h/b", now=4.0) == 1 and len(cache) == 1
