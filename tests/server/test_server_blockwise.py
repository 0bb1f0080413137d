"""Block-wise transfer and BERT through CoapProtocol, in memory (RFC 7959, RFC 8323 6).

We play the client over a StringTransport: GET /big (1 MiB) block by block and BERT,
reassembled byte for byte; Block1 uploads to /store (2.31 Continue, the final echo, 4.08,
4.13, expiry on the reactor's clock); BERT only when the peer's CSM announced
Block-Wise-Transfer with a Max-Message-Size above 1152, or the request asked for it; our
own CSM announcing Block-Wise-Transfer.
"""

from __future__ import annotations

import functools
import hashlib

import pytest
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.blockwise import Block, BlockwiseServer
from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import CsmOption, OptionNumber, Options, decode_uint
from coaptcp.server.resource import Site
from coaptcp.tap.demo import BigResource, make_demo_site
from coaptcp.testing import Harness, get

BLOCK1, BLOCK2 = OptionNumber.BLOCK1, OptionNumber.BLOCK2
SIZE1, SIZE2 = OptionNumber.SIZE1, OptionNumber.SIZE2
MIB = 1 << 20


@functools.cache
def big_body() -> bytes:
    return BigResource().body


def csm(max_message_size: int | None = None, bwt: bool = False) -> Message:
    items: list[tuple[int, int | None]] = []
    if max_message_size is not None:
        items.append((CsmOption.MAX_MESSAGE_SIZE, max_message_size))
    if bwt:
        items.append((CsmOption.BLOCK_WISE_TRANSFER, None))
    return Message(Code.CSM, options=Options(items))


def connect(mms: int | None = None, bwt: bool = False) -> Harness:
    clock = MemoryReactorClock()
    h = Harness(Site(make_demo_site(reactor=clock)), clock=clock)
    h.feed(csm(mms, bwt))
    (ours,) = h.sent()
    assert ours.code == Code.CSM
    return h


def block_of(message: Message, number: int) -> Block | None:
    raw = message.options.get(number)
    return None if raw is None else Block.decode(decode_uint(raw))


def one(h: Harness) -> Message:
    sent = h.sent()
    assert len(sent) == 1, sent
    return sent[0]


