"""Eager writes (coaptcp.transport.eager) on Twisted's own transport classes.

Twisted's ``tcp.Server`` runs here over a fake socket (no network): its buffers, its
``doWrite`` and its producer calls are the real ones, so these tests fail if Twisted
changes the internals the eager writer relies on, or if the writer gets their meaning
wrong (order, partial sends, errors, the close, flow control).
"""

from __future__ import annotations

import errno

import pytest
from fake_socket import FakePort, FakeSocket, fake_server, writing
from twisted.internet import main, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol

from coaptcp.transport.eager import EagerTLSTransport, eager_writer, sends_eagerly, unsent_bytes
from coaptcp.transport.tls.transport import CoapTLSTransport


class Producer:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


def server(sock: FakeSocket) -> tcp.Server:
    return fake_server(sock, Protocol())


# -- what the writer relies on in Twisted ------------------------------------------------


def test_twisted_buffers_as_the_writer_expects() -> None:
    """write() buffers and asks for writability; doWrite sends it all and empties the
    buffer; a partial send keeps the rest, counted from ``offset``."""
    sock = FakeSocket(room=4)
    transport = server(sock)
    assert unsent_bytes(transport) == 0 and not transport.dataBuffer
    transport.write(b"hello")
    assert transport._tempDataLen == 5 and sock.sent == []
    assert unsent_bytes(transport) == 5 and writing(transport)
    transport.doWrite()
    assert sock.wire() == b"hell" and transport.offset == 4
    assert transport.dataBuffer and unsent_bytes(transport) == 1
    sock.room = None
    transport.doWrite()
    assert sock.wire() == b"hello"
    assert transport.dataBuffer == b"" and transport._tempDataLen == 0
    assert unsent_bytes(transport) == 0 and not writing(transport)


def test_twisted_state_attributes_are_where_the_writer_reads_them() -> None:
    transport = server(FakeSocket())
    assert transport.connected and not transport.disconnecting
    assert not transport._writeDisconnecting and not transport.TLS
    transport.loseWriteConnection()
    assert transport._writeDisconnecting
    other = server(FakeSocket())
    other.loseConnection()
    assert other.disconnecting


def test_twisted_write_is_what_sends_eagerly_expects() -> None:
    # The classes the writer takes over: Twisted's TCP write and send, not overridden.
    assert tcp.Connection.write in (FileDescriptor.write, tcp._TLSConnectionMixin.write)
    assert tcp.Server.writeSomeData is tcp.Connection.writeSomeData
    assert tcp.Client.writeSomeData is tcp.Connection.writeSomeData
    assert sends_eagerly(server(FakeSocket()))


def test_twisted_tls_layer_flushes_through_flush_send_bio() -> None:
    """TLSMemoryBIOProtocol writes OpenSSL's output only through _flushSendBIO, and
    BufferingTLSTransport (which CoapTLSTransport no longer is) delays writes."""
    assert issubclass(CoapTLSTransport, EagerTLSTransport)
    assert not issubclass(CoapTLSTransport, BufferingTLSTransport)
    assert "_flushSendBIO" in vars(TLSMemoryBIOProtocol)
    assert TLSMemoryBIOProtocol._aborted is False


# -- sending at once ---------------------------------------------------------------------


def test_empty_buffer_sends_at_once_without_a_reactor_turn() -> None:
    sock = FakeSocket()
    transport = server(sock)
    write = eager_writer(transport)
    write(b"\x00\xe1")
    write(b"\x01\x45\x42")
    assert sock.sent == [b"\x00\xe1", b"\x01\x45\x42"]
    assert unsent_bytes(transport) == 0 and not writing(transport)


