"""A stand-in for a non-blocking TCP socket under Twisted's real ``tcp.Server``.

No network: Twisted's buffers, ``doWrite`` and producer calls are its own, and what it
sends lands in :attr:`FakeSocket.sent`.  For the tests of eager writes
(``coaptcp.transport.eager``).
"""

from __future__ import annotations

import errno
import socket
import weakref
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactor

__all__ = ["FakePort", "FakeSocket", "fake_server", "writing"]


class FakeSocket:
    """Takes at most ``room`` bytes in all (``None``: any), then EAGAIN; or raises
    ``error`` on every send.

    Its file descriptor is one end of a real socket pair, so that ``poll`` on it says
    whether the kernel would take more (:meth:`fill_kernel_buffer` makes it say no); the
    bytes sent never go there."""

    def __init__(self, room: int | None = None, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent: list[bytes] = []
        self.calls = 0
        self._pair = socket.socketpair()
        for end in self._pair:
            end.setblocking(False)
        weakref.finalize(self, _close_pair, self._pair)

    def fill_kernel_buffer(self) -> None:
        """Fill the descriptor's send buffer (its peer reads nothing): not writable."""
        end = self._pair[0]
        while True:
            try:
                end.send(b"x" * 65536)
            except BlockingIOError:
                return

    def setblocking(self, flag: bool) -> None:
        assert not flag

    def close(self) -> None:
        """Twisted closes its socket when the connection is lost."""

    def fileno(self) -> int:
        return self._pair[0].fileno()

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


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for end in pair:
        end.close()


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
