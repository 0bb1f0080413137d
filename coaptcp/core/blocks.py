"""Block-wise transfer arithmetic (RFC 7959) with BERT over reliable transports (RFC 8323
section 6): the Block1/Block2 option value, choosing a block size that fits the peer's
Max-Message-Size and cutting a representation into blocks.

The server side of a connection (:mod:`coaptcp.core.blockwise`, which also re-exports
everything block-wise) and the client side (:mod:`coaptcp.core.blocktransfer`) build on
this.  A Block option value is
``NUM << 4 | M << 3 | SZX``; the block size is ``2 ** (SZX + 4)``.  SZX 7 is BERT: blocks of
1024 bytes, several of them in one message, NUM counting 1024-byte blocks (RFC 8323
section 6).  A BERT payload is a multiple of 1024 bytes, except in the last message, which
adds a partial block of less than 1024 (RFC 8323 section 6, as of -10).
"""

from __future__ import annotations

from dataclasses import dataclass

from coaptcp.core.errors import CoapTcpError
from coaptcp.core.options import decode_uint

__all__ = [
    "BERT_SZX",
    "BERT_UNIT",
    "MAX_NUM",
    "Block",
    "BlockError",
    "block2_control",
    "choose_block1",
    "choose_block2",
    "decode_block",
    "slice_block",
    "szx_for_size",
]

#: SZX value that means BERT on reliable transports (RFC 8323 section 6).
BERT_SZX = 7
#: NUM is at most 20 bits (RFC 7959 section 2.2).
MAX_NUM = (1 << 20) - 1
#: Bytes of one BERT block (RFC 8323 section 6).
BERT_UNIT = 1024


class BlockError(CoapTcpError, ValueError):
    """A Block option value that cannot be honoured (RFC 7959 section 2.2)."""


@dataclass(frozen=True, slots=True)
class Block:
    """A decoded Block1 or Block2 option value (RFC 7959 section 2.2)."""

    num: int
    more: bool
    szx: int

    @classmethod
    def decode(cls, value: int) -> Block:
        """Decode the option's uint; raises :class:`BlockError` beyond 3 bytes."""
        if value < 0 or value > 0xFFFFFF:
            raise BlockError(f"Block option value {value} does not fit in 3 bytes")
        return cls(value >> 4, bool(value & 0x08), value & 0x07)

    def encode(self) -> int:
        """The option's uint value."""
        if not 0 <= self.num <= MAX_NUM:
            raise BlockError(f"block number {self.num} does not fit in 20 bits")
        return self.num << 4 | (0x08 if self.more else 0) | self.szx

    @property
    def is_bert(self) -> bool:
        """SZX 7: a BERT block (RFC 8323 section 6)."""
        return self.szx == BERT_SZX

    @property
    def size(self) -> int:
        """The block size in bytes; 1024 for BERT (the unit NUM counts)."""
        return BERT_UNIT if self.szx == BERT_SZX else 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        """The byte offset of this block in the whole body."""
        return self.num * self.size


def szx_for_size(size: int) -> int:
    """The largest non-BERT SZX whose block size is at most ``size`` (0 for < 32)."""
    szx = 6
    while szx > 0 and (1 << (szx + 4)) > size:
        szx -= 1
    return szx


def choose_block2(
    *,
    room: int,
    requested: Block | None,
    peer_bert: bool,
) -> tuple[int, int]:
    """Choose ``(szx, payload_limit)`` for a Block2 response.

    :param room: the payload bytes that fit in one message to the peer (its
        Max-Message-Size less our header, token and options).
    :param requested: the Block2 option of the request, if any.  Its SZX is an upper
        bound (RFC 7959 section 2.4); a BERT option there also says the client handles
        BERT (RFC 8323 section 6, control usage).
    :param peer_bert: whether the peer's CSM announced BERT (Block-Wise-Transfer and a
        Max-Message-Size above 1152, RFC 8323 section 5.3.2).
    :returns: the SZX to use and how many payload bytes one response carries.
    """
    bert_ok = requested.is_bert if requested is not None else peer_bert
    if bert_ok and room >= 2 * BERT_UNIT:
        return BERT_SZX, (room // BERT_UNIT) * BERT_UNIT
    szx = szx_for_size(max(room, 16))
    if requested is not None and not requested.is_bert:
        szx = min(szx, requested.szx)
    return szx, 1 << (szx + 4)


def slice_block(body: bytes, offset: int, szx: int, payload_limit: int) -> tuple[bytes, Block]:
    """Cut the block at byte ``offset`` out of ``body``, with the Block2 value to send.

    ``offset`` comes from the request's Block2 option (NUM times its block size) and must
    be a multiple of our block size.  For BERT the payload takes as many whole 1024-byte
    blocks as ``payload_limit`` allows.  Raises :class:`BlockError` when ``offset`` lies
    past the end or inside one of our blocks.
    """
    unit = BERT_UNIT if szx == BERT_SZX else 1 << (szx + 4)
    if offset % unit:
        raise BlockError(f"offset {offset} is not on a {unit}-byte block boundary")
    if offset > 0 and offset >= len(body):
        raise BlockError(f"offset {offset} lies past the end of a {len(body)}-byte body")
    length = max(unit, (payload_limit // unit) * unit) if szx == BERT_SZX else unit
    chunk = body[offset : offset + length]
    more = offset + len(chunk) < len(body)
    return chunk, Block(offset // unit, more, szx)


def decode_block(raw: bytes | None) -> Block | None:
    """A request's Block option, or ``None`` when absent or longer than 3 bytes."""
    if raw is None:
        return None
    try:
        return Block.decode(decode_uint(raw))
    except BlockError:
        return None


def choose_block1(
    *,
    room: int,
    peer_bert: bool,
    block_size: int | None = None,
) -> tuple[int, int]:
    """Choose ``(szx, payload_limit)`` for the Block1 messages of an upload.

    :param room: the payload bytes that fit in one message to the peer (its
        Max-Message-Size less our header, token and options).
    :param peer_bert: whether the peer's CSM announced Block-Wise-Transfer and a
        Max-Message-Size above 1152 (RFC 8323 section 5.3.2): only then do we send BERT
        blocks (SZX 7, RFC 8323 section 6).
    :param block_size: the caller's preference: ``None`` for the largest that fits; 16 to
        1024 for that block size (rounded down to a power of two); above 1024 for BERT
        messages of at most that many bytes (when the peer allows BERT).
    """
    if peer_bert and (block_size is None or block_size >= 2 * BERT_UNIT):
        limit = room if block_size is None else min(room, block_size)
        if limit >= 2 * BERT_UNIT:
            return BERT_SZX, (limit // BERT_UNIT) * BERT_UNIT
    limit = room if block_size is None else min(room, block_size)
    szx = szx_for_size(max(limit, 16))
    return szx, 1 << (szx + 4)


def block2_control(block_size: int) -> Block:
    """The Block2 option for the first request of a download that asks for ``block_size``.

    Control usage (RFC 7959 section 2.4): block 0 of at most that size; above 1024, a
    BERT option, which says that we handle BERT blocks (RFC 8323 section 6).
    """
    if block_size >= 2 * BERT_UNIT:
        return Block(0, False, BERT_SZX)
    return Block(0, False, szx_for_size(max(block_size, 16)))
