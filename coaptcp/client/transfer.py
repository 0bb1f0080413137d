"""Block-wise transfers driven by the client (RFC 7959, BERT: RFC 8323 section 6).

The :class:`~coaptcp.client.client.Client` runs every request through :func:`exchange`: a body
too large for one message to the peer goes up in Block1 messages sized to the peer's
Max-Message-Size (BERT only once the peer's CSM showed Block-Wise-Transfer and a
Max-Message-Size above 1152, RFC 8323 sections 5.3.2 and 6; otherwise blocks of at most
1024 bytes); a response that comes in Block2 blocks is completed by asking for each
following block and reassembled.  The caller sees one request and one response.

The pure parts (choosing block sizes, cutting and reassembling bodies) are in
:mod:`coaptcp.core.blocks` and :mod:`coaptcp.core.blocktransfer`; this module only sends
the messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coaptcp.core.blocks import block2_control, choose_block1, decode_block
from coaptcp.core.blocktransfer import BodySender, Download, TransferError
from coaptcp.core.codes import Code
from coaptcp.core.events import BASE_MAX_MESSAGE_SIZE
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Response

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.client.connectors import ClientChannel

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "Progress",
    "Send",
    "TransferError",
    "TransferSettings",
    "download_rest",
    "exchange",
    "upload",
]

#: The largest response body the client reassembles from Block2 blocks by default.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

#: ``progress(done, total)``: bytes moved so far, and the whole size when known.
Progress = Callable[[int, "int | None"], object]
#: ``send(code, options, payload)``: one request and its response on one connection.
Send = Callable[[Code, Options, bytes], "Deferred[Response]"]

#: Room for the header growth of a large frame (Len up to 4 extra bytes) and the payload
#: marker, beyond the size of the message without payload.
_FRAME_SLACK = 1 + 4
#: The token the Channel gives a request is 4 bytes; reserve the most a token can take.
_TOKEN = b"\0" * 8
#: Placeholder values of the largest Block1 (3 bytes) and Size1 (4 bytes).
_BLOCK_PLACEHOLDER = 0xFFFFFF
_SIZE_PLACEHOLDER = 0xFFFFFFFF


@dataclass(frozen=True)
class TransferSettings:
    """How the client moves large bodies.

    :ivar max_body_size: the largest response body reassembled from blocks.
    :ivar block_size: ``None`` (the default) sends a body whole when it fits the peer's
        Max-Message-Size, else in the largest blocks that fit; 16 to 1024 asks for blocks
        of that size (Block1 above it, and Block2 in GET and FETCH requests); above 1024,
        BERT messages of at most that size when the peer allows BERT.
    """

    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_body_size < 0:
            raise ValueError("max_body_size cannot be negative")
        if self.block_size is not None and self.block_size < 16:
            raise ValueError("block_size must be at least 16 bytes")


def _header_size(channel: ClientChannel, code: Code, options: Options) -> int:
    """The size on the wire of a request with ``options`` and no payload, plus slack."""
    return channel.connection.encoded_size(Message(code, _TOKEN, options)) + _FRAME_SLACK


def _needs_blocks(channel: ClientChannel, code: Code, options: Options, payload: bytes,
                  settings: TransferSettings, limit: int) -> bool:
    if settings.block_size is not None and len(payload) > settings.block_size:
        return True
    return _header_size(channel, code, options) + len(payload) > limit


async def exchange(
    channel: ClientChannel,
    send: Send,
    code: Code,
    options: Options,
    payload: bytes,
    settings: TransferSettings,
    progress: Progress | None = None,
) -> Response:
    """One request as the application sees it, block-wise on the wire where needed.

    Fails with :class:`~coaptcp.core.blocktransfer.TransferError` when a Block2 download
    cannot be reassembled (see there), besides whatever ``send`` fails with.
    """
    if payload and _needs_blocks(channel, code, options, payload, settings,
                                 BASE_MAX_MESSAGE_SIZE):
        await channel.when_csm_received()  # the peer's limit and BERT capability
    peer = channel.connection.peer
    if payload and _needs_blocks(channel, code, options, payload, settings,
                                 peer.max_message_size):
        bare = options.remove(OptionNumber.BLOCK1).remove(OptionNumber.SIZE1)
        room = peer.max_message_size - _header_size(
            channel,
            code,
            bare.replace(OptionNumber.BLOCK1, _BLOCK_PLACEHOLDER).replace(
                OptionNumber.SIZE1, _SIZE_PLACEHOLDER
            ),
        )
        szx, limit = choose_block1(room=room, peer_bert=peer.bert,
                                   block_size=settings.block_size)
        response = await upload(send, code, bare, payload, szx=szx, payload_limit=limit,
                                progress=progress)
    else:
        if (
            settings.block_size is not None
            and code in (Code.GET, Code.FETCH)
            and OptionNumber.BLOCK2 not in options
        ):
            options = options.replace(OptionNumber.BLOCK2,
                                      block2_control(settings.block_size).encode())
        response = await send(code, options, payload)
    return await download_rest(send, code, options, payload, response,
                               max_body_size=settings.max_body_size, progress=progress)


async def upload(
    send: Send,
    code: Code,
    options: Options,
    body: bytes,
    *,
    szx: int,
    payload_limit: int,
    progress: Progress | None = None,
) -> Response:
    """Send ``body`` in Block1 messages (RFC 7959 section 2.5; BERT RFC 8323 section 6).

    The first message carries Size1 with the whole size (RFC 7959 section 4).  Each 2.31
    Continue moves on to the next block, in the (smaller) size the server echoed if it
    chose one; any other response ends the upload and is returned (4.08 and 4.13
    included, so the caller sees the server's answer).
    """
    sender = BodySender(body, szx, payload_limit)
    while True:
        block, chunk = sender.current()
        message_options = options.replace(OptionNumber.BLOCK1, block.encode())
        if sender.offset == 0:
            message_options = message_options.replace(OptionNumber.SIZE1, len(body))
        response = await send(code, message_options, chunk)
        echo = decode_block(response.options.get(OptionNumber.BLOCK1))
        keep_going = block.more and (
            response.code == Code.CONTINUE
            # A non-atomic server acknowledges each block with a success and the echo.
            or (response.code.is_successful and echo is not None and echo.more)
        )
        if not keep_going:
            if response.code.is_successful and progress is not None:
                progress(len(body), len(body))
            return response
        sender.acknowledge(echo)
        if progress is not None:
            progress(sender.offset, len(body))


async def download_rest(
    send: Send,
    code: Code,
    options: Options,
    payload: bytes,
    first: Response,
    *,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    progress: Progress | None = None,
) -> Response:
    """Complete a response that came in Block2 blocks (RFC 7959 section 2.4, BERT RFC 8323
    section 6); returns it with the whole body and without Block2.

    A response without Block2 (or an error) is returned as it is.  Each following block
    is asked for with the next NUM in the block size of the server's last response, with
    the request's method and options (no Observe, no Block1, and no payload except for
    FETCH, whose payload is part of the request's key).
    """
    block = decode_block(first.options.get(OptionNumber.BLOCK2))
    if block is None or not first.code.is_successful:
        return first
    if not block.more and block.num == 0:
        return _whole(first, first.payload)
    download = Download(max_body_size)
    request_options = options.remove(OptionNumber.OBSERVE).remove(OptionNumber.BLOCK1)
    request_options = request_options.remove(OptionNumber.SIZE1)
    request_payload = payload if code == Code.FETCH else b""
    response = first
    while True:
        size2 = response.options.size2
        etags = response.options.etag
        following = download.add(block, response.payload, size2=size2,
                                 etag=etags[0] if etags else None)
        if progress is not None:
            progress(len(download.data), download.size2)
        if following is None:
            return _whole(response, bytes(download.data), first)
        response = await send(
            code, request_options.replace(OptionNumber.BLOCK2, following.encode()),
            request_payload,
        )
        got = decode_block(response.options.get(OptionNumber.BLOCK2))
        if not response.code.is_successful:
            return response  # the server's answer to a block request, e.g. 4.02 or 4.04
        if got is None:
            raise TransferError(
                f"the response to block {following.num} carries no Block2 option"
            )
        block = got


def _whole(last: Response, body: bytes, first: Response | None = None) -> Response:
    """The reassembled response: the last block's code and options, without Block2 and
    Size2, with the first block's Observe (a notification stays one), and the body."""
    options = last.options.remove(OptionNumber.BLOCK2).remove(OptionNumber.SIZE2)
    if first is not None:
        observe = first.options.get_all(OptionNumber.OBSERVE)
        options = options.replace(OptionNumber.OBSERVE, *observe)
    return Response(last.code, body, options=options)
