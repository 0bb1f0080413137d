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
import select
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from OpenSSL import SSL
from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from coaptcp.transport.membio import MEM_DATA, NULL

__all__ = [
    "BATCH_MESSAGES",
    "EagerTLSTransport",
    "EagerWrite",
    "closes_at_once",
    "eager_writer",
    "sends_eagerly",
    "unsent_bytes",
]

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


def closes_at_once(transport: Any) -> bool:
    """Whether the ``loseConnection`` just called on ``transport`` closes it in the
    reactor's next turn, whatever the peer does (then no close timeout is needed).

    Twisted 26.x (abstract.FileDescriptor.loseConnection): the transport stops reading
    and waits for the socket to be writable; ``doWrite`` then finds its buffer empty and
    closes.  So it closes at once only when Twisted holds nothing unsent *and* the
    kernel's send buffer has room now: a peer that reads nothing more can keep that
    buffer full, and the socket never writable (a transport :func:`sends_eagerly` does
    not accept is never taken to close at once).  One ``poll`` with no timeout, on the
    close path only.
    """
    if not sends_eagerly(transport) or unsent_bytes(transport):
        return False
    poller = select.poll()
    poller.register(transport.fileno(), select.POLLOUT)
    return any(events == select.POLLOUT for _, events in poller.poll(0))


#: A write of this many CoAP messages or more (a read that carried as many requests) is
#: sent at the end of the reactor's turn rather than at once: see :func:`eager_writer`.
BATCH_MESSAGES = 8


class EagerWrite(Protocol):
    """What :func:`eager_writer` returns: ``write(data)``, or ``write(data, True)`` for
    bytes that may wait for the end of the reactor's turn."""

    def __call__(self, data: bytes, batch: bool = False) -> None:
        """Write ``data``; see :func:`eager_writer`."""


class _EndOfTurn:
    """The writers of one reactor holding bytes for the end of its turn: flushed by one
    ``callLater(0)``, which Twisted runs after the events of the current poll and before
    it polls again."""

    __slots__ = ("_call", "_reactor", "_writers", "sent")

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._writers: list[_TcpWriter] = []
        self._call: Any = None
        #: Whether a writer that asked (:meth:`_TcpWriter.after_others`) sent at once in
        #: this turn.
        self.sent = False

    def add(self, writer: _TcpWriter) -> None:
        self._writers.append(writer)
        self.mark()

    def mark(self) -> None:
        """Make sure the end of this turn is seen (it resets :attr:`sent`)."""
        if self._call is None:
            self._call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._call = None
        self.sent = False
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.flush()


#: One per reactor (bounded by the reactors alive: weak keys).
_END_OF_TURN: weakref.WeakKeyDictionary[Any, _EndOfTurn] = weakref.WeakKeyDictionary()


class _TcpWriter:
    """The eager writer of one TCP transport (see :func:`eager_writer`)."""

    __slots__ = ("_end_of_turn", "_held", "_later", "_send", "_transport", "queued")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._later = transport.write
        self._send = transport.socket.send
        reactor = transport.reactor
        end_of_turn = _END_OF_TURN.get(reactor)
        if end_of_turn is None:
            end_of_turn = _END_OF_TURN[reactor] = _EndOfTurn(reactor)
        self._end_of_turn = end_of_turn
        #: Bytes wait in Twisted's buffer for the end of the turn (not yet watched for
        #: writability by the reactor).
        self.queued = False
        #: How many of them this writer put there (:meth:`_hold`).
        self._held = 0

    def __call__(self, data: bytes, batch: bool = False) -> None:
        # Twisted 26.x (abstract.FileDescriptor): ``dataBuffer`` and ``_tempDataLen``
        # hold what is unsent (see unsent_bytes: an empty dataBuffer has offset 0);
        # ``connected`` is false once lost, ``disconnecting`` is set by loseConnection
        # and ``_writeDisconnecting`` by loseWriteConnection: then writes keep Twisted's
        # order of things (its write drops bytes once the connection is lost).
        t = self._transport
        if not t.connected or t.disconnecting or t._writeDisconnecting:
            self._later(data)
            return
        if self.queued:
            self._hold(data)  # after the bytes waiting for the end of the turn
            return
        if t.dataBuffer or t._tempDataLen:
            self._later(data)  # Twisted sends them when the socket takes more
            return
        if batch:
            self._hold(data)
            self.queued = True
            self._end_of_turn.add(self)
            return
        try:
            sent = self._send(data)  # PEP 475: an EINTR is retried by Python itself
        except OSError as error:
            if error.errno not in _TRY_LATER:
                self._later(data)  # nothing was sent: Twisted's send finds the error again
                return
            sent = 0
        if sent < len(data):
            self._later(data[sent:])

    def after_others(self, data: bytes) -> None:
        """Write ``data`` at once if nothing else was sent so in this turn, else at its
        end (for output that takes long to make, such as TLS records: see
        :class:`EagerTLSTransport`)."""
        end_of_turn = self._end_of_turn
        if end_of_turn.sent:
            self(data, True)
            return
        end_of_turn.sent = True
        end_of_turn.mark()
        self(data)

    def _hold(self, data: bytes) -> None:
        # Twisted 26.x: FileDescriptor.write without its startWriting: the bytes join
        # _tempDataBuffer (counted in _tempDataLen, so that _maybePauseProducer pauses
        # the producer over bufferSize, as write does), and the reactor is not asked to
        # watch the socket: flush sends them at the end of the turn.
        t = self._transport
        t._tempDataBuffer.append(data)
        t._tempDataLen += len(data)
        self._held += len(data)
        t._maybePauseProducer()

    def flush(self) -> None:
        """Send what waited for the end of the turn; Twisted keeps what the socket
        does not take (and the close, or the error, that came meanwhile)."""
        self.queued = False
        held, self._held = self._held, 0
        t = self._transport
        if not t.connected:
            return  # lost meanwhile: Twisted dropped the buffer
        if t.disconnecting or t._writeDisconnecting:
            t.startWriting()  # loseConnection came meanwhile: Twisted sends, then closes
            return
        if (
            held
            and t._tempDataLen == held  # only what _hold put there (no write of Twisted's)
            and not t.dataBuffer
            and (t.producer is None or (t.streamingProducer and not t.producerPaused))
        ):
            # Then doWrite would only send it: its stopWriting (never started) and its
            # producer's resume (not paused) have nothing to do.  Sent as __call__ sends
            # (the socket's refusal, or an error, left to Twisted), a few calls less.
            pending = t._tempDataBuffer
            t._tempDataBuffer = []
            t._tempDataLen = 0
            self(pending[0] if len(pending) == 1 else b"".join(pending))
            return
        # Twisted 26.x: doWrite sends the buffer (as when the reactor finds the socket
        # writable) and returns None, or an exception once the connection is lost;
        # either way, what is left is Twisted's to send, so the socket is watched.
        if t.doWrite() is not None or unsent_bytes(t):
            t.startWriting()


