"""Block-wise transfer (RFC 7959) with BERT over reliable transports (RFC 8323 section 6).

This module holds the server side of one connection and re-exports the rest, so that
``from coaptcp.core.blockwise import ...`` reaches every block-wise name: the option value
and block arithmetic (:mod:`coaptcp.core.blocks`) and the client side
(:mod:`coaptcp.core.blocktransfer`).

:class:`BlockwiseServer` reassembles Block1 uploads, bounded in count, size and age, with
the byte budgets of :class:`UploadBudget` shared across connections, and cuts Block2
responses to the peer's limit.  Nothing here knows about connections or clocks; callers
pass the time in and ask :meth:`BlockwiseServer.next_expiry` when to call back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from coaptcp.core.blocks import (
    BERT_SZX,
    BERT_UNIT,
    MAX_NUM,
    Block,
    BlockError,
    block2_control,
    choose_block1,
    choose_block2,
    decode_block,
    slice_block,
    szx_for_size,
)
from coaptcp.core.blocktransfer import BodySender, Download, TransferError
from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.message import Message
from coaptcp.core.options import Options, decode_uint

__all__ = [
    "BERT_SZX",
    "BERT_UNIT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_CONNECTION_UPLOAD_BYTES",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_UPLOAD_LIFETIME",
    "MAX_NUM",
    "UPLOAD_RETRY_AFTER",
    "Block",
    "BlockError",
    "BlockwiseServer",
    "BodySender",
    "Download",
    "TransferError",
    "Upload",
    "UploadBudget",
    "UploadError",
    "UploadRefusal",
    "block2_control",
    "choose_block1",
    "choose_block2",
    "decode_block",
    "slice_block",
    "szx_for_size",
]


class UploadError(CoapTcpError):
    """A Block1 upload cannot continue; carries the response code to send.

    :ivar code: 0x88 (4.08 Request Entity Incomplete) or 0x8D (4.13 Request Entity Too
        Large), as a plain int so this module stays free of the code registry.
    """

    def __init__(self, code: int, diagnostic: str) -> None:
        super().__init__(diagnostic)
        self.code = code
        self.diagnostic = diagnostic


@dataclass
class Upload:
    """One Block1 upload being reassembled (RFC 7959 section 2.5, BERT RFC 8323 section 6).

    :param limit: the largest body accepted; more is 4.13 (section 2.9.3).
    """

    limit: int
    started: float
    last_seen: float
    data: bytearray = field(default_factory=bytearray)

    def add(self, block: Block, payload: bytes, now: float) -> bool:
        """Add one Block1 message; returns whether the body is complete.

        Raises :class:`UploadError` (4.08) for a block that does not continue the body
        where it stands, or a non-final BERT or regular block of the wrong size; and 4.13
        when the body would exceed ``limit``.
        """
        self.check(block, payload)
        return self.append(block, payload, now)

    def check(self, block: Block, payload: bytes) -> None:
        """Raise :class:`UploadError` if :meth:`add` would refuse this block."""
        if block.offset != len(self.data):
            raise UploadError(
                0x88,
                f"expected the block at offset {len(self.data)}, got block {block.num} "
                f"(offset {block.offset})",
            )
        if block.more:
            if block.is_bert:
                if not payload or len(payload) % BERT_UNIT:
                    raise UploadError(
                        0x88, f"a BERT block of {len(payload)} bytes is not a multiple of 1024"
                    )
            elif len(payload) != block.size:
                raise UploadError(
                    0x88, f"block {block.num} has {len(payload)} bytes, not {block.size}"
                )
        if len(self.data) + len(payload) > self.limit:
            raise UploadError(0x8D, f"the body exceeds the limit of {self.limit} bytes")

    def append(self, block: Block, payload: bytes, now: float) -> bool:
        """Append a block :meth:`check` accepted; returns whether the body is complete."""
        self.data += payload
        self.last_seen = now
        return not block.more


# -- the server side of one connection ----------------------------------------------------

#: The options that name the target of a Block1 upload (RFC 7959 section 2.5: the request
#: URI; RFC 9175 Request-Tag tells concurrent uploads to one resource apart).
_UPLOAD_KEY_OPTIONS = frozenset({3, 7, 11, 15, 292})
_BLOCK1, _BLOCK2, _SIZE1, _SIZE2 = 27, 23, 60, 28
_CONTINUE, _BAD_OPTION, _TOO_LARGE, _UNAVAILABLE = 0x5F, 0x82, 0x8D, 0xA3

#: Largest upload body accepted by default (RFC 7959 section 2.9.3 answers more with 4.13).
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
#: Uploads in progress at once on one connection.
DEFAULT_MAX_UPLOADS = 8
#: Seconds an upload may sit without a new block before it is dropped.
DEFAULT_UPLOAD_LIFETIME = 60.0
#: Bytes the partial uploads of one connection may hold together: one body of the
#: default largest size.
DEFAULT_MAX_CONNECTION_UPLOAD_BYTES = DEFAULT_MAX_BODY_SIZE
#: Bytes the partial uploads of all connections of a server may hold together.
DEFAULT_MAX_UPLOAD_BYTES = 128 * 1024 * 1024
#: Max-Age of a 5.03 answer to an upload that does not fit now (RFC 7252 section 5.9.3.4).
UPLOAD_RETRY_AFTER = 10
#: Bytes reserved for our header growth and the Block2/Size2 options when sizing blocks.
_BLOCK2_OVERHEAD = 6 + 4 + 6 + 1


class UploadBudget:
    """Bytes that partial Block1 uploads may hold together (RFC 7959 section 2.5).

    One budget is shared by every connection of a server (each connection's
    :class:`BlockwiseServer` has its own too).  :attr:`held` counts the payload bytes
    received for uploads not yet complete; a block that would take it past :attr:`limit`
    is refused.  Refusals come in episodes, for logging once: an episode starts with the
    first refusal and ends when the bytes held fall to half the limit.

    :ivar refusals: blocks refused so far.
    """

    __slots__ = ("exhausted", "held", "limit", "refusals")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an upload budget must be positive, not {limit}")
        self.limit = limit
        self.held = 0
        self.exhausted = False
        self.refusals = 0

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes fit in the budget now."""
        return self.held + size <= self.limit

    def take(self, size: int) -> None:
        """Count ``size`` more bytes held (after :meth:`fits` said they fit)."""
        self.held += size

    def give(self, size: int) -> None:
        """``size`` bytes were let go (an upload completed, expired or was dropped)."""
        self.held -= size
        if self.exhausted and self.held <= self.limit // 2:
            self.exhausted = False

    def refuse(self) -> bool:
        """Count a refusal; true when it starts an episode (worth logging)."""
        self.refusals += 1
        first = not self.exhausted
        self.exhausted = True
        return first


