"""Block-wise transfer with BERT, server side (coaptcp.core.blockwise).

RFC 7959 (Block1/Block2, 2.31 Continue, 4.08, 4.13, Size1/Size2) and RFC 8323 section 6 /
draft-ietf-core-coap-tcp-tls-07 section 6 (BERT): the draft's two BERT examples, SZX
negotiation down, missing and out-of-order blocks, oversize uploads and expiry with a fake
clock.  Pure: no Twisted, no sockets.
"""

from __future__ import annotations

import functools
import hashlib

import pytest

from coaptcp.core.blockwise import (
    BERT_SZX,
    MAX_NUM,
    UPLOAD_RETRY_AFTER,
    Block,
    BlockError,
    BlockwiseServer,
    Upload,
    UploadBudget,
    UploadError,
    choose_block2,
    slice_block,
    szx_for_size,
)
from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options, decode_uint

BLOCK1, BLOCK2, SIZE1, SIZE2 = 27, 23, 60, 28
CONTINUE = 0x5F  # 2.31


def frame_size(message: Message) -> int:
    return len(encode_frame(message))


@functools.cache
def body_of(size: int) -> bytes:
    """A recognisable body: no two 1024-byte blocks alike."""
    return bytes((i * 7 + i // 1024) % 251 for i in range(size))


def block_opt(message: Message, number: int) -> Block | None:
    raw = message.options.get(number)
    return None if raw is None else Block.decode(decode_uint(raw))


def request(
    code: Code = Code.GET,
    *,
    path: tuple[str, ...] = ("status",),
    block1: Block | None = None,
    block2: Block | None = None,
    size1: int | None = None,
    payload: bytes = b"",
    token: bytes = b"tk",
    extra: tuple[tuple[int, bytes | int], ...] = (),
) -> Message:
    items: list[tuple[int, bytes | int | str]] = [(11, p) for p in path]
    if block1 is not None:
        items.append((BLOCK1, block1.encode()))
    if block2 is not None:
        items.append((BLOCK2, block2.encode()))
    if size1 is not None:
        items.append((SIZE1, size1))
    items.extend(extra)
    return Message(code, token, Options(items), payload)


def content(body: bytes, token: bytes = b"tk") -> Message:
    return Message(Code.CONTENT, token, Options([(12, 42)]), body)


def prepare(
    server: BlockwiseServer,
    req: Message,
    resp: Message,
    *,
    mms: int = 1152,
    peer_bert: bool = False,
) -> Message:
    out = server.prepare_response(
        req, resp, peer_max_message_size=mms, peer_bert=peer_bert, encoded_size=frame_size
    )
    return out


def mms_for_payload(resp: Message, payload: int) -> int:
    """A peer Max-Message-Size that leaves exactly ``payload`` bytes of room for BERT."""
    return frame_size(resp.replace(payload=b"")) + 17 + payload


# -- the Block option value (RFC 7959 section 2.2) -------------------------------------------


@pytest.mark.parametrize(
    ("value", "num", "more", "szx", "size", "offset"),
    [
        (0x00, 0, False, 0, 16, 0),
        (0x06, 0, False, 6, 1024, 0),
        (0x0E, 0, True, 6, 1024, 0),
        (33, 2, False, 1, 32, 64),  # the draft's example: 2:2/0/32
        (59, 3, True, 3, 128, 384),  # the draft's example: 1:3/1/128
        (0x07, 0, False, 7, 1024, 0),  # BERT: NUM counts 1024-byte blocks
        (0x3F, 3, True, 7, 1024, 3072),
        (0x8F, 8, True, 7, 1024, 8192),
        (0x187, 24, False, 7, 1024, 24576),
        (0xFFFFFF, MAX_NUM, True, 7, 1024, MAX_NUM * 1024),
    ],
)
def test_block_decode_encode(
    value: int, num: int, more: bool, szx: int, size: int, offset: int
) -> None:
    block = Block.decode(value)
    assert (block.num, block.more, block.szx) == (num, more, szx)
    assert block.size == size
    assert block.offset == offset
    assert block.is_bert is (szx == BERT_SZX)
    assert block.encode() == value


@pytest.mark.parametrize("value", [-1, 0x1000000, 0xFFFFFFFF])
def test_block_decode_rejects_values_beyond_three_bytes(value: int) -> None:
    with pytest.raises(BlockError):
        Block.decode(value)


@pytest.mark.parametrize("num", [-1, MAX_NUM + 1])
def test_block_encode_rejects_num_beyond_20_bits(num: int) -> None:
    with pytest.raises(BlockError):
        Block(num, False, 6).encode()


@pytest.mark.parametrize(
    ("size", "szx"),
    [
        (0, 0),
        (16, 0),
        (31, 0),
        (32, 1),
        (63, 1),
        (64, 2),
        (255, 3),
        (256, 4),
        (1023, 5),
        (1024, 6),
        (1152, 6),
        (100_000, 6),
    ],
)
def test_szx_for_size(size: int, szx: int) -> None:
    assert szx_for_size(size) == szx


# -- choosing the Block2 size -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room", "requested", "peer_bert", "expected"),
    [
        (1100, None, False, (6, 1024)),
        (1100, None, True, (6, 1024)),  # BERT needs room for at least two blocks
        (2047, None, True, (6, 1024)),
        (2048, None, True, (7, 2048)),
        (5000, None, True, (7, 4096)),
        (5000, None, False, (6, 1024)),  # the peer's CSM did not announce BERT
        (5000, Block(0, False, 7), False, (7, 4096)),  # a BERT request says it can
        (5000, Block(0, False, 6), True, (6, 1024)),  # a non-BERT request bounds the SZX
        (5000, Block(0, False, 2), True, (2, 64)),  # negotiation down: SZX 2
        (300, Block(0, False, 6), False, (4, 256)),  # we reduce to what fits
        (300, Block(0, False, 7), False, (4, 256)),
        (5, None, False, (0, 16)),  # nothing fits: the smallest block
    ],
)
def test_choose_block2(
    room: int, requested: Block | None, peer_bert: bool, expected: tuple[int, int]
) -> None:
    assert choose_block2(room=room, requested=requested, peer_bert=peer_bert) == expected


# -- the draft's GET with BERT blocks (draft-07 section 6, RFC 8323 figure 13) -----------------

STATUS = body_of(3072 + 5120 + 4711)


@pytest.mark.parametrize(
    ("offset", "limit", "payload", "block"),
    [
        (0, 3072, STATUS[:3072], Block(0, True, 7)),  # 2:0/1/BERT(3072)
        (3072, 5120, STATUS[3072:8192], Block(3, True, 7)),  # 2:3/1/BERT(5120)
        (8192, 5120, STATUS[8192:], Block(8, False, 7)),  # 2:8/0/BERT(4711)
        (8192, 65536, STATUS[8192:], Block(8, False, 7)),  # room to spare: still 4711
    ],
)
def test_slice_block_bert_example(offset: int, limit: int, payload: bytes, block: Block) -> None:
    chunk, got = slice_block(STATUS, offset, BERT_SZX, limit)
    assert got == block
    assert chunk == payload


def test_get_with_bert_blocks_draft_example() -> None:
    """GET /status: 3072, then 5120, then 4711 bytes, NUM moving by 1024-byte blocks."""
    server = BlockwiseServer()
    response = content(STATUS)
    steps = [
        (None, 3072, Block(0, True, 7), 3072),
        (Block(3, False, 7), 5120, Block(3, True, 7), 5120),
        (Block(8, False, 7), 5120, Block(8, False, 7), 4711),
    ]
    received = b""
    for requested, room, expected, length in steps:
        mms = mms_for_payload(response, room)
        out = prepare(server, request(block2=requested), response, mms=mms, peer_bert=True)
        assert out.code == Code.CONTENT
        assert block_opt(out, BLOCK2) == expected
        assert len(out.payload) == length
        assert frame_size(out) <= mms
        # Size2 tells the whole size on the first block only (RFC 7959 section 4).
        assert out.options.get_uint(SIZE2) == (len(STATUS) if expected.num == 0 else None)
        assert out.options.get_uint(12) == 42
        received += out.payload
    assert received == STATUS


# -- the draft's PUT with BERT blocks (draft-07 section 6, RFC 8323 figure 14) -----------------


def test_put_with_bert_blocks_draft_example() -> None:
    body = body_of(8192 + 16384 + 5683)
    server = BlockwiseServer()
    steps = [
        (Block(0, True, 7), body[:8192], Block(0, True, 7)),  # 1:0/1/BERT(8192)
        (Block(8, True, 7), body[8192:24576], Block(8, True, 7)),  # 1:8/1/BERT(16384)
    ]
    for now, (sent, payload, echoed) in enumerate(steps):
        msg = request(Code.PUT, path=("options",), block1=sent, payload=payload)
        answer, complete = server.receive_request(msg, float(now))
        assert complete is None
        assert answer is not None
        assert answer.code == CONTINUE
        assert answer.token == b"tk"
        assert block_opt(answer, BLOCK1) == echoed
        assert server.uploads_in_progress == 1
        # The channel passes the 2.31 through prepare_response: the echo must survive.
        out = prepare(server, msg, answer, mms=65536, peer_bert=True)
        assert block_opt(out, BLOCK1) == echoed
    final = request(Code.PUT, path=("options",), block1=Block(24, False, 7), payload=body[24576:])
    answer, complete = server.receive_request(final, 2.0)
    assert answer is None
    assert complete is not None
    assert complete.payload == body
    assert len(complete.payload) == 30259
    assert complete.code == Code.PUT
    assert complete.options.uri_path == ("options",)
    assert server.uploads_in_progress == 0
    changed = Message(Code.CHANGED, b"tk")
    out = prepare(server, complete, changed, mms=65536, peer_bert=True)
    assert out.code == Code.CHANGED
    assert block_opt(out, BLOCK1) == Block(24, False, 7)  # 2.04 Changed, 1:24/0/BERT


# -- Block2: serving big bodies ----------------------------------------------------------------


def test_response_that_fits_goes_out_whole() -> None:
    server = BlockwiseServer()
    resp = content(b"x" * 1000)
    out = prepare(server, request(), resp, mms=1152)
    assert out == resp
    assert BLOCK2 not in out.options and SIZE2 not in out.options


def test_response_exactly_at_the_limit_goes_out_whole() -> None:
    server = BlockwiseServer()
    resp = content(b"y" * 1100)
    out = prepare(server, request(), resp, mms=frame_size(resp))
    assert out == resp
    out = prepare(server, request(), resp, mms=frame_size(resp) - 1)
    assert block_opt(out, BLOCK2) == Block(0, True, 6)


def test_first_block_without_block2_request() -> None:
    body = body_of(4000)
    out = prepare(BlockwiseServer(), request(), content(body), mms=1152)
    assert block_opt(out, BLOCK2) == Block(0, True, 6)
    assert out.payload == body[:1024]
    assert out.options.get_uint(SIZE2) == 4000
    assert frame_size(out) <= 1152


def test_a_small_response_asked_for_in_blocks_is_one_final_block() -> None:
    out = prepare(BlockwiseServer(), request(block2=Block(0, False, 6)), content(b"hello"))
    assert block_opt(out, BLOCK2) == Block(0, False, 6)
    assert out.payload == b"hello"
    assert out.options.get_uint(SIZE2) == 5


@pytest.mark.parametrize(
    ("requested", "expected", "start", "end"),
    [
        (Block(0, False, 2), Block(0, True, 2), 0, 64),  # client asks SZX 2: 64-byte blocks
        (Block(1, False, 2), Block(1, True, 2), 64, 128),
        (Block(62, False, 2), Block(62, False, 2), 3968, 4000),  # the last, partial block
        (Block(3, False, 6), Block(3, False, 6), 3072, 4000),
        (Block(1, False, 7), Block(1, False, 6), 1024, 2048),  # BERT asked, 1152 room: 1024
        (Block(0, False, 0), Block(0, True, 0), 0, 16),
    ],
)
def test_block2_follows_the_requested_szx_and_num(
    requested: Block, expected: Block, start: int, end: int
) -> None:
    body = body_of(4000)
    out = prepare(BlockwiseServer(), request(block2=requested), content(body), mms=1152)
    assert out.code == Code.CONTENT
    assert block_opt(out, BLOCK2) == Block(expected.num, end < len(body), expected.szx)
    assert out.payload == body[start:end]
    assert (out.options.get_uint(SIZE2) is not None) is (expected.num == 0)


def test_szx_negotiation_down_whole_transfer() -> None:
    """The client asks for SZX 2 and keeps to it: 64-byte blocks to the end."""
    body = body_of(1000)
    server = BlockwiseServer()
    received, num, more = b"", 0, True
    while more:
        out = prepare(
            server, request(block2=Block(num, False, 2)), content(body), mms=65536, peer_bert=True
        )
        block = block_opt(out, BLOCK2)
        assert block is not None and block.szx == 2 and block.num == num
        assert len(out.payload) == (64 if block.more else 1000 - 15 * 64)
        received += out.payload
        more, num = block.more, num + 1
    assert received == body
    assert num == 16


def test_server_reduces_the_block_size_to_fit_the_peer() -> None:
    """SZX 6 asked, but only 256-byte blocks fit: NUM is re-expressed in 256-byte blocks."""
    body = body_of(4000)
    resp = content(body)
    mms = frame_size(resp.replace(payload=b"")) + 17 + 300
    out = prepare(BlockwiseServer(), request(block2=Block(1, False, 6)), resp, mms=mms)
    assert block_opt(out, BLOCK2) == Block(4, True, 4)
    assert out.payload == body[1024:1280]
    assert frame_size(out) <= mms


@pytest.mark.parametrize(
    ("requested", "peer_bert", "expect_bert"),
    [
        (None, True, True),  # the peer's CSM announced BERT
        (None, False, False),
        (Block(0, False, 7), False, True),  # the request's BERT option announces it
        (Block(0, False, 6), True, False),  # the request asks for 1024: it gets 1024
    ],
)
def test_bert_only_when_the_peer_can(
    requested: Block | None, peer_bert: bool, expect_bert: bool
) -> None:
    body = body_of(200_000)
    out = prepare(
        BlockwiseServer(),
        request(block2=requested),
        content(body),
        mms=65536 + 512,
        peer_bert=peer_bert,
    )
    block = block_opt(out, BLOCK2)
    assert block is not None
    assert block.is_bert is expect_bert
    if expect_bert:
        assert len(out.payload) == 65536
        assert frame_size(out) <= 65536 + 512
    else:
        assert len(out.payload) == 1024


@pytest.mark.parametrize("num", [4, 100, MAX_NUM])
def test_block2_num_past_the_end_is_bad_option(num: int) -> None:
    out = prepare(BlockwiseServer(), request(block2=Block(num, False, 6)), content(body_of(4000)))
    assert out.code == Code.BAD_OPTION
    assert out.token == b"tk"
    assert BLOCK2 not in out.options
    assert b"past the end" in out.payload


def test_slice_block_rejects_an_offset_inside_a_block() -> None:
    with pytest.raises(BlockError, match="boundary"):
        slice_block(body_of(4000), 100, 6, 1024)


@pytest.mark.parametrize(
    "mms", [60, 100, 200, 500, 1152, 1153, 2100, 3000, 9000, 65536 + 512, 70_000, 200_000]
)
@pytest.mark.parametrize("peer_bert", [False, True])
@pytest.mark.parametrize("szx", [None, 2, 6, 7])
def test_block2_download_reassembles_and_every_message_fits(
    mms: int, peer_bert: bool, szx: int | None
) -> None:
    """Walk a body block by block as a client would: identical, each within the MMS."""
    body = body_of(100_000 if mms >= 1152 else 6000)  # tiny blocks: keep the walk short
    server = BlockwiseServer()
    resp = Message(Code.CONTENT, b"tok4", Options([(4, b"etag1234"), (12, 42), (14, 30)]), body)
    received = b""
    requested = None if szx is None else Block(0, False, szx)
    messages = 0
    while True:
        out = prepare(
            server, request(block2=requested, token=b"tok4"), resp, mms=mms, peer_bert=peer_bert
        )
        messages += 1
        assert out.code == Code.CONTENT
        assert frame_size(out) <= mms
        assert out.options.etag == (b"etag1234",)
        block = block_opt(out, BLOCK2)
        if block is None:  # it all fits, and no block was asked for: one whole message
            assert requested is None and not received
            assert out.payload == body
            assert SIZE2 not in out.options
            return
        assert block.offset == len(received)
        received += out.payload
        if not block.more:
            break
        # the client continues from where it stands, with the size the server chose
        next_num = len(received) // block.size
        requested = Block(next_num, False, block.szx)
    assert received == body
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert messages <= len(body) // 16 + 1


@pytest.mark.parametrize(
    "options",
    [
        Options(),  # Block2 then needs an extended option delta
        Options([(OptionNumber.OBSERVE, 5)]),
        Options([(4, b"12345678"), (12, 42), (14, 60)]),
        Options([(12, 0), (27, 0x0E)]),  # a Block1 echo already there: Size2 comes after it
        Options([(60, 1 << 20), (258, 2)]),  # options after Block2 and Size2
    ],
)
def test_block_sizing_never_overshoots_the_peer_limit(options: Options) -> None:
    """Sweep the peer's Max-Message-Size across every block boundary (BERT and not)."""
    body = body_of(300_000)
    server = BlockwiseServer()
    resp = Message(Code.CONTENT, b"toke", options, body)
    base = frame_size(resp.replace(payload=b""))
    checked = 0
    for payload in (16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 64 * 1024, 68 * 1024):
        for delta in range(-3, 24):
            mms = base + payload + delta
            if mms - base - 17 < 16:
                continue  # not even a 16-byte block fits: the channel answers 5.00
            for peer_bert in (False, True):
                out = prepare(server, request(token=b"toke"), resp, mms=mms, peer_bert=peer_bert)
                assert frame_size(out) <= mms, (payload, delta, peer_bert, frame_size(out))
                block = block_opt(out, BLOCK2)
                assert block is not None
                # and it does not waste more than the reserve: the next size would not fit
                if not block.is_bert and block.szx < 6:
                    assert frame_size(out) + len(out.payload) > mms - 17
                checked += 1
    assert checked > 500


# -- Block1: uploads ------------------------------------------------------------------------------


def upload_blocks(body: bytes, szx: int, per_message: int = 1) -> list[tuple[Block, bytes]]:
    """Cut ``body`` the way a client would: BERT takes ``per_message`` 1024-byte blocks."""
    unit = 1024 if szx == BERT_SZX else 1 << (szx + 4)
    step = unit * (per_message if szx == BERT_SZX else 1)
    out = []
    for start in range(0, max(len(body), 1), step):
        chunk = body[start : start + step]
        out.append((Block(start // unit, start + step < len(body), szx), chunk))
    return out


@pytest.mark.parametrize(
    ("size", "szx", "per_message"),
    [
        (5000, 6, 1),
        (5000, 2, 1),
        (1024, 6, 1),
        (2048, 6, 1),
        (100_000, 7, 8),
        (65536, 7, 64),
        (3000, 7, 1),
        (10, 6, 1),
    ],
)
def test_block1_upload_reassembled(size: int, szx: int, per_message: int) -> None:
    body = body_of(size)
    server = BlockwiseServer()
    blocks = upload_blocks(body, szx, per_message)
    for block, chunk in blocks[:-1]:
        answer, complete = server.receive_request(
            request(Code.PUT, path=("store",), block1=block, payload=chunk), 0.0
        )
        assert complete is None and answer is not None
        assert answer.code == CONTINUE
        assert block_opt(answer, BLOCK1) == Block(block.num, True, szx)
    last, chunk = blocks[-1]
    answer, complete = server.receive_request(
        request(Code.PUT, path=("store",), block1=last, payload=chunk), 0.0
    )
    assert answer is None and complete is not None
    assert complete.payload == body
    assert block_opt(complete, BLOCK1) == last  # kept, so the final response can echo it
    assert server.uploads_in_progress == 0


def test_request_without_block1_passes_through() -> None:
    server = BlockwiseServer()
    msg = request(Code.POST, path=("store",), payload=b"plain")
    assert server.receive_request(msg, 0.0) == (None, msg)
    assert server.uploads_in_progress == 0


def test_final_response_echoes_block1_with_m_0() -> None:
    server = BlockwiseServer()
    final = request(Code.POST, path=("store",), block1=Block(4, False, 6), payload=b"end")
    out = prepare(server, final, Message(Code.CHANGED, b"tk", payload=b"stored"))
    assert block_opt(out, BLOCK1) == Block(4, False, 6)
    assert out.payload == b"stored"


def test_the_upload_key_separates_paths_methods_queries_and_request_tags() -> None:
    server = BlockwiseServer()
    first = Block(0, True, 6)
    variants = [
        request(Code.PUT, path=("a",), block1=first, payload=b"A" * 1024),
        request(Code.PUT, path=("b",), block1=first, payload=b"B" * 1024),
        request(Code.POST, path=("a",), block1=first, payload=b"C" * 1024),
        request(Code.PUT, path=("a",), block1=first, payload=b"D" * 1024, extra=((15, "q=1"),)),
        request(Code.PUT, path=("a",), block1=first, payload=b"E" * 1024, extra=((292, b"\x01"),)),
    ]
    for msg in variants:
        answer, _ = server.receive_request(msg, 0.0)
        assert answer is not None and answer.code == CONTINUE
    assert server.uploads_in_progress == 5
    # the token does not matter (RFC 7959 section 2.5: clients may change it per block)
    last = Block(1, False, 6)
    _, complete = server.receive_request(
        request(Code.PUT, path=("b",), block1=last, payload=b"b", token=b"other"), 1.0
    )
    assert complete is not None and complete.payload == b"B" * 1024 + b"b"
    _, complete = server.receive_request(
        request(Code.PUT, path=("a",), block1=last, payload=b"e", extra=((292, b"\x01"),)), 1.0
    )
    assert complete is not None and complete.payload == b"E" * 1024 + b"e"
    assert server.uploads_in_progress == 3


def test_block_zero_restarts_an_upload() -> None:
    server = BlockwiseServer()
    server.receive_request(
        request(Code.PUT, block1=Block(0, True, 6), payload=b"old" + bytes(1021)), 0.0
    )
    server.receive_request(request(Code.PUT, block1=Block(0, True, 6), payload=b"n" * 1024), 0.0)
    _, complete = server.receive_request(
        request(Code.PUT, block1=Block(1, False, 6), payload=b"!"), 0.0
    )
    assert complete is not None and complete.payload == b"n" * 1024 + b"!"


# -- missing and out-of-order blocks: 4.08 (RFC 7959 section 2.9.2) ------------------------------


def expect_incomplete(answer: Message | None, complete: Message | None) -> None:
    assert complete is None
    assert answer is not None
    assert answer.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert answer.token == b"tk"
    assert answer.payload  # a diagnostic


@pytest.mark.parametrize(
    "sequence",
    [
        # no upload in progress for a later block
        [(Block(1, True, 6), 1024)],
        [(Block(3, False, 6), 10)],
        # a gap: block 1 is missing
        [(Block(0, True, 6), 1024), (Block(2, True, 6), 1024)],
        # a repeated block
        [(Block(0, True, 6), 1024), (Block(1, True, 6), 1024), (Block(1, True, 6), 1024)],
        # a non-final block of the wrong size
        [(Block(0, True, 6), 1000)],
        [(Block(0, True, 6), 1024), (Block(1, True, 6), 1025)],
        # a non-final BERT block that is not a multiple of 1024, or empty
        [(Block(0, True, 7), 3000)],
        [(Block(0, True, 7), 0)],
        # BERT: after 8192 bytes the next block is NUM 8, not 1
        [(Block(0, True, 7), 8192), (Block(1, True, 7), 1024)],
        # a size change that does not land on the body's end
        [(Block(0, True, 6), 1024), (Block(3, True, 4), 256)],
    ],
)
def test_missing_or_out_of_order_block_is_4_08(sequence: list[tuple[Block, int]]) -> None:
    server = BlockwiseServer()
    *good, (bad, bad_len) = sequence
    for block, length in good:
        answer, _ = server.receive_request(
            request(Code.PUT, block1=block, payload=b"z" * length), 0.0
        )
        assert answer is not None and answer.code == CONTINUE
    answer, complete = server.receive_request(
        request(Code.PUT, block1=bad, payload=b"z" * bad_len), 0.0
    )
    expect_incomplete(answer, complete)
    assert server.uploads_in_progress == 0  # the broken upload is dropped
    # and the next block is 4.08 too: the client must start again from block 0
    if good:
        expect_incomplete(
            *server.receive_request(
                request(Code.PUT, block1=Block(bad.num + 1, False, 6), payload=b"z"), 0.0
            )
        )


def test_switching_to_a_smaller_block_size_mid_upload_is_accepted() -> None:
    """Offsets, not NUMs, matter: 1024 bytes then 256-byte blocks from NUM 4."""
    server = BlockwiseServer()
    server.receive_request(request(Code.PUT, block1=Block(0, True, 6), payload=b"a" * 1024), 0.0)
    answer, _ = server.receive_request(
        request(Code.PUT, block1=Block(4, True, 4), payload=b"b" * 256), 0.0
    )
    assert answer is not None and answer.code == CONTINUE
    assert block_opt(answer, BLOCK1) == Block(4, True, 4)
    _, complete = server.receive_request(
        request(Code.PUT, block1=Block(5, False, 4), payload=b"c"), 0.0
    )
    assert complete is not None and complete.payload == b"a" * 1024 + b"b" * 256 + b"c"


def test_upload_add_directly() -> None:
    upload = Upload(limit=4096, started=0.0, last_seen=0.0)
    assert upload.add(Block(0, True, 6), b"x" * 1024, 1.0) is False
    assert upload.last_seen == 1.0
    with pytest.raises(UploadError) as info:
        upload.add(Block(0, True, 6), b"x" * 1024, 2.0)
    assert info.value.code == 0x88
    assert upload.add(Block(1, False, 6), b"end", 3.0) is True
    assert bytes(upload.data) == b"x" * 1024 + b"end"


# -- oversize uploads: 4.13 with Size1 (RFC 7959 sections 2.9.3 and 4) ---------------------------


def expect_too_large(answer: Message | None, complete: Message | None, limit: int) -> None:
    assert complete is None
    assert answer is not None
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.get_uint(SIZE1) == limit
    assert str(limit).encode() in answer.payload


def test_upload_growing_past_the_limit_is_4_13() -> None:
    server = BlockwiseServer(max_body_size=4096)
    for num in range(4):
        answer, _ = server.receive_request(
            request(Code.PUT, block1=Block(num, True, 6), payload=b"q" * 1024), 0.0
        )
        assert answer is not None and answer.code == CONTINUE
    expect_too_large(
        *server.receive_request(request(Code.PUT, block1=Block(4, False, 6), payload=b"1"), 0.0),
        4096,
    )
    assert server.uploads_in_progress == 0


def test_upload_exactly_at_the_limit_is_accepted() -> None:
    server = BlockwiseServer(max_body_size=4096)
    _, complete = server.receive_request(
        request(Code.PUT, block1=Block(0, False, 7), payload=b"q" * 4096), 0.0
    )
    assert complete is not None and len(complete.payload) == 4096


def test_one_bert_message_past_the_limit_is_4_13() -> None:
    server = BlockwiseServer(max_body_size=4096)
    expect_too_large(
        *server.receive_request(
            request(Code.PUT, block1=Block(0, True, 7), payload=b"q" * 5120), 0.0
        ),
        4096,
    )


@pytest.mark.parametrize("with_block1", [False, True])
def test_oversized_size1_announcement_is_4_13(with_block1: bool) -> None:
    server = BlockwiseServer(max_body_size=10_000)
    block1 = Block(0, True, 6) if with_block1 else None
    expect_too_large(
        *server.receive_request(
            request(Code.PUT, block1=block1, size1=10_001, payload=b"q" * 1024), 0.0
        ),
        10_000,
    )
    assert server.uploads_in_progress == 0
    # announcing exactly the limit is fine
    answer, complete = server.receive_request(
        request(Code.PUT, block1=block1, size1=10_000, payload=b"q" * 1024), 0.0
    )
    if with_block1:
        assert answer is not None and answer.code == CONTINUE
    else:
        assert answer is None and complete is not None


def test_default_limit_is_16_mib() -> None:
    server = BlockwiseServer()
    expect_too_large(
        *server.receive_request(
            request(
                Code.PUT, block1=Block(0, True, 6), size1=16 * 1024 * 1024 + 1, payload=b"q" * 1024
            ),
            0.0,
        ),
        16 * 1024 * 1024,
    )


# -- bounded uploads in progress: 5.03 with Max-Age ----------------------------------------------


def test_too_many_uploads_in_progress_is_5_03() -> None:
    server = BlockwiseServer(max_uploads=2)
    for name in ("a", "b"):
        answer, _ = server.receive_request(
            request(Code.PUT, path=(name,), block1=Block(0, True, 6), payload=b"p" * 1024), 0.0
        )
        assert answer is not None and answer.code == CONTINUE
    answer, complete = server.receive_request(
        request(Code.PUT, path=("c",), block1=Block(0, True, 6), payload=b"p" * 1024), 0.0
    )
    assert complete is None and answer is not None
    assert answer.code == Code.SERVICE_UNAVAILABLE
    assert answer.options.get_uint(OptionNumber.MAX_AGE) is not None
    assert server.uploads_in_progress == 2
    # restarting an upload in progress is still fine, so is continuing one
    answer, _ = server.receive_request(
        request(Code.PUT, path=("a",), block1=Block(0, True, 6), payload=b"p" * 1024), 0.0
    )
    assert answer is not None and answer.code == CONTINUE
    _, complete = server.receive_request(
        request(Code.PUT, path=("b",), block1=Block(1, False, 6), payload=b"!"), 0.0
    )
    assert complete is not None
    # one finished: there is room again
    answer, _ = server.receive_request(
        request(Code.PUT, path=("c",), block1=Block(0, True, 6), payload=b"p" * 1024), 0.0
    )
    assert answer is not None and answer.code == CONTINUE


# -- expiry with a fake clock ------------------------------------------------------------------


def test_upload_expires_after_its_lifetime() -> None:
    server = BlockwiseServer(upload_lifetime=60.0)
    server.receive_request(request(Code.PUT, block1=Block(0, True, 6), payload=b"e" * 1024), 100.0)
    # 59.5 s idle is still within the lifetime; the block refreshes it
    answer, _ = server.receive_request(
        request(Code.PUT, block1=Block(1, True, 6), payload=b"e" * 1024), 159.5
    )
    assert answer is not None and answer.code == CONTINUE
    assert server.next_expiry() == 219.5
    # 60 s after the last block it has gone
    expect_incomplete(
        *server.receive_request(request(Code.PUT, block1=Block(2, False, 6), payload=b"e"), 219.5)
    )
    assert server.uploads_in_progress == 0


def test_an_upload_kept_busy_outlives_its_lifetime() -> None:
    """The lifetime counts from the last block, not from the first."""
    server = BlockwiseServer(upload_lifetime=60.0)
    for num, now in enumerate((0.0, 50.0, 100.0, 150.0)):
        answer, _ = server.receive_request(
            request(Code.PUT, block1=Block(num, True, 6), payload=b"k" * 1024), now
        )
        assert answer is not None and answer.code == CONTINUE, now
    _, complete = server.receive_request(
        request(Code.PUT, block1=Block(4, False, 6), payload=b"."), 200.0
    )
    assert complete is not None and len(complete.payload) == 4097


def test_expire_drops_only_idle_uploads() -> None:
    server = BlockwiseServer(upload_lifetime=10.0)
    server.receive_request(
        request(Code.PUT, path=("old",), block1=Block(0, True, 6), payload=b"o" * 1024), 0.0
    )
    server.receive_request(
        request(Code.PUT, path=("new",), block1=Block(0, True, 6), payload=b"n" * 1024), 5.0
    )
    assert server.expire(9.5) == 0
    assert server.uploads_in_progress == 2
    assert server.next_expiry() == 10.0
    assert server.expire(10.0) == 1  # exactly its lifetime after its last block
    assert server.uploads_in_progress == 1
    assert server.next_expiry() == 15.0
    assert server.expire(12.0) == 0
    _, complete = server.receive_request(
        request(Code.PUT, path=("new",), block1=Block(1, False, 6), payload=b"."), 12.0
    )
    assert complete is not None and complete.payload == b"n" * 1024 + b"."


def test_expired_uploads_free_their_slot() -> None:
    server = BlockwiseServer(max_uploads=1, upload_lifetime=30.0)
    server.receive_request(
        request(Code.PUT, path=("a",), block1=Block(0, True, 6), payload=b"a" * 1024), 0.0
    )
    answer, _ = server.receive_request(
        request(Code.PUT, path=("b",), block1=Block(0, True, 6), payload=b"b" * 1024), 10.0
    )
    assert answer is not None and answer.code == Code.SERVICE_UNAVAILABLE
    answer, _ = server.receive_request(
        request(Code.PUT, path=("b",), block1=Block(0, True, 6), payload=b"b" * 1024), 31.0
    )
    assert answer is not None and answer.code == CONTINUE


# -- byte budgets: per connection and shared by a server's connections ------------------------


def part(name: str, num: int, size: int = 1024, *, more: bool = True, token: bytes = b"tk"
         ) -> Message:
    """Block ``num`` (1024-byte blocks) of an upload to ``/name``."""
    return request(
        Code.PUT, path=(name,), block1=Block(num, more, 6), payload=b"b" * size, token=token
    )


def expect_unavailable(answer: Message | None, complete: Message | None) -> Message:
    assert complete is None and answer is not None
    assert answer.code == Code.SERVICE_UNAVAILABLE
    assert answer.options.get_uint(OptionNumber.MAX_AGE) == UPLOAD_RETRY_AFTER
    assert answer.payload.decode().endswith("; retry later")
    return answer


def test_an_upload_past_the_connection_budget_is_5_03_and_dropped() -> None:
    server = BlockwiseServer(max_connection_bytes=3072, max_body_size=3072)
    for num in range(2):
        answer, _ = server.receive_request(part("a", num), 0.0)
        assert answer is not None and answer.code == CONTINUE
    assert server.held_bytes == 2048
    answer, _ = server.receive_request(part("b", 0), 0.0)
    assert answer is not None and answer.code == CONTINUE
    assert server.held_bytes == 3072
    # a's third block does not fit: 5.03, and a is gone, its bytes given back (which does
    # not start a new episode: a connection's bounds are logged once per connection)
    answer = expect_unavailable(*server.receive_request(part("a", 2), 0.0))
    assert b"3072 bytes" in answer.payload
    assert server.last_refusal is not None
    assert (server.last_refusal.bound, server.last_refusal.held) == ("connection", 3072)
    assert server.last_refusal.first
    assert server.uploads_in_progress == 1 and server.held_bytes == 1024
    expect_incomplete(*server.receive_request(part("a", 3, 10, more=False), 0.0))
    # b goes on; the next refusal is the same episode (not to be logged again)
    for num in (1, 2):
        answer, _ = server.receive_request(part("b", num), 0.0)
        assert answer is not None and answer.code == CONTINUE
    expect_unavailable(*server.receive_request(part("c", 0), 0.0))
    assert not server.last_refusal.first
    assert server.connection_budget.refusals == 2


def test_the_last_block_completes_even_with_the_budget_spent() -> None:
    """The last block's bytes are never held: the whole body goes to the resource."""
    server = BlockwiseServer(max_connection_bytes=2048, max_body_size=2048)
    for num in range(2):
        server.receive_request(part("a", num), 0.0)
    assert server.held_bytes == 2048
    answer, complete = server.receive_request(part("a", 2, 0, more=False), 0.0)
    assert answer is None and complete is not None and len(complete.payload) == 2048
    assert server.held_bytes == 0 and server.uploads_in_progress == 0


def test_the_server_budget_is_shared_by_connections() -> None:
    budget = UploadBudget(4096)
    one, two = (BlockwiseServer(budget=budget, max_connection_bytes=3072) for _ in range(2))
    for num in range(3):
        answer, _ = one.receive_request(part("a", num), 0.0)
        assert answer is not None and answer.code == CONTINUE
    answer, _ = two.receive_request(part("a", 0), 0.0)
    assert answer is not None and answer.code == CONTINUE
    assert budget.held == 4096 and (one.held_bytes, two.held_bytes) == (3072, 1024)
    # two has room of its own, the server has none
    answer = expect_unavailable(*two.receive_request(part("a", 1), 0.0))
    assert b"the server holds too many partial uploads" in answer.payload
    assert two.last_refusal is not None
    assert (two.last_refusal.bound, two.last_refusal.held, two.last_refusal.limit) == (
        "server", 4096, 4096
    )
    assert two.last_refusal.first and budget.exhausted
    assert budget.held == 3072 and two.held_bytes == 0  # two's upload was dropped
    answer, _ = two.receive_request(part("b", 0), 0.0)  # that freed 1024
    assert answer is not None and answer.code == CONTINUE
    expect_unavailable(*two.receive_request(part("c", 0), 0.0))
    assert not two.last_refusal.first  # the same episode
    # the episode ends when the bytes held fall to half the budget
    one.drop_uploads()
    assert budget.held == 1024 and not budget.exhausted
    for num in range(3):
        answer, _ = one.receive_request(part("e", num), 0.0)
        assert answer is not None and answer.code == CONTINUE
    expect_unavailable(*two.receive_request(part("b", 1), 0.0))
    assert two.last_refusal is not None and two.last_refusal.first
    assert two.last_refusal.bound == "server"
    assert budget.refusals == 3


def test_the_largest_body_is_the_least_of_the_limits() -> None:
    assert BlockwiseServer().max_body_size == 16 * 1024 * 1024
    assert BlockwiseServer(max_connection_bytes=5000).max_body_size == 5000
    budget = UploadBudget(4000)
    server = BlockwiseServer(max_connection_bytes=5000, budget=budget)
    assert server.max_body_size == 4000
    answer, _ = server.receive_request(
        request(Code.PUT, block1=Block(0, True, 6), size1=4001, payload=b"x" * 1024), 0.0
    )
    assert answer is not None and answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert answer.options.get_uint(SIZE1) == 4000


def test_an_upload_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        UploadBudget(0)


@pytest.mark.parametrize(
    "ending",
    ["complete", "expire", "drop", "restart", "gap", "too-large", "refused"],
)
def test_every_ending_gives_the_bytes_back(ending: str) -> None:
    budget = UploadBudget(1 << 20)
    server = BlockwiseServer(budget=budget, max_body_size=4096, upload_lifetime=10.0)
    for num in range(3):
        server.receive_request(part("a", num), 0.0)
    server.receive_request(part("other", 0), 0.0)
    assert budget.held == server.held_bytes == 4096
    if ending == "complete":
        server.receive_request(part("a", 3, 1, more=False), 1.0)
    elif ending == "expire":
        server.receive_request(part("other", 1), 5.0)
        assert server.expire(10.0) == 1
    elif ending == "drop":
        server.drop_uploads()
    elif ending == "restart":  # block 0 again: the old body goes, the new one counts
        server.receive_request(part("a", 0, 10, more=False), 1.0)
    elif ending == "gap":  # 4.08
        expect_incomplete(*server.receive_request(part("a", 5), 1.0))
    elif ending == "too-large":  # 4.13
        answer, _ = server.receive_request(part("a", 3, 2048, more=False), 1.0)
        assert answer is not None and answer.code == Code.REQUEST_ENTITY_TOO_LARGE
    elif ending == "refused":  # 5.03: past a tighter connection budget
        server.connection_budget.limit = 4096
        expect_unavailable(*server.receive_request(part("a", 3), 1.0))
    expected = 0 if ending == "drop" else (2048 if ending == "expire" else 1024)
    assert budget.held == server.held_bytes == expected
    server.drop_uploads()
    assert budget.held == server.held_bytes == server.uploads_in_progress == 0


def test_next_expiry_follows_the_oldest_last_block() -> None:
    server = BlockwiseServer(upload_lifetime=60.0)
    assert server.next_expiry() is None
    server.receive_request(part("a", 0), 10.0)
    server.receive_request(part("b", 0), 20.0)
    assert server.next_expiry() == 70.0
    server.receive_request(part("a", 1), 30.0)  # a is refreshed: b is now the oldest
    assert server.next_expiry() == 80.0
    assert server.expire(80.0) == 1
    assert server.next_expiry() == 90.0
    server.receive_request(part("a", 2, 5, more=False), 31.0)
    assert server.next_expiry() is None


# -- malformed Block options: a 4.02 answer, never an exception ----------------------------------


@pytest.mark.parametrize("number", [BLOCK1, BLOCK2])
def test_block_option_longer_than_three_bytes_is_bad_option(number: int) -> None:
    server = BlockwiseServer()
    msg = Message(Code.PUT, b"tk", Options([(11, "store"), (number, b"\x01\x02\x03\x04")]), b"x")
    answer, complete = server.receive_request(msg, 0.0)
    if number == BLOCK1:
        assert complete is None and answer is not None
        assert answer.code == Code.BAD_OPTION
    else:
        assert answer is None and complete is msg
        # what the Site answers to the bad option goes out as it is
        answer = Message(Code.BAD_OPTION, b"tk", payload=b"Block2 too long")
    out = prepare(server, msg, answer)
    assert out.code == Code.BAD_OPTION
    assert server.uploads_in_progress == 0
