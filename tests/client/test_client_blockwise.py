"""Automatic block-wise transfers in the client, in memory (RFC 7959; BERT, RFC 8323 6).

Downloads of the demo ``/big`` (1 MiB) with and without BERT, block sizes asked for and
imposed by the server, uploads of 1 MiB to ``/store`` (BERT when the peer's CSM allows it,
SZX 6 when not), a smaller SZX answered in 2.31, 4.08 and 4.13 surfaced as the response,
broken downloads failing clearly, and the progress callback.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from client_helpers import MemoryNetwork, make_client
from raw_peer import RawPeer, csm

from coaptcp.client import Client, RequestTimeout
from coaptcp.client.connectors import ConnectOptions
from coaptcp.core.blockwise import BERT_SZX, Block, TransferError
from coaptcp.core.codes import Code
from coaptcp.core.events import RequestReceived
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Request, Response
from coaptcp.tap.demo import BigResource, LargeResource, StoreResource
from coaptcp.testing import failure, result_of, success

MIB = 1 << 20
BIG = BigResource().body
UPLOAD = hashlib.shake_256(b"client upload").digest(MIB)
BLOCK1, BLOCK2 = OptionNumber.BLOCK1, OptionNumber.BLOCK2


class CountingBig(BigResource):
    """``/big`` that records the Block2 option of every request it renders."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[Block | None] = []

    def render_GET(self, request: Request) -> Response:
        raw = request.options.block2
        self.asked.append(None if raw is None else Block.decode(raw))
        return super().render_GET(request)