def fetch(
    h: Harness, path: str, *, szx: int | None = None, limit: int
) -> tuple[bytes, list[Message]]:
    """GET ``path`` block by block as a client would; every response must fit ``limit``."""
    received = b""
    responses: list[Message] = []
    requested = None if szx is None else Block(0, False, szx)
    while True:
        extra = [] if requested is None else [(BLOCK2, requested.encode())]
        h.feed(get(b"g%d" % len(responses), path, extra=extra))
        response = one(h)
        responses.append(response)
        assert response.code == Code.CONTENT, response
        assert len(encode_frame(response)) <= limit
        block = block_of(response, BLOCK2)
        if block is None:
            return response.payload, responses
        assert block.offset == len(received)
        received += response.payload
        if not block.more:
            return received, responses
        requested = Block(len(received) // block.size, False, block.szx)
        assert len(responses) < 5000, "runaway transfer"


# -- our CSM ------------------------------------------------------------------------------


def test_our_csm_announces_block_wise_transfer_and_room_for_bert() -> None:
    h = Harness(Site(make_demo_site(reactor=MemoryReactorClock())))
    (ours,) = h.sent()
    assert ours.code == Code.CSM
    assert ours.options.get(CsmOption.BLOCK_WISE_TRANSFER) == b""
    mms = ours.options.get_uint(CsmOption.MAX_MESSAGE_SIZE)
    assert mms == DEFAULT_MAX_MESSAGE_SIZE
    assert mms is not None and mms > 1152  # together: we take BERT (RFC 8323 5.3.2)


# -- Block2: GET /big ----------------------------------------------------------------------


def test_get_big_in_1024_byte_blocks_from_a_peer_without_bert() -> None:
    h = connect()  # no MMS option: the base 1152 bytes
    body, responses = fetch(h, "big", limit=1152)
    assert body == big_body()
    assert len(responses) == MIB // 1024
    first = responses[0]
    assert block_of(first, BLOCK2) == Block(0, True, 6)
    assert first.options.get_uint(SIZE2) == MIB
    assert first.options.content_format == 42
    assert all(SIZE2 not in r.options for r in responses[1:])
    assert block_of(responses[-1], BLOCK2) == Block(1023, False, 6)
    assert not h.transport.disconnecting


def test_get_big_with_bert_when_the_peer_csm_allows_it() -> None:
    mms = 64 * 1024 + 512
    h = connect(mms, bwt=True)
    body, responses = fetch(h, "big", limit=mms)
    assert body == big_body()
    blocks = [block_of(r, BLOCK2) for r in responses]
    assert all(b is not None and b.is_bert for b in blocks)
    # 64 KiB of 1024-byte blocks per message: NUM moves by 64
    assert [b.num for b in blocks if b is not None] == list(range(0, 1024, 64))
    assert all(len(r.payload) == 65536 for r in responses)
    assert responses[0].options.get_uint(SIZE2) == MIB


def test_bert_message_size_follows_the_peer_limit() -> None:
    h = connect(5000, bwt=True)
    body, responses = fetch(h, "big", limit=5000)
    assert body == big_body()
    first = block_of(responses[0], BLOCK2)
    assert first is not None and first.is_bert
    assert len(responses[0].payload) in (3072, 4096)
    assert all(len(r.payload) % 1024 == 0 for r in responses)


@pytest.mark.parametrize(
    ("mms", "bwt", "szx", "expect_bert"),
    [
        (64 * 1024 + 512, True, None, True),
        (64 * 1024 + 512, False, None, False),  # a big MMS without BWT is not BERT
        (1152, True, None, False),  # BWT with the base MMS is not BERT (5.3.2)
        (None, True, None, False),
        (64 * 1024 + 512, False, 7, True),  # the request's SZX 7 says the client takes it
        (64 * 1024 + 512, True, 6, False),  # a request for 1024-byte blocks gets those
    ],
)
def test_bert_only_when_the_peer_announced_it_or_asked(
    mms: int | None, bwt: bool, szx: int | None, expect_bert: bool
) -> None:
    h = connect(mms, bwt)
    extra = [] if szx is None else [(BLOCK2, Block(0, False, szx).encode())]
    h.feed(get(b"b", "big", extra=extra))
    response = one(h)
    block = block_of(response, BLOCK2)
    assert block is not None
    assert block.is_bert is expect_bert
    assert len(response.payload) == (65536 if expect_bert else 1024)
    assert response.payload == big_body()[: len(response.payload)]


def test_szx_negotiation_down_to_64_byte_blocks() -> None:
    h = connect(64 * 1024 + 512, bwt=True)
    h.feed(get(b"s", "large", extra=[(BLOCK2, Block(0, False, 2).encode())]))
    response = one(h)
    assert block_of(response, BLOCK2) == Block(0, True, 2)
    assert len(response.payload) == 64
    body, responses = fetch(h, "large", szx=2, limit=64 * 1024 + 512)
    assert len(responses) == (4000 + 63) // 64
    assert all(block_of(r, BLOCK2).szx == 2 for r in responses)  # type: ignore[union-attr]
    from coaptcp.tap.demo import LargeResource

    assert body == LargeResource.body


def test_block2_past_the_end_is_4_02_and_the_connection_stays() -> None:
    h = connect()
    h.feed(get(b"p", "big", extra=[(BLOCK2, Block(1024, False, 6).encode())]))
    response = one(h)
    assert response.code == Code.BAD_OPTION
    h.feed(get(b"h", "hello"))
    assert one(h).payload == b"Hello, world!"


def test_big_sha256_query_matches_the_body() -> None:
    h = connect()
    h.feed(get(b"q", "big", query=("sha256",)))
    assert one(h).payload.decode() == hashlib.sha256(big_body()).hexdigest()


# -- Block1: uploads to /store ----------------------------------------------------------------


def put_block(
    token: bytes,
    block: Block,
    payload: bytes,
    code: Code = Code.PUT,
    path: str = "store",
    extra: tuple[tuple[int, int], ...] = (),
) -> Message:
    options = Options.build(uri_path=[path]).add(BLOCK1, block.encode())
    for number, value in extra:
        options = options.add(number, value)
    return Message(code, token, options, payload)


def upload(
    h: Harness, body: bytes, *, szx: int, per_message: int = 1, code: Code = Code.PUT
) -> Message:
    """Send ``body`` with Block1 and check every 2.31; returns the final response."""
    unit = 1024 if szx == 7 else 1 << (szx + 4)
    step = unit * per_message
    for start in range(0, len(body), step):
        more = start + step < len(body)
        block = Block(start // unit, more, szx)
        h.feed(put_block(b"u%d" % start, block, body[start : start + step], code))
        answer = one(h)
        assert answer.token == b"u%d" % start
        if more:
            assert answer.code == Code.CONTINUE, answer
            assert block_of(answer, BLOCK1) == Block(block.num, True, szx)
        else:
            assert block_of(answer, BLOCK1) == Block(block.num, False, szx)
            return answer
    raise AssertionError("empty body")


def test_put_1_mib_with_bert_then_get_it_back() -> None:
    h = connect(64 * 1024 + 512, bwt=True)
    body = bytes(reversed(big_body()))
    final = upload(h, body, szx=7, per_message=64)  # 64 KiB messages, within our MMS
    assert final.code == Code.CHANGED
    got, responses = fetch(h, "store", limit=64 * 1024 + 512)
    assert got == body
    assert len(responses) == 16


def test_post_in_1024_byte_blocks() -> None:
    h = connect()
    body = big_body()[:10_000]
    final = upload(h, body, szx=6, code=Code.POST)
    assert final.code == Code.CHANGED
    assert final.payload == b"stored 10000 bytes"
    got, _ = fetch(h, "store", limit=1152)
    assert got == body


def test_bert_upload_is_accepted_before_the_peer_announced_bert() -> None:
    # INTEROP-NOTES 5: aiocoap sends Block1 SZX 7 without knowing; we take it anyway.
    h = connect()
    body = big_body()[:5000]
    final = upload(h, body, szx=7, per_message=1)
    assert final.code == Code.CHANGED
    got, _ = fetch(h, "store", limit=1152)
    assert got == body


def test_upload_with_a_missing_block_is_4_08() -> None:
    h = connect()
    h.feed(put_block(b"a", Block(0, True, 6), b"x" * 1024))
    assert one(h).code == Code.CONTINUE
    h.feed(put_block(b"b", Block(2, False, 6), b"x" * 10))
    answer = one(h)
    assert answer.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert answer.token == b"b"
    # nothing was stored, and the upload is gone: block 1 now is 4.08 too
    h.feed(put_block(b"c", Block(1, False, 6), b"x" * 10))
    assert one(h).code == Code.REQUEST_ENTITY_INCOMPLETE
    h.feed(get(b"g", "store"))
    assert one(h).payload == b""
    assert h.channel.blockwise.uploads_in_progress == 0


def test_upload_over_the_limit_is_4_13_with_size1() -> None:
    h = connect()
    h.channel.blockwise = BlockwiseServer(max_body_size=2048)
    h.feed(put_block(b"a", Block(0, True, 6), b"x" * 1024))
    h.feed(put_block(b"b", Block(1, True, 6), b"x" * 1024))
    assert [m.code for m in h.sent()] == [Code.CONTINUE, Code.CONTINUE]
    h.feed(put_block(b"c", Block(2, False, 6), b"x"))
    answer = one(h)
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.get_uint(SIZE1) == 2048
    assert h.channel.blockwise.uploads_in_progress == 0


def test_size1_announcing_too_much_is_4_13_at_once() -> None:
    h = connect()
    h.feed(put_block(b"a", Block(0, True, 6), b"x" * 1024, extra=((SIZE1, 1 << 30),)))
    answer = one(h)
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.get_uint(SIZE1) == 16 * MIB
    assert h.channel.blockwise.uploads_in_progress == 0


def test_partial_upload_expires_on_the_reactor_clock() -> None:
    h = connect()
    lifetime = h.channel.blockwise.upload_lifetime
    h.feed(put_block(b"a", Block(0, True, 6), b"x" * 1024))
    assert one(h).code == Code.CONTINUE
    h.clock.advance(lifetime / 2)
    h.feed(put_block(b"b", Block(1, True, 6), b"x" * 1024))
    assert one(h).code == Code.CONTINUE
    h.clock.advance(lifetime + 1)
    h.feed(put_block(b"c", Block(2, False, 6), b"x"))
    # The silent minute also brought the keepalive's Ping (we play a peer that answers
    # none); the block is what matters here.
    (answer,) = [m for m in h.sent() if m.code != Code.PING]
    assert answer.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert h.channel.blockwise.uploads_in_progress == 0


def test_too_many_uploads_at_once_is_5_03() -> None:
    h = connect()
    h.channel.blockwise = BlockwiseServer(max_uploads=1)
    h.feed(put_block(b"a", Block(0, True, 6), b"x" * 1024, path="store"))
    assert one(h).code == Code.CONTINUE
    h.feed(put_block(b"b", Block(0, True, 6), b"y" * 1024, code=Code.POST))
    answer = one(h)
    assert answer.code == Code.SERVICE_UNAVAILABLE
    assert answer.options.max_age is not None


@pytest.mark.parametrize("number", [BLOCK1, BLOCK2])
def test_block_option_of_four_bytes_is_4_02_not_a_crash(number: int) -> None:
    h = connect()
    options = Options.build(uri_path=["store"]).add(number, b"\x01\x00\x00\x0e")
    h.feed(Message(Code.PUT, b"x", options, b"payload"))
    answer = one(h)
    assert answer.code == Code.BAD_OPTION
    assert answer.token == b"x"
    assert not h.transport.disconnecting
    h.feed(get(b"h", "hello"))
    assert one(h).payload == b"Hello, world!"


@pytest.mark.parametrize(
    ("extra", "diagnostic"),
    [
        ([(9999, b"x")], b"unrecognized critical option 9999"),
        ([(OptionNumber.OSCORE, b"")], b"unrecognized critical option OSCORE (9)"),
        ([], b"critical option Block1 (27) has a value of 4 bytes; 0-3 allowed"),
    ],
)
def test_a_block_with_a_bad_critical_option_is_4_02_not_held(extra, diagnostic) -> None:
    # RFC 7252 section 5.4.1: an unrecognized critical option in a request gets 4.02.
    # The first blocks of an upload never reached the Site's check: they were answered
    # 2.31 Continue and their bytes held, for a request refused at its last block.
    h = connect()
    block1 = Block(0, True, 6).encode() if extra else b"\x00\x00\x00\x0e"
    options = sorted([(OptionNumber.URI_PATH, b"store"), *extra, (BLOCK1, block1)])
    h.feed(Message(Code.PUT, b"u", Options(options), bytes(1024)))
    answer = one(h)
    assert answer.code == Code.BAD_OPTION
    assert answer.payload == diagnostic
    assert h.protocol.channel.blockwise.uploads_in_progress == 0


def test_an_error_answer_is_not_cut_by_the_requested_block2() -> None:
    # A Block2 request names a block of the representation (RFC 7959 section 2.4); an
    # error has none.  GET /nothere asking for block 1 used to get 4.02 "offset 1024 lies
    # past the end of a 0-byte body" instead of its 4.04, and a 4-byte Block2 a 4.02
    # about the offset instead of the one about the option.
    h = connect()
    h.feed(get(b"n", "nothere", extra=[(BLOCK2, Block(1, False, 6).encode())]))
    answer = one(h)
    assert answer.code == Code.NOT_FOUND
    assert BLOCK2 not in answer.options
    h.feed(get(b"b", "big", extra=[(BLOCK2, b"\x00\x00\x00\x16")]))
    answer = one(h)
    assert answer.code == Code.BAD_OPTION
    assert answer.payload == b"critical option Block2 (23) has a value of 4 bytes; 0-3 allowed"
    h.feed(get(b"p", "big", extra=[(BLOCK2, Block(5000, False, 6).encode())]))
    assert one(h).code == Code.BAD_OPTION  # past the end of a representation: still 4.02


def test_a_block_with_a_uri_that_is_not_utf8_is_4_02_not_held() -> None:
    # Uri-Path is a string (RFC 7252 section 3.2): a value that is not UTF-8 gets 4.02 at
    # the first block, as a request without blocks does, not 2.31 and the 4.02 at the end.
    h = connect()
    options = Options([(OptionNumber.URI_PATH, b"st\xffre"), (BLOCK1, Block(0, True, 6).encode())])
    h.feed(Message(Code.PUT, b"u", options, bytes(1024)))
    answer = one(h)
    assert answer.code == Code.BAD_OPTION
    assert answer.payload.startswith(b"a Uri-Host, Uri-Path or Uri-Query value is not UTF-8")
    assert h.protocol.channel.blockwise.uploads_in_progress == 0
    h.feed(get(b"h", "hello"))
    assert one(h).payload == b"Hello, world!"