@dataclass(frozen=True, slots=True)
class UploadRefusal:
    """Why :meth:`BlockwiseServer.receive_request` last answered 5.03.

    :ivar bound: ``"uploads"`` (too many uploads in progress on the connection),
        ``"connection"`` (the connection's byte budget) or ``"server"`` (the budget
        shared by all connections).
    :ivar held: uploads (for ``"uploads"``) or bytes held against the bound.
    :ivar limit: the bound.
    :ivar first: whether this refusal starts an episode of the bound (log it): for the
        bounds of a connection, its first refusal; for the server's budget, the first
        since the bytes held last fell to half of it.
    """

    bound: str
    held: int
    limit: int
    first: bool


class BlockwiseServer:
    """Block-wise state of one connection, server side (RFC 7959, RFC 8323 section 6).

    :meth:`receive_request` reassembles Block1 uploads and :meth:`prepare_response` cuts
    large responses into Block2 blocks that fit the peer's Max-Message-Size.  Partial
    uploads are bounded in number, in the bytes they hold together (``max_connection_bytes``
    on this connection, and ``budget``, shared with the server's other connections) and
    expire ``upload_lifetime`` seconds after their last block: the caller calls
    :meth:`expire` at :meth:`next_expiry` (RFC 7959 section 2.9.2: a later block of a
    dropped upload gets 4.08).  A block that does not fit a byte budget is answered 5.03
    with Max-Age and its upload is dropped; a body that could never fit is 4.13.  Call
    :meth:`drop_uploads` when the connection closes, to give their bytes back.

    :ivar last_refusal: why the last 5.03 was sent (set with each).
    """

    # One per connection: slots keep an idle connection's share small.
    __slots__ = (
        "_refused",
        "_uploads",
        "budget",
        "connection_budget",
        "last_refusal",
        "max_body_size",
        "max_uploads",
        "upload_lifetime",
    )

    def __init__(
        self,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
        upload_lifetime: float = DEFAULT_UPLOAD_LIFETIME,
        max_connection_bytes: int = DEFAULT_MAX_CONNECTION_UPLOAD_BYTES,
        budget: UploadBudget | None = None,
    ) -> None:
        self.connection_budget = UploadBudget(max_connection_bytes)
        self.budget = budget
        # A body larger than a budget could never be held: that is too large (4.13).
        self.max_body_size = min(
            max_body_size, max_connection_bytes, max_body_size if budget is None else budget.limit
        )
        self.max_uploads = max_uploads
        self.upload_lifetime = upload_lifetime
        self.last_refusal: UploadRefusal | None = None
        self._uploads: dict[tuple[object, ...], Upload] = {}
        self._refused: tuple[str, ...] = ()  # the bounds of this connection refused already

    @property
    def uploads_in_progress(self) -> int:
        """How many Block1 uploads are partly received."""
        return len(self._uploads)

    @property
    def held_bytes(self) -> int:
        """The payload bytes held by this connection's partial uploads."""
        return self.connection_budget.held

    def next_expiry(self) -> float | None:
        """When the first upload in progress expires, if none gets a block before then."""
        if not self._uploads:
            return None
        return min(u.last_seen for u in self._uploads.values()) + self.upload_lifetime

    def expire(self, now: float) -> int:
        """Drop the uploads that got no block for ``upload_lifetime`` seconds; how many."""
        limit = now - self.upload_lifetime
        expired = [k for k, u in self._uploads.items() if u.last_seen <= limit]
        for key in expired:
            self._drop(key)
        return len(expired)

    def drop_uploads(self) -> None:
        """Drop every upload in progress (the connection closed), giving their bytes back."""
        for key in list(self._uploads):
            self._drop(key)

    def _drop(self, key: tuple[object, ...]) -> Upload:
        upload = self._uploads.pop(key)
        size = len(upload.data)
        self.connection_budget.give(size)
        if self.budget is not None:
            self.budget.give(size)
        return upload

    def receive_request(
        self, message: Message, now: float
    ) -> tuple[Message | None, Message | None]:
        """Handle a request's Block1 option.

        :returns: ``(answer, request)``: an answer to send now (2.31 Continue, 4.08,
            4.13, 5.03) and no request, or no answer and the request to process (with the
            whole body when an upload completed; its Block1 option is kept so the final
            response can echo it).
        """
        options = message.options
        size1 = options.get_uint(_SIZE1)
        if size1 is not None and size1 > self.max_body_size:
            return self._too_large(
                message, f"Size1 announces {size1} bytes; the limit is {self.max_body_size} bytes"
            ), None
        raw = options.get(_BLOCK1)
        if raw is None:
            return None, message
        try:
            block = Block.decode(decode_uint(raw))
        except BlockError as error:  # more than 3 bytes: a bad critical option (4.02)
            return Message(Code(_BAD_OPTION), message.token, payload=str(error).encode()), None
        if self._uploads:
            self.expire(now)
        key = (
            int(message.code),
            tuple((n, v) for n, v in options.items if n in _UPLOAD_KEY_OPTIONS),
        )
        upload = self._uploads.get(key)
        if block.num == 0:
            if upload is not None:  # a restart: the old body goes
                self._drop(key)
            elif len(self._uploads) >= self.max_uploads:
                refusal = self._own_refusal("uploads", len(self._uploads), self.max_uploads)
                answer = self._unavailable(
                    message, refusal, "too many uploads in progress on this connection"
                )
                return answer, None
            upload = Upload(self.max_body_size, now, now)
        elif upload is None:
            return self._incomplete(message, f"no upload in progress for block {block.num}"), None
        payload = message.payload
        try:
            upload.check(block, payload)
        except UploadError as error:
            if block.num != 0:
                self._drop(key)
            if error.code == _TOO_LARGE:
                return self._too_large(message, error.diagnostic), None
            return self._incomplete(message, error.diagnostic), None
        size = len(payload)
        if not block.more:
            # The last block: the whole body goes to the resource at once.
            if block.num != 0:
                self._drop(key)
            upload.append(block, payload, now)
            return None, message.replace(payload=bytes(upload.data))
        refused = self._over_budget(message, size)
        if refused is not None:
            if block.num != 0:
                self._drop(key)
            return refused, None
        if block.num == 0:
            self._uploads[key] = upload
        upload.append(block, payload, now)
        self.connection_budget.take(size)
        if self.budget is not None:
            self.budget.take(size)
        echo = Options([(_BLOCK1, Block(block.num, True, block.szx).encode())])
        return Message(Code(_CONTINUE), message.token, echo), None

    def _over_budget(self, message: Message, size: int) -> Message | None:
        """A 5.03 answer if ``size`` more bytes do not fit a byte budget, else ``None``."""
        mine, shared = self.connection_budget, self.budget
        if not mine.fits(size):
            mine.refusals += 1
            refusal = self._own_refusal("connection", mine.held, mine.limit)
            diagnostic = f"the partial uploads of this connection would exceed {mine.limit} bytes"
        elif shared is not None and not shared.fits(size):
            refusal = UploadRefusal("server", shared.held, shared.limit, shared.refuse())
            diagnostic = "the server holds too many partial uploads"
        else:
            return None
        return self._unavailable(message, refusal, diagnostic)

    def _own_refusal(self, bound: str, held: int, limit: int) -> UploadRefusal:
        """A refusal by a bound of this connection: the first one starts its only episode."""
        first = bound not in self._refused
        if first:
            self._refused += (bound,)
        return UploadRefusal(bound, held, limit, first)

    def _unavailable(self, message: Message, refusal: UploadRefusal, diagnostic: str) -> Message:
        self.last_refusal = refusal
        return Message(
            Code(_UNAVAILABLE),
            message.token,
            Options([(14, UPLOAD_RETRY_AFTER)]),
            f"{diagnostic}; retry later".encode(),
        )

    def _incomplete(self, message: Message, diagnostic: str) -> Message:
        return Message(Code(0x88), message.token, payload=diagnostic.encode())

    def _too_large(self, message: Message, diagnostic: str) -> Message:
        """4.13 with Size1 (RFC 7959 section 2.9.3); ``diagnostic`` names the limit."""
        return Message(
            Code(_TOO_LARGE), message.token, Options([(_SIZE1, self.max_body_size)]),
            diagnostic.encode(),
        )

    def prepare_response(
        self,
        request: Message,
        response: Message,
        *,
        peer_max_message_size: int,
        peer_bert: bool,
        encoded_size: Callable[[Message], int],
    ) -> Message:
        """Fit ``response`` to the peer: echo Block1, cut a Block2 block if needed.

        A response that fits the peer's Max-Message-Size and was not asked for in blocks
        goes out whole.  Otherwise the block the request's Block2 option names (block 0
        if none) is sent, with Size2 on the first block (RFC 7959 sections 2.4 and 4).
        """
        options = response.options
        final = decode_block(request.options.get(_BLOCK1))
        if final is not None and response.code != _CONTINUE:
            options = options.replace(_BLOCK1, Block(final.num, False, final.szx).encode())
            response = response.replace(options=options)
        # An undecodable Block2 was already answered 4.02 by the Site: send that whole.
        # So is an error (not 2.xx): the requested block is one of a representation
        # (RFC 7959 section 2.4), and an error's diagnostic is none.
        requested = decode_block(request.options.get(_BLOCK2))
        if requested is not None and not response.code.is_successful:
            requested = None
        if (
            requested is None
            and len(response.payload) < peer_max_message_size
            and encoded_size(response) <= peer_max_message_size
        ):
            return response
        body = response.payload
        room = (
            peer_max_message_size - encoded_size(response.replace(payload=b"")) - _BLOCK2_OVERHEAD
        )
        szx, limit = choose_block2(room=room, requested=requested, peer_bert=peer_bert)
        offset = requested.offset if requested is not None else 0
        try:
            chunk, block = slice_block(body, offset, szx, limit)
        except BlockError as error:
            return Message(Code(_BAD_OPTION), response.token, payload=str(error).encode())
        options = options.replace(_BLOCK2, block.encode())
        if block.num == 0:
            options = options.replace(_SIZE2, len(body))
        return response.replace(options=options, payload=chunk)
