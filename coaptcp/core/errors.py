"""Errors of the sans-I/O core, split by whose fault they are (as h11 does).

:class:`LocalProtocolError` means the caller asked for something the protocol forbids (for
example a message larger than the peer's Max-Message-Size, RFC 8323 section 5.3.1).
:class:`RemoteProtocolError` means the peer broke the protocol; it carries the diagnostic
that goes into our Abort (RFC 8323 section 5.6).
"""

from __future__ import annotations

__all__ = [
    "CoapTcpError",
    "LocalProtocolError",
    "MessageFormatError",
    "MessageTooLarge",
    "RemoteProtocolError",
]


class CoapTcpError(Exception):
    """Base class of every error this package raises."""


class LocalProtocolError(CoapTcpError):
    """The local application misused the connection."""


class MessageTooLarge(LocalProtocolError):
    """An outgoing message exceeds the peer's Max-Message-Size (RFC 8323 section 5.3.1)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"message of {size} bytes exceeds the peer's Max-Message-Size of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class RemoteProtocolError(CoapTcpError):
    """The peer violated the protocol; the connection must be aborted.

    :ivar diagnostic: human-readable text for the Abort's diagnostic payload.
    :ivar bad_csm_option: the CSM option number to report in Bad-CSM-Option, if any.
    """

    def __init__(self, diagnostic: str, *, bad_csm_option: int | None = None) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.bad_csm_option = bad_csm_option


class MessageFormatError(RemoteProtocolError):
    """A frame or message that cannot be parsed (RFC 8323 section 5.6, RFC 7252 section 3)."""
