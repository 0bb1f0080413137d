"""The client's own errors besides the connectors' (RFC 8323 sections 5.4, 5.5).

:class:`~coaptcp.client.connectors.ClientError` is their base, defined beside the
connectors that raise its other subclasses (``ConnectFailed``, ``SchemeNotAvailable``).
"""

from __future__ import annotations

from twisted.internet.defer import TimeoutError

from coaptcp.client.connectors import ClientError

__all__ = ["ClientClosed", "RequestTimeout"]


class RequestTimeout(ClientError, TimeoutError):
    """No response (or Pong, RFC 8323 section 5.4) came within the time given.

    Also a Twisted ``TimeoutError``.
    """


class ClientClosed(ClientError):
    """The client was closed (its connections released, RFC 8323 section 5.5); it opens
    no more connections."""