class RecordingStore(StoreResource):
    """``/store`` that counts the (reassembled) requests it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def render_PUT(self, request: Request) -> Response:
        self.puts += 1
        return super().render_PUT(request)


def setup(server_mms: int | None = None, **client_kwargs: Any) -> tuple[
    MemoryNetwork, Client, CountingBig, RecordingStore
]:
    network = MemoryNetwork()
    if server_mms is not None:
        network.server_max_message_size = server_mms
    big, store = CountingBig(), RecordingStore()
    network.root.putChild("bigc", big)
    network.root.putChild("store", store)
    return network, make_client(network, **client_kwargs), big, store


def record_block1(network: MemoryNetwork) -> list[Message]:
    """Record the requests the server receives on the newest link (as its core reports
    them, before any block-wise handling)."""
    connection = network.links[-1].server.channel.connection
    seen: list[Message] = []
    original = connection.receive_data

    def recording(data: bytes, limit: int = 0) -> Any:
        events = original(data, limit)
        seen.extend(e.message for e in events if isinstance(e, RequestReceived))
        return events

    connection.receive_data = recording  # type: ignore[method-assign]
    return seen


def drain(network: MemoryNetwork, turns: int = 10_000) -> None:
    """Pump every link until quiet (MemoryNetwork.flush stops at 100 turns: too few for
    a thousand blocks, each a turn)."""
    for _ in range(turns):
        moved = [link.pump.pump() for link in network.links]
        network.clock.advance(0)
        if not any(moved):
            return
    raise AssertionError("the links never went quiet")


def block_of(message: Message, number: int) -> Block:
    raw = message.options.get_uint(number)
    assert raw is not None, message
    return Block.decode(raw)


# -- Block2 downloads --------------------------------------------------------------------------


def test_download_1_mib_with_bert() -> None:
    # Our CSM says 66,048 bytes and Block-Wise-Transfer: the server sends BERT blocks of
    # 64 KiB, and we ask for each next one with NUM advanced by 64.
    network, client, big, _ = setup()
    progress: list[tuple[int, int | None]] = []
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/bigc",
                                       progress=lambda done, total: progress.append((done, total))))
    network.flush()
    response = success(results)
    assert response.code == Code.CONTENT
    assert response.payload == BIG
    assert BLOCK2 not in response.options and OptionNumber.SIZE2 not in response.options
    assert response.options.content_format == 42
    assert big.asked[0] is None
    assert big.asked[1:] == [Block(64 * n, False, BERT_SZX) for n in range(1, 16)]
    assert progress == [(65536 * n, MIB) for n in range(1, 17)]


def test_download_1_mib_without_bert() -> None:
    # A client announcing only 1,152 bytes gets 1024-byte blocks (SZX 6), 1024 of them.
    network, client, big, _ = setup(connect_options=ConnectOptions(max_message_size=1152))
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/bigc"))
    drain(network)
    assert success(results).payload == BIG
    assert len(big.asked) == 1024
    assert big.asked[-1] == Block(1023, False, 6)


def test_asking_for_a_smaller_block_size() -> None:
    # block_size=256: the first GET carries Block2 0/0/256 (control usage) and the server
    # answers in 256-byte blocks.
    network, client, _, _ = setup(block_size=256)
    sizes: list[Block] = []
    large = CountingLarge(sizes)
    network.root.putChild("largec", large)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/largec"))
    network.flush()
    assert success(results).payload == LargeResource.body
    assert sizes == [Block(n, False, 4) for n in range(16)]  # 4,000 bytes in 256s


class CountingLarge(LargeResource):
    def __init__(self, asked: list[Block]) -> None:
        super().__init__()
        self.asked = asked

    def render_GET(self, request: Request) -> Response:
        raw = request.options.block2
        assert raw is not None
        self.asked.append(Block.decode(raw))
        return super().render_GET(request)


def test_following_a_smaller_block_size_chosen_by_the_server() -> None:
    # We ask for 1024-byte blocks, but our Max-Message-Size (300) only fits 256-byte
    # ones: the server answers SZX 4 and we continue in 256s (RFC 7959 section 2.4).
    network, client, _, _ = setup(block_size=1024,
                                  connect_options=ConnectOptions(max_message_size=300))
    sizes: list[Block] = []
    network.root.putChild("largec", CountingLarge(sizes))
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/largec"))
    network.flush()
    assert success(results).payload == LargeResource.body
    assert sizes[0] == Block(0, False, 6)
    assert sizes[1:] == [Block(n, False, 4) for n in range(1, 16)]


def test_a_download_larger_than_the_limit_fails() -> None:
    network, client, big, _ = setup(max_body_size=100_000)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/bigc"))
    network.flush()
    error = failure(results, TransferError)
    assert "1048576 bytes (Size2) exceeds the limit of 100000" in str(error.value)
    assert len(big.asked) == 1  # stopped after block 0


def test_a_single_block_response_is_returned_whole() -> None:
    network, client, _, _ = setup(block_size=1024)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/hello"))
    network.flush()
    response = success(results)
    assert response.payload == b"Hello, world!"
    assert BLOCK2 not in response.options


def raw_client(**kwargs: Any) -> tuple[RawPeer, Client]:
    peer = RawPeer()
    return peer, peer.make_client(**kwargs)


def block2_response(token: bytes, block: Block, payload: bytes, **extra: Any) -> Message:
    items: list[tuple[int, Any]] = [(BLOCK2, block.encode())]
    items += [(getattr(OptionNumber, k.upper()), v) for k, v in extra.items()]
    return Message(Code.CONTENT, token, Options(items), payload)


def second_block_request(**first: Any) -> tuple[RawPeer, list[Any], Message]:
    """A download of /x whose first block (1024 bytes, more to come, options ``first``)
    the peer has sent; the client's request for the second block."""
    peer, client = raw_client()
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/x"))
    peer.clock.advance(0)
    _, request = peer.received()
    peer.send(csm(), block2_response(request.token, Block(0, True, 6), bytes(1024), **first))
    (second,) = peer.received()
    return peer, results, second


def test_a_changed_etag_fails_the_download() -> None:
    peer, results, second = second_block_request(etag=b"v1")
    assert block_of(second, BLOCK2) == Block(1, False, 6)
    assert second.options.uri_path == ("x",)
    peer.send(block2_response(second.token, Block(1, False, 6), bytes(10), etag=b"v2"))
    error = failure(results, TransferError)
    assert "changed during the transfer" in str(error.value)


def test_a_block_at_the_wrong_offset_fails_the_download() -> None:
    peer, results, second = second_block_request()
    peer.send(block2_response(second.token, Block(2, False, 6), bytes(10)))
    error = failure(results, TransferError)
    assert "does not continue the body at offset 1024" in str(error.value)


def test_an_error_for_a_later_block_is_the_response() -> None:
    peer, results, second = second_block_request()
    peer.send(Message(Code.NOT_FOUND, second.token, payload=b"gone"))
    response = success(results)
    assert (response.code, response.payload) == (Code.NOT_FOUND, b"gone")


