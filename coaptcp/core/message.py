"""The CoAP message as it travels over reliable transports (RFC 8323 section 3.2).

Over TCP, TLS and WebSockets a message has no Type and no Message ID: it is a code, a
token, options and a payload.  :class:`Message` is immutable; build variants with
:meth:`Message.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .codes import Code
from .options import EMPTY_OPTIONS, Options

__all__ = ["MAX_TOKEN_LENGTH", "Message"]

#: Token lengths 0-8 are valid; 9-15 are a message format error without RFC 8974
#: (RFC 7252 section 3, RFC 8323 section 3.2).
MAX_TOKEN_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Message:
    """One CoAP message: ``code``, ``token`` (0-8 bytes), ``options`` and ``payload``."""

    code: Code
    token: bytes = b""
    options: Options = field(default=EMPTY_OPTIONS)
    payload: bytes = b""

    def replace(self, **changes: object) -> Message:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        payload = self.payload if len(self.payload) <= 32 else self.payload[:32] + b"..."
        return (
            f"Message({self.code}, token={self.token.hex() or '-'}, "
            f"{self.options!r}, payload={payload!r} ({len(self.payload)} bytes))"
        )
