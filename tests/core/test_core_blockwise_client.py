"""The client's pure block-wise helpers (RFC 7959; BERT, RFC 8323 section 6): reassembling
a Block2 download, cutting a Block1 upload, and choosing block sizes."""

from __future__ import annotations

import pytest

from coaptcp.core.blockwise import (
    BERT_SZX,
    Block,
    BlockError,
    BodySender,
    Download,
    TransferError,
    block2_control,
    choose_block1,
)

BODY = bytes(i * 7 % 251 for i in range(3072 + 5120 + 4711))


# -- Download --------------------------------------------------------------------------------


def test_draft_bert_get_example() -> None:
    # RFC 8323 section 6.1 (draft -11 "GET with BERT blocks"): 3072, 5120, 4711 bytes;
    # the client asks for 2:3/0/BERT, then 2:8/0/BERT.
    download = Download(1 << 20)
    first = download.add(Block(0, True, BERT_SZX), BODY[:3072])
    assert first == Block(3, False, BERT_SZX)
    second = download.add(Block(3, True, BERT_SZX), BODY[3072:8192])
    assert second == Block(8, False, BERT_SZX)
    assert download.add(Block(8, False, BERT_SZX), BODY[8192:]) is None
    assert bytes(download.data) == BODY
    assert download.blocks == 3


def test_regular_blocks_advance_by_their_size() -> None:
    download = Download(1 << 20)
    assert download.add(Block(0, True, 2), BODY[:64]) == Block(1, False, 2)
    assert download.add(Block(1, True, 2), BODY[64:128]) == Block(2, False, 2)
    assert download.add(Block(2, False, 2), BODY[128:150]) is None
    assert bytes(download.data) == BODY[:150]


def test_follows_a_block_size_that_changes_between_responses() -> None:
    # The server may answer block 1 of 1024 as block 4 of 256 (RFC 7959 section 2.4):
    # positions, not numbers, must match.
    download = Download(1 << 20)
    assert download.add(Block(0, True, 6), BODY[:1024]) == Block(1, False, 6)
    assert download.add(Block(4, True, 4), BODY[1024:1280]) == Block(5, False, 4)
    assert download.add(Block(5, False, 4), BODY[1280:1300]) is None
    assert bytes(download.data) == BODY[:1300]


@pytest.mark.parametrize(
    ("block", "payload", "message"),
    [
        (Block(1, True, 6), BODY[:1024], "does not continue the body at offset 0"),
        (Block(0, True, 6), BODY[:1000], "has 1000 bytes, not 1024"),
        (Block(0, True, BERT_SZX), BODY[:1500], "not a multiple of 1024"),
        (Block(0, True, BERT_SZX), b"", "not a multiple of 1024"),
    ],
)
def test_bad_first_blocks(block: Block, payload: bytes, message: str) -> None:
    with pytest.raises(TransferError, match=message):
        Download(1 << 20).add(block, payload)


def test_etag_must_stay_the_same() -> None:
    download = Download(1 << 20)
    download.add(Block(0, True, 6), BODY[:1024], etag=b"\x01")
    with pytest.raises(TransferError, match="changed during the transfer"):
        download.add(Block(1, False, 6), BODY[1024:2000], etag=b"\x02")
    download = Download(1 << 20)
    download.add(Block(0, True, 6), BODY[:1024], etag=b"\x01")
    with pytest.raises(TransferError, match="ETag 01 became none"):
        download.add(Block(1, False, 6), BODY[1024:2000])


def test_size2_is_checked() -> None:
    download = Download(1 << 20)
    download.add(Block(0, True, 6), BODY[:1024], size2=2000)
    assert download.size2 == 2000
    with pytest.raises(TransferError, match="has 1900 bytes but Size2 said 2000"):
        download.add(Block(1, False, 6), BODY[1024:1900])
    download = Download(1 << 20)
    download.add(Block(0, True, 6), BODY[:1024], size2=1500)
    with pytest.raises(TransferError, match="has 2048 bytes but Size2 said 1500"):
        download.add(Block(1, True, 6), BODY[1024:2048])
    download = Download(1 << 20)
    download.add(Block(0, True, 6), BODY[:1024], size2=1500)
    with pytest.raises(TransferError, match="Size2 changed"):
        download.add(Block(1, False, 6), BODY[1024:1500], size2=1501)


