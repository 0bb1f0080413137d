"""CoapProtocol in the acceptor role over a StringTransport: we play the client."""

from __future__ import annotations

from sites import Slow
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import CoapError, Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import LargeResource, make_demo_site
from coaptcp.testing import Harness, csm, decode_all, frames, get


class AsyncRes(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.gate: Deferred[str] = Deferred()

    async def render_GET(self, request: Request) -> Response:
        text = await self.gate
        return Response.text(f"async {text} {'/'.join(request.path)}")


class Forbidden(Resource):
    def render_GET(self, request: Request) -> Response:
        raise CoapError(Code.FORBIDDEN, "no entry for you")


class Boom(Resource):
    def render_GET(self, request: Request) -> Response:
        raise ZeroDivisionError("kaboom-marker")


class PutOnly(Resource):
    def render_PUT(self, request: Request) -> Response:
        return Response(Code.CHANGED)

    def render_POST(self, request: Request) -> Response:
        return Response(Code.CHANGED)


def make_site() -> tuple[Site, Slow, AsyncRes]:
    root = make_demo_site()
    slow = Slow()
    async_res = AsyncRes()
    root.putChild("slow", slow)
    root.putChild("async", async_res)
    root.putChild("forbidden", Forbidden())
    root.putChild("boom", Boom())
    root.putChild("putonly", PutOnly())
    return Site(root), slow, async_res


def harness() -> tuple[Harness, Slow, AsyncRes]:
    site, slow, async_res = make_site()
    h = Harness(site)
    return h, slow, async_res


def only_response(h: Harness) -> Message:
    sent = h.sent()
    assert len(sent) == 1, sent
    return sent[0]


# -- CSM and basic request/response ------------------------------------------------------


def test_csm_is_written_on_connection_made_before_any_input():
    h, _, _ = harness()
    sent = h.all_sent()
    assert [m.code for m in sent] == [Code.CSM]
    assert sent[0].token == b""
    # Our default Max-Message-Size is advertised.
    assert sent[0].options.get_uint(2) == h.factory.max_message_size


def test_csm_advertises_configured_max_message_size():
    h = Harness(None, max_message_size=2048)
    (message,) = h.all_sent()
    assert message.code == Code.CSM
    assert message.options.get_uint(2) == 2048


def test_get_hello_answered_with_same_token():
    h, _, _ = harness()
    h.feed(csm(), get(b"\x01\x02\x03", "hello"))
    sent = h.all_sent()
    assert [m.code for m in sent] == [Code.CSM, Code.CONTENT]
    response = sent[1]
    assert response.token == b"\x01\x02\x03"
    assert response.payload == b"Hello, world!"
    assert response.options.content_format == 0


def test_pipelined_requests_each_answered_with_own_token():
    h, _, _ = harness()
    h.open()
    tokens = [b"", b"a", b"bb", b"\x00" * 8, b"\xff\xfe"]
    h.feed(*(get(t, "hello") for t in tokens), get(b"zz", "info"))
    sent = h.sent()
    assert [m.token for m in sent] == [*tokens, b"zz"]
    assert all(m.code == Code.CONTENT for m in sent)
    assert [m.payload for m in sent[:-1]] == [b"Hello, world!"] * len(tokens)
    assert sent[-1].options.content_format == 50


def test_request_split_byte_by_byte():
    h, _, _ = harness()
    data = frames(csm(), get(b"tok", "hello"))
    for i in range(len(data) - 1):
        h.feed_bytes(data[i : i + 1])
        # Nothing but our own CSM until the very last byte arrives.
        assert [m.code for m in h.all_sent()] == [Code.CSM]
    h.feed_bytes(data[-1:])
    sent = h.all_sent()
    assert [m.code for m in sent] == [Code.CSM, Code.CONTENT]
    assert sent[1].token == b"tok"


def test_deferred_response_answered_later_and_out_of_order():
    h, slow, _ = harness()
    h.open()
    h.feed(get(b"S1", "slow"), get(b"H1", "hello"))
    sent = h.sent()
    # The synchronous one is answered first; the slow one is still pending.
    assert [m.token for m in sent] == [b"H1"]
    assert len(slow.waiting) == 1
    slow.waiting[0].callback(Response.text("finally"))
    (late,) = h.sent()
    assert late.token == b"S1"
    assert late.code == Code.CONTENT
    assert late.payload == b"finally"


def test_two_deferred_responses_fire_in_reverse_order():
    h, slow, _ = harness()
    h.open()
    h.feed(get(b"A", "slow"), get(b"B", "slow"))
    assert h.sent() == []
    first, second = slow.waiting
    second.callback(Response.text("second"))
    first.callback(Response.text("first"))
    sent = h.sent()
    assert [(m.token, m.payload) for m in sent] == [(b"B", b"second"), (b"A", b"first")]


def test_async_def_render():
    h, _, async_res = harness()
    h.open()
    h.feed(get(b"as", "async"))
    assert h.sent() == []
    async_res.gate.callback("done")
    response = only_response(h)
    assert response.token == b"as"
    assert response.code == Code.CONTENT
    assert response.payload == b"async done async"


def test_coap_error_gives_code_and_diagnostic():
    h, _, _ = harness()
    h.open()
    h.feed(get(b"f", "forbidden"))
    response = only_response(h)
    assert response.code == Code.FORBIDDEN
    assert response.payload == b"no entry for you"
    assert response.token == b"f"


def test_coap_error_from_a_deferred():
    h, slow, _ = harness()
    h.open()
    h.feed(get(b"e", "slow"))
    slow.waiting[0].errback(CoapError(Code.CONFLICT, "busy"))
    response = only_response(h)
    assert (response.code, response.payload, response.token) == (Code.CONFLICT, b"busy", b"e")


def test_exception_gives_500_is_logged_and_connection_keeps_serving():
    h, _, _ = harness()
    h.open()
    with capturedLogs() as events:
        h.feed(get(b"x", "boom"))
    response = only_response(h)
    assert response.code == Code.INTERNAL_SERVER_ERROR
    assert response.token == b"x"
    failures = [e for e in events if "log_failure" in e]
    assert failures, events
    assert any(e["log_failure"].check(ZeroDivisionError) for e in failures)
    assert any("kaboom-marker" in str(e["log_failure"].value) for e in failures)
    # The connection still serves the next request.
    assert not h.transport.disconnecting
    h.feed(get(b"y", "hello"))
    response = only_response(h)
    assert (response.code, response.token) == (Code.CONTENT, b"y")


def test_exception_in_a_deferred_render_gives_500_and_is_logged():
    h, slow, _ = harness()
    h.open()
    h.feed(get(b"x", "slow"))
    with capturedLogs() as events:
        slow.waiting[0].errback(KeyError("deferred-marker"))
    response = only_response(h)
    assert (response.code, response.token) == (Code.INTERNAL_SERVER_ERROR, b"x")
    assert any("log_failure" in e and e["log_failure"].check(KeyError) for e in events), events


def test_render_returning_a_non_response_is_500():
    class Wrong(Resource):
        def render_GET(self, request):
            return "not a response"

    root = Resource()
    root.putChild("wrong", Wrong())
    h = Harness(Site(root))
    h.open()
    with capturedLogs() as events:
        h.feed(get(b"w", "wrong"))
    assert only_response(h).code == Code.INTERNAL_SERVER_ERROR
    assert any("log_failure" in e for e in events)


def test_accept_other_than_the_content_format_is_406():
    # RFC 7252 section 5.10.4: when the preferred Content-Format cannot be returned, a
    # 4.06 MUST be sent (it used to answer 2.05 in text/plain to Accept: cbor), for
    # plain and async renders alike; a matching Accept is served as before.
    h, _, async_res = harness()
    h.open()
    accept = OptionNumber.ACCEPT
    h.feed(get(b"a", "hello", extra=[(accept, 60)]), get(b"b", "hello", extra=[(accept, 0)]),
           get(b"c", "async", extra=[(accept, 50)]))
    async_res.gate.callback("x")
    sent = h.sent()
    assert [(m.code, m.token) for m in sent] == [
        (Code.NOT_ACCEPTABLE, b"a"), (Code.CONTENT, b"b"), (Code.NOT_ACCEPTABLE, b"c")]
    assert b"application/cbor" in sent[0].payload
    assert sent[1].payload == b"Hello, world!"


def test_unknown_path_is_404():
    h, _, _ = harness()
    h.open()
    h.feed(get(b"n", "nope"), get(b"m", "hello", "deeper"))
    sent = h.sent()
    assert [(m.code, m.token) for m in sent] == [(Code.NOT_FOUND, b"n"), (Code.NOT_FOUND, b"m")]


def test_405_only_for_methods_the_resource_lacks():
    h, _, _ = harness()
    h.open()
    h.feed(
        get(b"1", "putonly"),
        Message(Code.PUT, b"2", Options.build(uri_path=["putonly"]), b"data"),
        Message(Code.DELETE, b"3", Options.build(uri_path=["hello"])),
        Message(Code.POST, b"4", Options.build(uri_path=["store"]), b"stored"),
    )
    sent = h.sent()
    assert [(m.token, m.code) for m in sent] == [
        (b"1", Code.METHOD_NOT_ALLOWED),
        (b"2", Code.CHANGED),
        (b"3", Code.METHOD_NOT_ALLOWED),
        (b"4", Code.CHANGED),
    ]
    diagnostic = sent[0].payload.decode()
    assert "GET" in diagnostic
    assert "PUT" in diagnostic and "POST" in diagnostic
    assert "DELETE" not in diagnostic
    assert "GET" in sent[2].payload.decode()  # hello allows GET only


def test_unrecognized_critical_option_oscore_is_402():
    h, _, _ = harness()
    h.open()
    h.feed(get(b"o", "hello", extra=[(OptionNumber.OSCORE, b"\x09")]))
    response = only_response(h)
    assert response.code == Code.BAD_OPTION
    assert response.token == b"o"
    assert b"9" in response.payload


def test_unknown_odd_option_is_402_and_even_one_ignored():
    h, _, _ = harness()
    h.open()
    h.feed(
        get(b"c", "hello", extra=[(65001, b"x")]),
        get(b"e", "hello", extra=[(65000, b"x")]),
    )
    critical, elective = h.sent()
    assert (critical.token, critical.code) == (b"c", Code.BAD_OPTION)
    assert b"65001" in critical.payload
    assert (elective.token, elective.code) == (b"e", Code.CONTENT)
    assert elective.payload == b"Hello, world!"


def test_proxy_uri_is_505():
    h, _, _ = harness()
    h.open()
    message = Message(
        Code.GET, b"p", Options([(OptionNumber.PROXY_URI, "coap+tcp://example.com/x")])
    )
    h.feed(message, get(b"q", "hello", extra=[(OptionNumber.PROXY_SCHEME, "coap")]))
    sent = h.sent()
    assert [(m.token, m.code) for m in sent] == [
        (b"p", Code.PROXYING_NOT_SUPPORTED),
        (b"q", Code.PROXYING_NOT_SUPPORTED),
    ]


def test_factory_without_site_answers_501():
    h = Harness(None)
    h.open()
    h.feed(get(b"z", "hello"))
    response = only_response(h)
    assert response.code == Code.NOT_IMPLEMENTED
    assert response.token == b"z"
    assert response.payload  # a diagnostic


def test_bare_resource_is_wrapped_in_a_site():
    h = Harness(make_demo_site())
    h.open()
    h.feed(get(b"r", "hello"))
    assert only_response(h).payload == b"Hello, world!"


def test_response_bigger_than_peer_mms_is_sent_block_wise():
    # RFC 7959 section 2.4 over RFC 8323: the first block that fits the peer's limit, with
    # Block2 (NUM 0, M 1) and Size2 giving the whole size; other requests are unaffected.
    h, _, _ = harness()
    h.open(max_message_size=200)
    h.feed(get(b"L", "large"), get(b"h", "hello"))
    large, hello = h.sent()
    assert (large.token, large.code) == (b"L", Code.CONTENT)
    assert len(encode_frame(large)) <= 200
    assert large.options.block2 == (0 << 4) | 0x08 | 3  # NUM 0, more, 128-byte blocks
    assert large.options.size2 == len(LargeResource.body)
    assert large.payload == LargeResource.body[:128]
    assert hello.code == Code.CONTENT
    assert not h.transport.disconnecting


def test_large_response_within_peer_mms_is_sent():
    h, _, _ = harness()
    h.open(max_message_size=8192)
    h.feed(get(b"L", "large"))
    response = only_response(h)
    assert response.code == Code.CONTENT
    assert response.payload == LargeResource.body


def test_large_response_before_peer_states_mms_uses_base_1152():
    # Base Max-Message-Size applies when the peer's CSM carries no MMS option: the 4,000
    # bytes go out in 1,024-byte blocks (no BERT without an MMS above 1,152).
    h, _, _ = harness()
    h.open()
    h.feed(get(b"L", "large"))
    response = only_response(h)
    assert response.code == Code.CONTENT
    assert len(encode_frame(response)) <= 1152
    assert response.options.block2 == 0x08 | 6
    assert response.payload == LargeResource.body[:1024]


def test_request_before_csm_aborts_by_default():
    h, _, _ = harness()
    h.feed(get(b"t", "hello"))
    (abort,) = h.sent()[1:]
    assert abort.code == Code.ABORT
    assert h.transport.disconnecting


def test_lenient_factory_accepts_request_without_csm():
    site, _, _ = make_site()
    h = Harness(site, require_csm=False)
    h.feed(get(b"t", "hello"))
    sent = h.all_sent()
    assert [m.code for m in sent] == [Code.CSM, Code.CONTENT]
    assert not h.transport.disconnecting


def test_ping_without_custody_answered_with_same_token():
    h, _, _ = harness()
    h.open()
    h.feed(Message(Code.PING, b"pp"))
    (pong,) = h.sent()
    assert (pong.code, pong.token) == (Code.PONG, b"pp")


def test_request_sees_peer_and_default_host():
    seen: list[Request] = []

    class Spy(Resource):
        def render_GET(self, request):
            seen.append(request)
            return Response()

    root = Resource()
    root.putChild("spy", Spy())
    h = Harness(Site(root))
    h.open()
    h.feed(get(b"s", "spy", query=("a=1",)))
    (request,) = seen
    assert request.host == "198.51.100.1"
    assert request.peer.host == "192.0.2.7"
    assert request.query == ("a=1",)
    assert request.secure is False
    assert decode_all(h.transport.value())[-1].code == Code.CONTENT


class PathEcho(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> Response:
        walked = "/".join(request.prepath)
        left = "/".join(request.postpath)
        request.postpath.append("changed-by-the-resource")
        return Response.text(f"{walked}|{left}|{'/'.join(request.path)}|{request.query}")


def test_requests_with_the_same_option_bytes_each_get_their_own_uri_lists():
    # The decoder shares one Options instance between requests with the same option
    # bytes, and the decoded Uri-* values with it: each Request still walks its own lists.
    site, _, _ = make_site()
    site.root.putChild("echo", PathEcho())
    h = Harness(site)
    h.open()
    request = Options.build(uri_path=["echo", "a", "b"], uri_query=["x=1"])
    h.feed(*(Message(Code.GET, bytes([i]), request) for i in range(3)))
    payloads = [m.payload for m in h.sent()]
    assert payloads == [b"echo|a/b|echo/a/b|('x=1',)"] * 3


def test_a_bad_critical_option_is_402_every_time_it_comes():
    h, _, _ = harness()
    h.open()
    bad = Options([(OptionNumber.URI_PATH, "hello"), (9, b"\x01")])  # OSCORE: not understood
    h.feed(*(Message(Code.GET, bytes([i]), bad) for i in range(2)))
    h.feed(get(b"ok", "hello"))
    assert [m.code for m in h.sent()] == [Code.BAD_OPTION, Code.BAD_OPTION, Code.CONTENT]


def test_a_forwarding_resource_passes_another_format_as_it_came():
    """A proxy's resource (forwards_answers) passes the origin's 2.05 whatever its
    Content-Format: the origin had the Accept (RFC 7252 section 5.10.4)."""
    json_answer = Options([(OptionNumber.CONTENT_FORMAT, 50)])

    class Own(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> Response:
            return Response(Code.CONTENT, b"{}", options=json_answer)

    class Forwarded(Own):
        forwards_answers = True

    root = Resource()
    root.putChild("own", Own())
    root.putChild("forwarded", Forwarded())
    site = Site(root)
    cbor = [(OptionNumber.ACCEPT, 60)]

    def get(name: str) -> Response:
        options = Options([(OptionNumber.URI_PATH, name), *cbor])
        answer = site.handle(Request(Code.GET, b"t", options, b""))
        assert isinstance(answer, Response)
        return answer

    assert get("own").code == Code.NOT_ACCEPTABLE
    forwarded = get("forwarded")
    assert (forwarded.code, forwarded.payload) == (Code.CONTENT, b"{}")
