"""Why a request on a :class:`~coaptcp.channel.Channel` got no response (RFC 8323 3.4, 5)."""

from __future__ import annotations

from coaptcp.core.errors import CoapTcpError

__all__ = ["ConnectionClosedError", "RequestNotSent"]


class ConnectionClosedError(CoapTcpError):
    """The connection closed before the response arrived (RFC 8323 section 3.4).

    :ivar reason: why, as far as we know: an Abort's diagnostic, a Release, or the loss.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestNotSent(CoapTcpError):
    """The request could not be sent at all (too large for the peer, connection closing)."""