def test_the_timeout_applies_to_each_block() -> None:
    peer, client = raw_client(timeout=5)
    results = result_of(client.request("GET", "coap+tcp://127.0.0.1/x"))
    peer.clock.advance(0)
    _, first = peer.received()
    peer.clock.advance(4)
    peer.send(csm(), block2_response(first.token, Block(0, True, 6), bytes(1024)))
    (second,) = peer.received()
    peer.clock.advance(4)  # 8 s since the start, 4 since the last block: still waiting
    assert results == []
    peer.send(block2_response(second.token, Block(1, True, 6), bytes(1024)))
    peer.received()
    peer.clock.advance(5)
    error = failure(results, RequestTimeout)
    assert str(error.value) == "no response from coap+tcp://127.0.0.1:5683 within 5 s"


# -- Block1 uploads ----------------------------------------------------------------------------


def test_upload_1_mib_with_bert() -> None:
    # The server's CSM: 66,048 bytes and Block-Wise-Transfer, so BERT messages that fit.
    network, client, _, store = setup()
    progress: list[tuple[int, int | None]] = []
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/store", UPLOAD,
                                       progress=lambda d, t: progress.append((d, t))))
    seen = record_block1(network)
    network.flush()
    response = success(results)
    assert response.code == Code.CHANGED
    assert store.value == UPLOAD and store.puts == 1
    blocks = [block_of(m, BLOCK1) for m in seen]
    assert all(b.szx == BERT_SZX for b in blocks)
    sizes = [len(m.payload) for m in seen]
    assert all(size % 1024 == 0 and size <= 65536 for size in sizes)
    assert max(sizes) > 60_000  # sized to the peer's limit, not 1024 by 1024
    assert all(m.code == Code.PUT and m.options.uri_path == ("store",) for m in seen)
    assert seen[0].options.size1 == MIB
    assert all(OptionNumber.SIZE1 not in m.options for m in seen[1:])
    assert [b.more for b in blocks] == [True] * (len(blocks) - 1) + [False]
    assert progress[-1] == (MIB, MIB)
    assert len(progress) == len(blocks)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert block_of(Message(Code.CHANGED, options=response.options), BLOCK1).more is False


def test_upload_1_mib_in_szx_6_blocks_without_bert() -> None:
    # A server whose CSM says 1,152 bytes cannot take BERT: 1024-byte blocks.
    network, client, _, store = setup(server_mms=1152)
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/store", UPLOAD))
    seen = record_block1(network)
    drain(network)
    assert success(results).code == Code.CHANGED
    assert store.value == UPLOAD
    assert len(seen) == 1024
    assert all(block_of(m, BLOCK1).szx == 6 and len(m.payload) == 1024 for m in seen)


def test_a_body_that_fits_goes_whole() -> None:
    network, client, _, store = setup()
    body = bytes(60_000)
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/store", body))
    seen = record_block1(network)
    network.flush()
    assert success(results).code == Code.CHANGED
    assert [BLOCK1 in m.options for m in seen] == [False]
    assert store.value == body


def test_block_size_forces_blocks_for_a_body_that_would_fit() -> None:
    network, client, _, _store = setup(block_size=1024)
    body = UPLOAD[:5000]
    results = result_of(client.request("POST", "coap+tcp://127.0.0.1/store", body))
    seen = record_block1(network)
    network.flush()
    response = success(results)
    assert response.payload == b"stored 5000 bytes"
    assert [len(m.payload) for m in seen] == [1024] * 4 + [904]


def test_4_13_is_surfaced_with_size1() -> None:
    network, client, _, store = setup()
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/store", UPLOAD))
    network.links[-1].server.channel.blockwise.max_body_size = 100_000
    seen = record_block1(network)
    network.flush()
    response = success(results)
    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert response.options.size1 == 100_000
    assert len(seen) == 1  # Size1 in the first block told the server at once
    assert store.puts == 0


