"""The client side of block-wise transfer (RFC 7959 sections 2.4, 2.5; BERT: RFC 8323
section 6): :class:`Download` reassembles a Block2 body and :class:`BodySender` cuts a
Block1 upload.  Pure: the client's transfer driver (:mod:`coaptcp.client.transfer`) sends
the messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coaptcp.core.blocks import BERT_SZX, BERT_UNIT, Block, BlockError, slice_block
from coaptcp.core.errors import CoapTcpError

__all__ = [
    "BodySender",
    "Download",
    "TransferError",
]


class TransferError(CoapTcpError, ValueError):
    """A block-wise transfer the client cannot complete (RFC 7959 sections 2.4, 2.5, 4).

    Raised for a block that does not continue the body where it stands, a non-final block
    of the wrong size, a representation that changed during the transfer (another ETag),
    a body longer or shorter than its Size2, and a body above the client's limit.
    """


@dataclass
class Download:
    """A Block2 body being reassembled by the client (RFC 7959 section 2.4, BERT RFC 8323 6).

    Feed each response's Block2 option and payload to :meth:`add`; it returns the Block2
    option of the next request (the next NUM, in the block size the server chose), or
    ``None`` once the body is complete.

    :param max_body_size: the largest body accepted; more is a :class:`TransferError`.
    """

    max_body_size: int
    data: bytearray = field(default_factory=bytearray)
    size2: int | None = None
    etag: bytes | None = None
    blocks: int = 0

    def add(
        self,
        block: Block,
        payload: bytes,
        *,
        size2: int | None = None,
        etag: bytes | None = None,
    ) -> Block | None:
        """Append one block; returns the next block to ask for, ``None`` when complete.

        :param size2: the response's Size2 option, if any (RFC 7959 section 4).
        :param etag: the response's ETag, if any: every block must carry the ETag of
            the first (the representation must not change under us, section 2.4).
        """
        if block.offset != len(self.data):
            raise TransferError(
                f"block {block.num} (offset {block.offset}) does not continue the body at "
                f"offset {len(self.data)}"
            )
        if self.blocks == 0:
            self.etag = etag
        elif etag != self.etag:
            raise TransferError(
                "the representation changed during the transfer (ETag "
                f"{_hex(self.etag)} became {_hex(etag)})"
            )
        if size2 is not None:
            if self.size2 is not None and size2 != self.size2:
                raise TransferError(f"Size2 changed from {self.size2} to {size2}")
            if size2 > self.max_body_size:
                raise TransferError(
                    f"the body of {size2} bytes (Size2) exceeds the limit of "
                    f"{self.max_body_size} bytes"
                )
            self.size2 = size2
        if block.more:
            if block.is_bert:
                if not payload or len(payload) % BERT_UNIT:
                    raise TransferError(
                        f"a non-final BERT block of {len(payload)} bytes is not a multiple "
                        "of 1024"
                    )
            elif len(payload) != block.size:
                raise TransferError(
                    f"non-final block {block.num} has {len(payload)} bytes, not {block.size}"
                )
        total = len(self.data) + len(payload)
        if total > self.max_body_size:
            raise TransferError(f"the body exceeds the limit of {self.max_body_size} bytes")
        short = not block.more and total != self.size2
        if self.size2 is not None and (total > self.size2 or short):
            raise TransferError(f"the body has {total} bytes but Size2 said {self.size2}")
        self.data += payload
        self.blocks += 1
        if not block.more:
            return None
        return Block(total // block.size, False, block.szx)


def _hex(value: bytes | None) -> str:
    return "none" if value is None else value.hex()


class BodySender:
    """Cuts a request body into Block1 messages for the client (RFC 7959 section 2.5).

    :meth:`current` gives the Block1 option and payload to send next; after a 2.31
    Continue call :meth:`acknowledge` with the Block1 option the server echoed: a smaller
    SZX there is followed from then on (the block number scaled to it, RFC 7959 section
    2.5); a larger one is ignored.  BERT (SZX 7) sends several 1024-byte blocks in one
    message, ``payload_limit`` bytes at most (RFC 8323 section 6).
    """

    def __init__(self, body: bytes, szx: int, payload_limit: int) -> None:
        if not 0 <= szx <= BERT_SZX:
            raise BlockError(f"SZX {szx} is not 0-7")
        self.body = body
        self.szx = szx
        self.payload_limit = payload_limit
        self.offset = 0

    @property
    def total(self) -> int:
        """The body's length."""
        return len(self.body)

    def current(self) -> tuple[Block, bytes]:
        """The Block1 option and the payload of the next message."""
        chunk, block = slice_block(self.body, self.offset, self.szx, self.payload_limit)
        return block, chunk

    def acknowledge(self, echo: Block | None) -> bool:
        """The server took the current block; returns whether more remain to send.

        ``echo`` is the Block1 option of its 2.31 Continue response, if any.
        """
        _, chunk = self.current()
        self.offset += len(chunk)
        if echo is not None and echo.szx < self.szx:
            self.szx = echo.szx
            self.payload_limit = 1 << (echo.szx + 4)
        return self.offset < len(self.body)
