"""The client's own errors besides the connectors' (RFC 8323 sections 5.4, 5.5).

:class:`~coaptcp.client.connectors.ClientError` is their base, defined beside the
connectors that raise its other subclasses (``ConnectFailed``, ``SchemeNotAvailable``).
"""

from __future__ import annotations

from twisted.internet.defer import TimeoutError

from coaptcp.client.connectors import ClientError
from coaptcp.core.udp.layer import LimitError

__all__ = ["ClientClosed", "PoolFull", "RequestTimeout"]


class RequestTimeout(ClientError, TimeoutError):
    """No response (or Pong, RFC 8323 section 5.4) came within the time given.

    Also a Twisted ``TimeoutError``.
    """


class ClientClosed(ClientError):
    """The client was closed (its connections released, RFC 8323 section 5.5); it opens
    no more connections."""


class PoolFull(ClientError, LimitError):
    """The pool holds its ``max_connections`` and none was idle: no new endpoint now.

    Also a :class:`~coaptcp.core.udp.layer.LimitError` (``limit`` is
    ``"max_connections"``): the proxy answers it 5.03 with Max-Age, as its other bounds.
    Its least recently used idle connection, if any, is being released (RFC 8323
    section 5.5), so a later request may find room.
    """

    def __init__(self, limit: int) -> None:
        LimitError.__init__(
            self, "max_connections", f"the client already holds {limit} connections"
        )