def test_partial_send_hands_the_rest_to_twisted() -> None:
    sock = FakeSocket(room=3)
    transport = server(sock)
    write = eager_writer(transport)
    write(b"abcdefgh")
    assert sock.wire() == b"abc"
    assert unsent_bytes(transport) == 5 and writing(transport)
    write(b"ij")  # buffered behind the rest, never sent before it
    assert sock.calls == 1
    sock.room = None
    transport.doWrite()
    assert sock.wire() == b"abcdefghij" and not writing(transport)
    write(b"k")  # empty again: at once
    assert sock.wire() == b"abcdefghijk" and not writing(transport)


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENOBUFS])
def test_a_full_socket_leaves_it_all_to_twisted(code: int) -> None:
    sock = FakeSocket(error=OSError(code, "full"))
    transport = server(sock)
    eager_writer(transport)(b"abc")
    assert unsent_bytes(transport) == 3 and writing(transport)
    sock.error = None
    transport.doWrite()
    assert sock.wire() == b"abc"


def test_a_send_error_is_left_for_twisted_to_find() -> None:
    sock = FakeSocket(error=ConnectionResetError(errno.ECONNRESET, "reset"))
    transport = server(sock)
    eager_writer(transport)(b"abc")
    assert unsent_bytes(transport) == 3 and writing(transport)
    assert transport.doWrite() is main.CONNECTION_LOST  # the reactor then loses it


def test_bytes_twisted_holds_go_first() -> None:
    sock = FakeSocket()
    transport = server(sock)
    transport.write(b"first")  # autobahn's handshake answer, say
    eager_writer(transport)(b"second")
    assert sock.sent == []
    transport.doWrite()
    assert sock.wire() == b"firstsecond"


def test_after_lose_connection_twisted_keeps_its_order() -> None:
    sock = FakeSocket()
    transport = server(sock)
    transport.loseConnection()
    eager_writer(transport)(b"abort")
    assert sock.sent == [] and unsent_bytes(transport) == 5
    assert transport.doWrite() is main.CONNECTION_DONE
    assert sock.wire() == b"abort"


def test_a_lost_connection_drops_the_bytes_as_twisted_does() -> None:
    sock = FakeSocket()
    transport = server(sock)
    transport.connected = False
    eager_writer(transport)(b"late")
    assert sock.sent == [] and unsent_bytes(transport) == 0


def test_flow_control_pauses_the_producer_once_the_kernel_is_full() -> None:
    """What the socket refuses fills Twisted's buffer: over bufferSize the streaming
    producer is paused, and resumed once it drains, as without eager writes."""
    sock = FakeSocket(room=10)
    transport = server(sock)
    producer = Producer()
    transport.registerProducer(producer, True)
    write = eager_writer(transport)
    write(b"x" * 10)
    assert producer.events == []
    write(b"y" * (transport.bufferSize + 1))
    assert producer.events == ["pause"]
    sock.room = None
    transport.doWrite()
    assert producer.events == ["pause", "resume"]
    assert sock.wire() == b"x" * 10 + b"y" * (transport.bufferSize + 1)


# -- transports the writer leaves alone ---------------------------------------------------


def test_other_transports_get_their_plain_write() -> None:
    transport = StringTransport()
    write = eager_writer(transport)
    write(b"abc")
    assert transport.value() == b"abc"
    assert not sends_eagerly(transport)


def test_a_tcp_transport_running_tls_itself_is_left_alone() -> None:
    sock = FakeSocket()
    transport = server(sock)
    transport.TLS = True  # as _newtls.startTLS marks it (an ssl: endpoint)
    assert not sends_eagerly(transport)


def test_subclasses_sending_otherwise_are_left_alone() -> None:
    class Sendmsg(tcp.Server):
        def writeSomeData(self, data: bytes) -> int:  # file descriptors, say
            return 0

    class Logged(tcp.Server):
        def write(self, data: bytes) -> None:
            super().write(data)

    for kind in (Sendmsg, Logged):
        transport = kind(  # type: ignore[arg-type]
            FakeSocket(), Protocol(), ("127.0.0.1", 1), FakePort(), 1, MemoryReactor()
        )
        assert not sends_eagerly(transport)
