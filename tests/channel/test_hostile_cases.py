"""Issue 7's named hostile cases that are not malformed frames, in memory: each gets the
behaviour RFC 8323 asks for, and the connection (or a second one) keeps being served."""

from __future__ import annotations

from sites import slow_site

from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Response
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, get


def test_ping_flood_gets_one_pong_each_and_the_connection_still_serves():
    h = Harness(Site(make_demo_site()))
    h.open()
    pings = b"".join(encode_frame(Message(Code.PING, n.to_bytes(2, "big"))) for n in range(10_000))
    h.feed_bytes(pings + encode_frame(get(b"g", "hello")))
    answers = h.sent()
    pongs = [m for m in answers if m.code == Code.PONG]
    assert [int.from_bytes(m.token, "big") for m in pongs] == list(range(10_000))
    assert answers[-1].code == Code.CONTENT and answers[-1].token == b"g"
    assert not h.transport.disconnecting


def test_token_reused_while_its_request_is_in_progress_gets_both_answers():
    # Tokens are the client's business (RFC 8323 section 3.3); a server answers each
    # request with the token it came with, in the order the answers are ready.
    site, slow = slow_site()
    h = Harness(site)
    h.open()
    h.feed(get(b"t", "slow"), get(b"t", "slow"), get(b"t", "hello"))
    (hello,) = h.sent()
    assert (hello.token, hello.code) == (b"t", Code.CONTENT)
    slow.waiting[1].callback(Response.text("second"))
    slow.waiting[0].callback(Response.text("first"))
    assert [(m.token, m.payload) for m in h.sent()] == [(b"t", b"second"), (b"t", b"first")]
    assert not h.transport.disconnecting


def hundred_thousand_options() -> Message:
    options = Options([(OptionNumber.URI_PATH, "hello")] + [(OptionNumber.URI_QUERY, "")] * 100_000)
    return Message(Code.GET, b"o", options)


def test_100000_options_beyond_our_max_message_size_get_an_abort():
    h = Harness(Site(make_demo_site()))
    h.open()
    h.feed(hundred_thousand_options())  # 100,008 bytes: more than our 66,048
    (abort,) = h.sent()
    assert abort.code == Code.ABORT
    assert b"exceeds our Max-Message-Size of 66048" in abort.payload


def test_100000_options_within_a_larger_limit_are_answered():
    h = Harness(Site(make_demo_site()), max_message_size=256 * 1024)
    h.open()
    h.feed(hundred_thousand_options())
    (answer,) = h.sent()
    assert (answer.token, answer.code) == (b"o", Code.CONTENT)
    assert answer.payload == b"Hello, world!"


def test_a_huge_uri_path_count_is_a_plain_4_04():
    h = Harness(Site(make_demo_site()))
    h.open()
    segments = Options([(OptionNumber.URI_PATH, "a")] * 30_000)  # 60,000 bytes of options
    h.feed(Message(Code.GET, b"p", segments), get(b"h", "hello"))
    deep, hello = h.sent()
    assert (deep.token, deep.code) == (b"p", Code.NOT_FOUND)
    assert (hello.token, hello.code) == (b"h", Code.CONTENT)
    assert not h.transport.disconnecting