def test_a_smaller_szx_in_2_31_is_followed() -> None:
    peer, client = raw_client(block_size=1024)
    body = bytes(range(256)) * 16  # 4096 bytes
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/x", body))
    peer.clock.advance(0)
    peer.send(csm(65536, block_wise=True))  # the client waits for it before cutting
    _, first = peer.received()
    assert block_of(first, BLOCK1) == Block(0, True, 6)
    assert first.options.size1 == 4096 and len(first.payload) == 1024
    echo = Options([(BLOCK1, Block(0, True, 4).encode())])
    peer.send(Message(Code.CONTINUE, first.token, echo))
    (second,) = peer.received()
    assert block_of(second, BLOCK1) == Block(4, True, 4)  # 1024 bytes taken: NUM 4 of 256
    assert second.payload == body[1024:1280]
    for num in range(4, 15):
        echo = Options([(BLOCK1, Block(num, True, 4).encode())])
        peer.send(Message(Code.CONTINUE, peer_last_token(second, peer, num), echo))
        (second,) = peer.received()
    last = block_of(second, BLOCK1)
    assert last == Block(15, False, 4)
    peer.send(Message(Code.CHANGED, second.token, Options([(BLOCK1, last.encode())])))
    assert success(results).code == Code.CHANGED


def peer_last_token(message: Message, peer: RawPeer, num: int) -> bytes:
    assert block_of(message, BLOCK1).num == num
    return message.token


def test_4_08_ends_the_upload_as_the_response() -> None:
    peer, client = raw_client()
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/x", bytes(4000)))
    peer.clock.advance(0)
    peer.send(csm())  # 1,152 bytes, no Block-Wise-Transfer: SZX 6
    _, first = peer.received()
    assert block_of(first, BLOCK1) == Block(0, True, 6)
    peer.send(Message(Code.CONTINUE, first.token, Options([(BLOCK1, Block(0, True, 6).encode())])))
    (second,) = peer.received()
    peer.send(Message(Code.REQUEST_ENTITY_INCOMPLETE, second.token, payload=b"lost track"))
    response = success(results)
    assert (response.code, response.payload) == (Code.REQUEST_ENTITY_INCOMPLETE, b"lost track")
    assert peer.received() == []  # nothing more was sent


def test_an_upload_waits_for_the_peer_csm_before_choosing_bert() -> None:
    peer, client = raw_client()
    results = result_of(client.request("PUT", "coap+tcp://127.0.0.1/x", bytes(10_000)))
    peer.clock.advance(0)
    (our_csm,) = peer.received()  # only our CSM: the request waits for the peer's
    assert our_csm.code == Code.CSM
    peer.send(csm(8192 + 512, block_wise=True))
    (first,) = peer.received()
    assert block_of(first, BLOCK1) == Block(0, True, BERT_SZX)
    assert len(first.payload) == 8192
    peer.send(Message(Code.CONTINUE, first.token, Options([(BLOCK1, block_of(first, BLOCK1)
                                                              .encode())])))
    (second,) = peer.received()
    assert block_of(second, BLOCK1) == Block(8, False, BERT_SZX)
    assert len(second.payload) == 10_000 - 8192
    peer.send(Message(Code.CHANGED, second.token))
    assert success(results).code == Code.CHANGED


def test_a_large_response_to_an_upload_is_fetched_too() -> None:
    # RFC 7959 section 2.7: after the last Block1, a Block2 response is completed with
    # requests carrying Block2 (and no payload).
    peer, client = raw_client(block_size=1024)
    results = result_of(client.request("POST", "coap+tcp://127.0.0.1/x", bytes(1500)))
    peer.clock.advance(0)
    peer.send(csm(4096, block_wise=True))
    _, first = peer.received()
    peer.send(Message(Code.CONTINUE, first.token, Options([(BLOCK1, 0x0E)])))
    (second,) = peer.received()
    assert block_of(second, BLOCK1) == Block(1, False, 6)
    peer.send(Message(Code.CHANGED, second.token,
                      Options([(BLOCK1, 0x16), (BLOCK2, Block(0, True, 6).encode())]),
                      b"a" * 1024))
    (third,) = peer.received()
    assert third.code == Code.POST and third.payload == b""
    assert BLOCK1 not in third.options
    assert block_of(third, BLOCK2) == Block(1, False, 6)
    peer.send(Message(Code.CHANGED, third.token,
                      Options([(BLOCK2, Block(1, False, 6).encode())]), b"b" * 10))
    assert success(results).payload == b"a" * 1024 + b"b" * 10


@pytest.mark.parametrize("block_size", [0, 15])
def test_a_tiny_block_size_is_refused(block_size: int) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Client(RawPeer().clock, block_size=block_size)
