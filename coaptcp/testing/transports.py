"""A transport that records what a protocol did to it, and the addresses the in-memory
helpers give their two ends (documentation ranges of RFC 5737, so never a real host).
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

__all__ = ["HOST_ADDRESS", "PEER_ADDRESS", "RecordingTransport"]

#: The remote end of a connection our protocol is on (the client, seen by a server).
PEER_ADDRESS = IPv4Address("TCP", "192.0.2.7", 40000)
#: Our end of it: a server on the CoAP-over-TCP port (RFC 8323 section 8.1).
HOST_ADDRESS = IPv4Address("TCP", "198.51.100.1", 5683)


class RecordingTransport(StringTransport):
    """A :class:`StringTransport` that records the order of writes and closes.

    ``calls`` lists ``"write"``, ``"loseConnection"`` and ``"abortConnection"`` as they
    happen, so a test can tell that an Abort message (RFC 8323 section 5.6) was written
    before the close, and a forced drop (``aborted``) from a graceful close.
    """

    def __init__(
        self,
        hostAddress: IPv4Address | None = None,
        peerAddress: IPv4Address | None = None,
    ) -> None:
        super().__init__(hostAddress=hostAddress, peerAddress=peerAddress)
        self.calls: list[str] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        """Record the write and keep ``data`` (see :meth:`value`)."""
        self.calls.append("write")
        super().write(data)

    def writeSequence(self, seq: Iterable[bytes]) -> None:
        """Record one write for the whole sequence, as a socket transport makes one."""
        self.calls.append("write")
        StringTransport.write(self, b"".join(seq))

    def loseConnection(self) -> None:
        """Record a graceful close (pending data would still be sent)."""
        self.calls.append("loseConnection")
        super().loseConnection()

    def abortConnection(self) -> None:
        """Record a forced drop: the connection is gone at once, unsent data with it."""
        self.calls.append("abortConnection")
        self.aborted = True
        self.disconnected = True
        self.disconnecting = True
