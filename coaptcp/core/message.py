"""The CoAP message as it travels over reliable transports (RFC 8323 section 3.2).

Over TCP, TLS and WebSockets a message has no Type and no Message ID: it is a code, a
token, options and a payload.  A :class:`Message` is immutable by convention (nothing in
this package changes one after it is built); make variants with :meth:`Message.replace`.
It is a plain slotted class rather than a frozen dataclass because one is built for every
message on the hot path, and a frozen dataclass costs several times as much to create.
"""

from __future__ import annotations

from typing import Any

from coaptcp.core.codes import Code
from coaptcp.core.options import EMPTY_OPTIONS, Options

__all__ = ["MAX_TOKEN_LENGTH", "Message"]

#: Token lengths 0-8 are valid; 9-15 are a message format error without RFC 8974
#: (RFC 7252 section 3, RFC 8323 section 3.2).
MAX_TOKEN_LENGTH = 8


class Message:
    """One CoAP message: ``code``, ``token`` (0-8 bytes), ``options`` and ``payload``."""

    __slots__ = ("code", "options", "payload", "token")

    code: Code
    token: bytes
    options: Options
    payload: bytes

    def __init__(
        self,
        code: Code,
        token: bytes = b"",
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
    ) -> None:
        self.code = code
        self.token = token
        self.options = options
        self.payload = payload

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed (``code``, ``token``, ``options``, ``payload``)."""
        unknown = set(changes) - {"code", "token", "options", "payload"}
        if unknown:
            raise TypeError(f"Message has no field {sorted(unknown)[0]!r}")
        return Message(
            changes.get("code", self.code),
            changes.get("token", self.token),
            changes.get("options", self.options),
            changes.get("payload", self.payload),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.code == other.code
            and self.token == other.token
            and self.options == other.options
            and self.payload == other.payload
        )

    def __hash__(self) -> int:
        return hash((self.code, self.token, self.options, self.payload))

    def __repr__(self) -> str:
        payload = self.payload if len(self.payload) <= 32 else self.payload[:32] + b"..."
        return (
            f"Message({self.code}, token={self.token.hex() or '-'}, "
            f"{self.options!r}, payload={payload!r} ({len(self.payload)} bytes))"
        )