def test_the_limit_is_enforced_early_and_late() -> None:
    with pytest.raises(TransferError, match=r"of 5000 bytes \(Size2\) exceeds the limit of 4096"):
        Download(4096).add(Block(0, True, 6), BODY[:1024], size2=5000)
    download = Download(2000)
    download.add(Block(0, True, 6), BODY[:1024])
    with pytest.raises(TransferError, match="exceeds the limit of 2000 bytes"):
        download.add(Block(1, True, 6), BODY[1024:2048])


# -- BodySender ------------------------------------------------------------------------------


def test_draft_bert_put_example() -> None:
    # RFC 8323 section 6.2: 1:0/1/BERT(8192), 1:8/1/BERT(16384), 1:24/0/BERT(5683).
    body = bytes(range(256)) * 118 + bytes(range(51))  # 8192 + 16384 + 5683 bytes
    assert len(body) == 8192 + 16384 + 5683
    sender = BodySender(body, BERT_SZX, 8192)
    block, chunk = sender.current()
    assert (block, len(chunk)) == (Block(0, True, BERT_SZX), 8192)
    assert sender.acknowledge(Block(0, True, BERT_SZX))
    sender.payload_limit = 16384
    block, chunk = sender.current()
    assert (block, len(chunk)) == (Block(8, True, BERT_SZX), 16384)
    assert sender.acknowledge(Block(8, True, BERT_SZX))
    block, chunk = sender.current()
    assert (block, len(chunk)) == (Block(24, False, BERT_SZX), 5683)
    assert not sender.acknowledge(Block(24, False, BERT_SZX))
    assert sender.offset == len(body)


def test_a_smaller_szx_from_the_server_is_followed() -> None:
    # RFC 7959 section 2.5 (figure 12): 1:0/1/128 answered 2.31 1:0/1/32 -> 1:4/1/32.
    body = bytes(300)
    sender = BodySender(body, 3, 128)
    assert sender.current()[0] == Block(0, True, 3)
    sender.acknowledge(Block(0, True, 1))
    block, chunk = sender.current()
    assert (block, len(chunk)) == (Block(4, True, 1), 32)
    sender.acknowledge(Block(4, True, 3))  # a larger SZX is not taken up
    assert sender.current()[0] == Block(5, True, 1)


def test_bert_falls_back_to_1024_byte_blocks() -> None:
    sender = BodySender(bytes(10_000), BERT_SZX, 4096)
    assert len(sender.current()[1]) == 4096
    sender.acknowledge(Block(0, True, 6))
    block, chunk = sender.current()
    assert (block, len(chunk)) == (Block(4, True, 6), 1024)


def test_body_sender_rejects_a_bad_szx() -> None:
    with pytest.raises(BlockError):
        BodySender(b"x", 8, 16)


# -- choosing sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room", "bert", "preference", "expected"),
    [
        (65_000, True, None, (BERT_SZX, 64_512)),  # the largest BERT message that fits
        (65_000, False, None, (6, 1024)),  # no BERT without the peer's CSM saying so
        (1100, True, None, (6, 1024)),  # room for one block only: plain SZX 6
        (700, False, None, (5, 512)),
        (65_000, True, 256, (4, 256)),
        (65_000, True, 1000, (5, 512)),  # rounded down to a power of two
        (65_000, True, 8192, (BERT_SZX, 8192)),
        (65_000, False, 8192, (6, 1024)),
        (4000, True, 8192, (BERT_SZX, 3072)),  # capped by the room
        (5, False, None, (0, 16)),
    ],
)
def test_choose_block1(
    room: int, bert: bool, preference: int | None, expected: tuple[int, int]
) -> None:
    assert choose_block1(room=room, peer_bert=bert, block_size=preference) == expected


def test_block2_control() -> None:
    assert block2_control(256) == Block(0, False, 4)
    assert block2_control(1024) == Block(0, False, 6)
    assert block2_control(4096) == Block(0, False, BERT_SZX)