def eager_writer(transport: Any) -> EagerWrite:
    """A function that writes bytes to ``transport``, sending them at once if it can.

    For a transport :func:`sends_eagerly` accepts, the bytes go to the socket in this
    call when Twisted holds nothing unsent for it and it is open for writing; what the
    socket does not take (a full send buffer) is handed to ``transport.write``, as is
    everything when Twisted holds bytes already (they go first), once the transport
    closes, or when the send fails (Twisted's own next send then finds the error and
    loses the connection, as it would have).  Any other transport gets its ``write``
    (and ignores ``batch``).

    ``batch`` (a write of :data:`BATCH_MESSAGES` or more answers, of a busy peer) holds
    the bytes in Twisted's buffer until the end of the reactor's turn, where they are
    sent together with the other connections' held bytes: many sends spread over a turn
    would each wake a peer that has gone back to sleep in the meantime, and on a busy
    server those wake-ups cost more than the turn saves (measured in
    ``benchmarks/README.md``).  Either way no second turn is waited for.
    """
    if not sends_eagerly(transport):
        plain = transport.write

        def write(data: bytes, batch: bool = False) -> None:
            plain(data)

        return write
    return _TcpWriter(transport)


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
        writer = eager_writer(transport)
        self._send_now = writer.after_others if isinstance(writer, _TcpWriter) else writer
        super().makeConnection(transport)

    def _flushReceiveBIO(self) -> None:
        # Twisted 26.x (protocols/tls.py): after feeding the receive BIO (dataReceived,
        # once the handshake is done) and on connectionLost, TLSMemoryBIOProtocol calls
        # _flushReceiveBIO: ``recv`` until it raises WantReadError, each piece to the
        # wrapped protocol (``ProtocolWrapper.dataReceived``) unless ``_aborted``; a
        # ZeroReturnError (the peer's close_notify) is answered by ``_shutdownTLS`` and
        # ends with ``_tlsShutdownFinished(None)``, any other SSL error with
        # ``_tlsShutdownFinished(Failure())`` (which sets ``_lostTLSConnection``); then
        # _flushSendBIO.  The same here, except that the loop stops without that last
        # recv (an exception made and caught) when OpenSSL holds nothing to read: no
        # decrypted bytes (``pending``) and none in the BIO it reads from (``_into_ssl``).
        if MEM_DATA is None:
            super()._flushReceiveBIO()  # type: ignore[misc]
            return
        connection = self._tlsConnection
        incoming = connection._into_ssl
        while not self._lostTLSConnection:
            if not connection.pending() and not MEM_DATA(incoming, NULL):
                break
            try:
                data = connection.recv(2**15)
            except SSL.WantReadError:
                break  # a record not complete yet
            except SSL.ZeroReturnError:
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except SSL.Error:
                self._tlsShutdownFinished(Failure())
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)
        self._flushSendBIO()

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
        connection = self._tlsConnection
        # Asked before reading (coaptcp.transport.membio): bio_read raises when there is
        # nothing, and after every read Twisted looks for handshake output.
        if MEM_DATA is not None and not MEM_DATA(connection._from_ssl, NULL):
            return  # OpenSSL made nothing to send
        try:
            data = connection.bio_read(2**15)
        except SSL.WantReadError:
            return
        self._send_now(data)
