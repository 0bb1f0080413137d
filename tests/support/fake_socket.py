"""A stand-in for a non-blocking TCP socket under Twisted's real ``tcp.Server``.

No network: Twisted's buffers, ``doWrite`` and producer calls are its own, and what it
sends lands in :attr:`FakeSocket.sent`.  For the tests of eager writes
(``coaptcp.transport.eager``).
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactor

__all__ = ["FakePort", "FakeSocket", "fake_server", "writing"]


class FakeSocket:
    """Takes at most ``room`` bytes in all (``None``: any), then EAGAIN; or raises
    ``error`` on every send."""

    def __init__(self, room: int | None = None, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent: list[bytes] = []
        self.calls = 0

    def setblocking(self, flag: bool) -> None:
        assert not flag

    def fileno(self) -> int:
        return 99

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 5684)

    def setsockopt(self, *args: Any) -> None:
        pass

    def send(self, data: Any) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        data = bytes(data)
        if self.room is not None:
            if self.room == 0:
                raise BlockingIOError(errno.EAGAIN, "try again")
            data = data[: self.room]
            self.room -= len(data)
        self.sent.append(data)
        return len(data)

    def wire(self) -> bytes:
        """Everything sent so far."""
        return b"".join(self.sent)

    def take(self) -> bytes:
        """Everything sent since the last call."""
        data = self.wire()
        self.sent.clear()
        return data


class FakePort:
    """What ``tcp.Server`` reads of its listening port."""

    _realPortNumber = 5684


def fake_server(
    sock: FakeSocket, protocol: IProtocol, reactor: MemoryReactor | None = None
) -> tcp.Server:
    """Twisted's server-side TCP transport over ``sock`` (``makeConnection`` not called)."""
    return tcp.Server(  # type: ignore[arg-type]
        sock, protocol, ("127.0.0.1", 40000), FakePort(), 1, reactor or MemoryReactor()
    )


def writing(transport: tcp.Connection) -> bool:
    """Whether the transport asked its reactor to tell it when it can write."""
    reactor: MemoryReactor = transport.reactor  # type: ignore[assignment]
    return transport in reactor.getWriters()
