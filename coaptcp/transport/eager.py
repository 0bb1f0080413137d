"""Writing at once from the receive path: every place coaptcp relies on Twisted's
transport internals, and the eager writes built on them.

Twisted's ``transport.write`` only buffers.  ``FileDescriptor.write`` appends the bytes to
the transport's buffer and asks the reactor to watch the socket for writability; the send
happens on the reactor's next turn (``doWrite``), after another ``epoll_wait`` and with an
``epoll_ctl`` to switch writability on and another to switch it off.  A server that
answers one request per read (RFC 8323 section 3: one request in flight per connection is
what most devices do) pays that turn for every answer.  Over TLS Twisted's
``BufferingTLSTransport`` adds one more turn: it gathers small writes until then.

:func:`eager_writer` gives a function that sends at once when Twisted holds nothing unsent
for the transport (so nothing can be overtaken), and hands Twisted only what the socket
did not take: then Twisted's buffer, its producer API (``pauseProducing`` once the buffer
is over ``bufferSize``) and its error handling go on as before, so flow control and the
output bounds of :mod:`coaptcp.channel.flow` are unchanged.  A transport it does not know
(a PROXY-protocol wrapper, a ``StringTransport``, Windows' IOCP reactor, a TCP transport
that runs TLS itself) gets its plain ``write``.  :class:`EagerTLSTransport` does the same
below a TLS layer: OpenSSL's output goes to the socket as soon as it is made.

Twisted has no public API for "write now", so this module reads and overrides a few
undocumented attributes and methods; no other module does.  Each touch says which
behaviour of Twisted it relies on; they were checked against Twisted 26.10
(``twisted/internet/abstract.py``, ``tcp.py``, ``_newtls.py`` and
``twisted/protocols/tls.py``), and ``tests/transport/test_eager.py`` checks every one on
Twisted's own classes, so a change in Twisted shows there first.  The same transport
classes serve every POSIX reactor (epoll, poll, select), so all of them take this path.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import tcp
from twisted.protocols.tls import TLSMemoryBIOProtocol

__all__ = ["EagerTLSTransport", "eager_writer", "sends_eagerly", "unsent_bytes"]

# Twisted 26.x: tcp.Connection is the base of every socket transport of the POSIX
# reactors (tcp.Server, tcp.Client; unix.Server and unix.Client subclass it with a
# writeSomeData of their own, for file descriptors, and so are left alone).  Its
# writeSomeData sends with ``self.socket.send``; its write is _newtls.ConnectionMixin's
# (FileDescriptor.write without pyOpenSSL), which passes bytes to a TLS layer once
# startTLS ran (then ``TLS`` is true).
_PLAIN_WRITE_SOME = tcp.Connection.writeSomeData
_PLAIN_WRITE = tcp.Connection.write
#: What Twisted's own writeSomeData takes for "nothing sent, try later".
_TRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def sends_eagerly(transport: object) -> bool:
    """Whether :func:`eager_writer` sends to ``transport``'s socket itself: a TCP
    connection of one of Twisted's POSIX reactors, as Twisted made it, without TLS."""
    if not isinstance(transport, tcp.Connection):
        return False
    kind = type(transport)
    return (
        kind.writeSomeData is _PLAIN_WRITE_SOME  # no other way of sending
        and kind.write is _PLAIN_WRITE  # no other buffering
        and not transport.TLS  # Twisted 26.x: set by startTLS (_newtls.py)
        and hasattr(transport, "socket")
    )


def unsent_bytes(transport: Any) -> int:
    """How many bytes Twisted holds unsent for a TCP transport (``0``: it holds none).

    Twisted 26.x (abstract.FileDescriptor): ``write`` appends to ``_tempDataBuffer`` and
    counts them in ``_tempDataLen``; ``doWrite`` joins them into ``dataBuffer`` and sends
    from ``offset``, and sets both back to empty (``b""`` and 0) once all is sent.
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[no-any-return]


def eager_writer(transport: Any) -> Callable[[bytes], None]:
    """A function that writes bytes to ``transport``, sending them at once if it can.

    For a transport :func:`sends_eagerly` accepts, the bytes go to the socket in this
    call when Twisted holds nothing unsent for it and it is open for writing; what the
    socket does not take (a full send buffer) is handed to ``transport.write``, as is
    everything when Twisted holds bytes already (they go first), once the transport
    closes, or when the send fails (Twisted's own next send then finds the error and
    loses the connection, as it would have).  Any other transport gets its ``write``.
    """
    if not sends_eagerly(transport):
        write: Callable[[bytes], None] = transport.write
        return write
    later = transport.write
    send = transport.socket.send

    def write_now(data: bytes) -> None:
        # Twisted 26.x (abstract.FileDescriptor): ``dataBuffer`` and ``_tempDataLen``
        # hold what is unsent (see unsent_bytes: an empty dataBuffer has offset 0);
        # ``connected`` is false once lost, ``disconnecting`` is set by loseConnection
        # and ``_writeDisconnecting`` by loseWriteConnection: then writes keep Twisted's
        # order of things (its write drops bytes once the connection is lost).
        t = transport
        if t.dataBuffer or t._tempDataLen or not t.connected or t.disconnecting or (
            t._writeDisconnecting
        ):
            later(data)
            return
        try:
            sent = send(data)  # PEP 475: an EINTR is retried by Python itself
        except OSError as error:
            if error.errno not in _TRY_LATER:
                later(data)  # nothing was sent: Twisted's send finds the error again
                return
            sent = 0
        if sent < len(data):
            later(data[sent:])

    return write_now


class EagerTLSTransport(TLSMemoryBIOProtocol):
    """Twisted's TLS layer, writing what OpenSSL makes to the socket at once.

    A plain :class:`~twisted.protocols.tls.TLSMemoryBIOProtocol`, not Twisted's default
    ``BufferingTLSTransport``, which holds small writes back until the reactor's next turn
    (our channel writes once per read anyway); and its ciphertext (handshake flights,
    each record, the closing alert) is written through :func:`eager_writer` of the TCP
    transport below.
    """

    _send_now: Callable[[bytes], None]

    def makeConnection(self, transport: Any) -> None:
        # Before Twisted's own makeConnection: a client's ClientHello is written from it.
        self._send_now = eager_writer(transport)
        super().makeConnection(transport)

    def _flushSendBIO(self) -> None:
        # Twisted 26.x (protocols/tls.py): TLSMemoryBIOProtocol calls _flushSendBIO
        # whenever OpenSSL may have put bytes into its send BIO (a handshake step, each
        # SSL_write of _write, the shutdown), and its own reads up to 32 KiB with
        # ``_tlsConnection.bio_read`` (WantReadError: nothing there) and writes them to
        # ``self.transport``.  This does the same through the eager writer, except after
        # abortConnection (``_aborted``), where Twisted's own buffering write is kept: the
        # abort drops what is buffered.
        if self._aborted:
            super()._flushSendBIO()  # type: ignore[misc]
            return
        try:
            data = self._tlsConnection.bio_read(2**15)
        except SSL.WantReadError:
            return
        self._send_now(data)
