"""Block-wise transfer over UDP (coaptcp.core.udp.blockwise with coaptcp.core.blockwise, RFC 7959).

No BERT over UDP: SZX 7 in a request is 4.00 (RFC 7959 section 2.2), blocks are 1024
bytes at most, and the existing blockwise helpers, given ``peer_bert=False`` and the UDP
message size, cut responses that fit a 1152-byte datagram.
"""

from __future__ import annotations

import pytest
from udp_helpers import ACK, CON

from coaptcp.core.blockwise import Block, BlockwiseServer, BodySender, Download, block2_control
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.blockwise import (
    UDP_MAX_BLOCK_SIZE,
    UDP_MAX_MESSAGE_SIZE,
    bert_in_request,
    is_udp_block,
    udp_block2_control,
    udp_block_size,
)
from coaptcp.core.udp.framing import encode_datagram

BODY = bytes(range(256)) * 12  # 3072 bytes


def udp_size(message: Message) -> int:
    return len(encode_datagram(ACK, 0, message))


@pytest.mark.parametrize(("number", "name"), [(23, "Block2"), (27, "Block1")])
def test_szx_7_in_a_request_is_bad_request(number: int, name: str) -> None:
    request = Message(Code.GET, b"\x01", Options([(number, 0x17)]))  # NUM 1, SZX 7
    answer = bert_in_request(request)
    assert answer is not None
    assert answer.code == Code.BAD_REQUEST and answer.token == b"\x01"
    assert f"{name} SZX 7".encode() in answer.payload


@pytest.mark.parametrize(
    "options",
    [Options(), Options([(23, 0x16)]), Options([(27, 0x0E)]), Options([(23, b"\x00\x00\x00\x07")])],
)
def test_other_requests_pass(options: Options) -> None:
    # SZX 0-6, no Block option, or a value too long for blockwise.py to answer 4.02.
    assert bert_in_request(Message(Code.GET, b"\x01", options)) is None


def test_is_udp_block() -> None:
    assert is_udp_block(Block(3, True, 6))
    assert not is_udp_block(Block(3, True, 7))


def test_block_sizes_are_clamped_to_1024() -> None:
    assert udp_block_size(room=5000) == (6, 1024)
    assert udp_block_size(room=5000, block_size=65536) == (6, UDP_MAX_BLOCK_SIZE)
    assert udp_block_size(room=500) == (4, 256)
    assert udp_block_size(room=5000, block_size=64) == (2, 64)
    # On a reliable transport the same preference means BERT; over UDP it cannot.
    assert block2_control(4096).szx == 7
    assert udp_block2_control(4096) == Block(0, False, 6)
    assert udp_block2_control(100) == Block(0, False, 2)


def test_blockwise_server_cuts_responses_to_fit_a_udp_datagram() -> None:
    server = BlockwiseServer()
    request = Message(Code.GET, b"\x01", Options([(11, "big")]))
    response = Message(Code.CONTENT, b"\x01", Options([(12, 42)]), BODY)
    first = server.prepare_response(
        request,
        response,
        peer_max_message_size=UDP_MAX_MESSAGE_SIZE,
        peer_bert=False,
        encoded_size=udp_size,
    )
    block2 = Block.decode(first.options.block2 or 0)
    assert block2 == Block(0, True, 6)
    assert first.payload == BODY[:1024] and first.options.size2 == len(BODY)
    assert udp_size(first) <= UDP_MAX_MESSAGE_SIZE
    # The client asks for the rest, and may ask for smaller blocks (section 2.4).
    download = Download(max_body_size=1 << 20)
    nxt = download.add(block2, first.payload, size2=first.options.size2)
    while nxt is not None:
        if nxt.num == 1:
            nxt = Block(2 * nxt.num, False, 5)  # switch to 512-byte blocks
        follow = Message(Code.GET, b"\x02", Options([(11, "big"), (23, nxt.encode())]))
        assert bert_in_request(follow) is None
        part = server.prepare_response(
            follow,
            response.replace(token=b"\x02"),
            peer_max_message_size=UDP_MAX_MESSAGE_SIZE,
            peer_bert=False,
            encoded_size=udp_size,
        )
        block = Block.decode(part.options.block2 or 0)
        assert is_udp_block(block) and udp_size(part) <= UDP_MAX_MESSAGE_SIZE
        nxt = download.add(block, part.payload)
    assert bytes(download.data) == BODY


def test_upload_in_udp_blocks() -> None:
    szx, size = udp_block_size(room=UDP_MAX_MESSAGE_SIZE - 100)
    sender = BodySender(BODY, szx, size)
    server = BlockwiseServer()
    mid = 1
    while True:
        block, chunk = sender.current()
        assert is_udp_block(block) and len(chunk) <= 1024
        request = Message(Code.PUT, b"\x03", Options([(11, "up"), (27, block.encode())]), chunk)
        assert len(encode_datagram(CON, mid, request)) <= UDP_MAX_MESSAGE_SIZE
        answer, complete = server.receive_request(request, 0.0)
        mid += 1
        if complete is not None:
            assert complete.payload == BODY
            break
        assert answer is not None and answer.code == Code.CONTINUE
        assert sender.acknowledge(Block.decode(answer.options.block1 or 0))
