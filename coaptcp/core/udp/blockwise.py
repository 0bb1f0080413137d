"""Block-wise transfer over UDP: blocks of 1024 bytes at most, no BERT (RFC 7959).

:mod:`coaptcp.core.blockwise` does the work on every transport: Block1 reassembly
(:class:`~coaptcp.core.blockwise.BlockwiseServer`), cutting Block2 responses, the client's
:class:`~coaptcp.core.blockwise.Download` and :class:`~coaptcp.core.blockwise.BodySender`,
and size negotiation (a client asks for a smaller SZX, a server answers with one at most
that large, section 2.4; a server's smaller SZX in a 2.31 Continue is followed, section
2.5).  Over UDP only two things differ, and this module holds them:

- SZX 7 is BERT on reliable transports (RFC 8323 section 6) but reserved over UDP: it
  "MUST NOT be sent and MUST lead to a 4.00 Bad Request response code upon reception in
  a request" (RFC 7959 section 2.2).  :func:`bert_in_request` finds it before
  ``BlockwiseServer`` would take it for BERT; :func:`is_udp_block` checks a response's.
- The size of a message is bounded by the path, not by a CSM: 1152 bytes with at most
  1024 of payload without Path MTU knowledge (RFC 7252 section 4.6).  Call the
  blockwise helpers with ``peer_bert=False`` and a Max-Message-Size of
  :data:`UDP_MAX_MESSAGE_SIZE`; :func:`udp_block_size` and :func:`udp_block2_control`
  clamp a caller's preferred block size to 1024.
"""

from __future__ import annotations

from coaptcp.core.blockwise import BERT_SZX, Block, block2_control, choose_block1
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, decode_uint
from coaptcp.core.udp.config import DEFAULT_MAX_UDP_MESSAGE_SIZE

__all__ = [
    "UDP_MAX_BLOCK_SIZE",
    "UDP_MAX_MESSAGE_SIZE",
    "UDP_MAX_SZX",
    "bert_in_request",
    "is_udp_block",
    "udp_block2_control",
    "udp_block_size",
]

#: The message size to plan blocks for (RFC 7252 section 4.6).
UDP_MAX_MESSAGE_SIZE = DEFAULT_MAX_UDP_MESSAGE_SIZE
#: The largest block (SZX 6, RFC 7959 section 2.2).
UDP_MAX_BLOCK_SIZE = 1024
UDP_MAX_SZX = 6


def is_udp_block(block: Block) -> bool:
    """Whether ``block`` may travel over UDP: SZX 0-6 (RFC 7959 section 2.2)."""
    return block.szx != BERT_SZX


def bert_in_request(request: Message) -> Message | None:
    """The 4.00 Bad Request answering a UDP request whose Block1 or Block2 has SZX 7.

    RFC 7959 section 2.2 reserves SZX 7; over UDP it is not BERT.  ``None`` when the
    request has no such option (values longer than 3 bytes are left to the blockwise
    code, which answers them 4.02).
    """
    for number in (OptionNumber.BLOCK1, OptionNumber.BLOCK2):
        raw = request.options.get(number)
        if raw is None or len(raw) > 3:
            continue
        if decode_uint(raw) & 0x07 == BERT_SZX:
            name = "Block1" if number == OptionNumber.BLOCK1 else "Block2"
            return Message(
                Code.BAD_REQUEST,
                request.token,
                payload=f"{name} SZX 7 is reserved over UDP (RFC 7959 section 2.2)".encode(),
            )
    return None


def udp_block_size(room: int, block_size: int | None = None) -> tuple[int, int]:
    """``(szx, block_size)`` for the Block1 messages of an upload over UDP.

    :param room: payload bytes that fit in one message (the message size less header,
        token and options).
    :param block_size: the caller's preference; anything above 1024 counts as 1024.
    """
    preferred = UDP_MAX_BLOCK_SIZE if block_size is None else min(block_size, UDP_MAX_BLOCK_SIZE)
    return choose_block1(room=room, peer_bert=False, block_size=preferred)


def udp_block2_control(block_size: int) -> Block:
    """The Block2 option asking for blocks of at most ``block_size`` (at most 1024) over
    UDP (RFC 7959 section 2.4, control usage): never BERT."""
    return block2_control(min(block_size, UDP_MAX_BLOCK_SIZE))
