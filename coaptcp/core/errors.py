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
    :ivar reason: what kind of violation it is, one of a short fixed set (the ``reason``
        label of ``coap_aborts_sent_total``, see :mod:`coaptcp.metrics`): ``"malformed"``
        (a frame that cannot be parsed), ``"message_too_large"`` (over our
        Max-Message-Size, RFC 8323 section 5.3.1), ``"no_csm"`` (the first message is not
        a CSM, section 5.3), ``"bad_csm"`` (a CSM option in error), ``"bad_signal"`` (an
        unknown critical option in another signal, section 5.2) or ``"protocol"``.
    """

    #: The reason when none is given (a subclass may name its own).
    default_reason = "protocol"

    def __init__(
        self, diagnostic: str, *, bad_csm_option: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic
        self.bad_csm_option = bad_csm_option
        if reason is None:
            reason = "bad_csm" if bad_csm_option is not None else self.default_reason
        self.reason = reason


class MessageFormatError(RemoteProtocolError):
    """A frame or message that cannot be parsed (RFC 8323 section 5.6, RFC 7252 section 3)."""

    default_reason = "malformed"
