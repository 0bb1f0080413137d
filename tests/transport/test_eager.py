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
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
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


def test_pyopenssl_tells_the_bytes_waiting_in_its_memory_bio() -> None:
    """pyOpenSSL's bindings as _flushSendBIO reads them: the bytes OpenSSL put into the
    memory BIO of a Connection (a ClientHello here), zero once bio_read took them."""
    from OpenSSL import SSL

    from coaptcp.transport import membio

    assert membio.MEM_DATA is not None and membio.NULL is not None
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    assert membio.MEM_DATA(connection._from_ssl, membio.NULL) == 0
    assert not membio.output_waiting(connection)
    with pytest.raises(SSL.WantReadError):
        connection.do_handshake()
    waiting = membio.MEM_DATA(connection._from_ssl, membio.NULL)
    assert waiting > 0 and membio.output_waiting(connection)
    assert len(connection.bio_read(2**16)) == waiting
    assert membio.MEM_DATA(connection._from_ssl, membio.NULL) == 0


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


# -- batches: held until the end of the reactor's turn ----------------------------------


def clocked(sock: FakeSocket) -> tuple[tcp.Server, MemoryReactorClock]:
    clock = MemoryReactorClock()
    return fake_server(sock, Protocol(), clock), clock


def test_a_batch_waits_for_the_end_of_the_turn_then_goes_in_one_send() -> None:
    sock_a, sock_b = FakeSocket(), FakeSocket()
    a, clock = clocked(sock_a)
    b = fake_server(sock_b, Protocol(), clock)
    write_a, write_b = eager_writer(a), eager_writer(b)
    write_a(b"a1", True)
    write_b(b"b1", True)
    write_a(b"a2")  # after a batch: behind it, not before
    assert sock_a.sent == [] and sock_b.sent == []
    assert not writing(a) and not writing(b)  # no epoll_ctl for them
    assert unsent_bytes(a) == 4
    assert len(clock.getDelayedCalls()) == 1  # one call for the whole turn
    clock.advance(0)
    assert sock_a.sent == [b"a1a2"] and sock_b.sent == [b"b1"]
    assert not writing(a) and unsent_bytes(a) == 0
    write_a(b"a3")  # a new turn: at once again
    assert sock_a.sent == [b"a1a2", b"a3"]


def test_a_batch_keeps_the_order_of_twisted_writes_between() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    write = eager_writer(transport)
    write(b"first", True)
    transport.write(b"second")  # autobahn's own write, say
    write(b"third")
    clock.advance(0)
    assert sock.wire() == b"firstsecondthird"


def test_a_twisted_write_between_leaves_the_end_of_the_turn_to_twisted() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    write = eager_writer(transport)
    write(b"first", True)
    transport.write(b"second")  # Twisted now watches the socket for writability
    assert writing(transport)
    clock.advance(0)
    assert sock.wire() == b"firstsecond"
    assert not writing(transport) and unsent_bytes(transport) == 0  # doWrite stopped it


def test_a_paused_producer_is_resumed_by_the_end_of_the_turn() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    producer = Producer()
    transport.registerProducer(producer, True)
    write = eager_writer(transport)
    write(b"x" * transport.bufferSize, True)
    write(b"y", True)  # over the buffer size now: paused
    assert producer.events == ["pause"]
    clock.advance(0)
    assert producer.events == ["pause", "resume"]
    assert sock.wire() == b"x" * transport.bufferSize + b"y"


def test_what_the_socket_refuses_at_the_end_of_the_turn_is_twisteds() -> None:
    sock = FakeSocket(room=3)
    transport, clock = clocked(sock)
    eager_writer(transport)(b"abcdef", True)
    clock.advance(0)
    assert sock.wire() == b"abc" and writing(transport) and unsent_bytes(transport) == 3
    sock.room = None
    transport.doWrite()
    assert sock.wire() == b"abcdef" and not writing(transport)


def test_a_close_during_the_turn_sends_the_batch_first() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    eager_writer(transport)(b"abort", True)
    transport.loseConnection()
    clock.advance(0)
    assert writing(transport)
    assert transport.doWrite() is main.CONNECTION_DONE
    assert sock.wire() == b"abort"


def test_a_connection_lost_during_the_turn_sends_nothing() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    eager_writer(transport)(b"late", True)
    transport.connected = False
    clock.advance(0)
    assert sock.sent == [] and not writing(transport)


def test_a_big_batch_pauses_the_producer_as_twisteds_write_would() -> None:
    sock = FakeSocket()
    transport, clock = clocked(sock)
    producer = Producer()
    transport.registerProducer(producer, True)
    eager_writer(transport)(b"x" * (transport.bufferSize + 1), True)
    assert producer.events == ["pause"]
    clock.advance(0)
    assert producer.events == ["pause", "resume"]


def test_other_transports_ignore_batch() -> None:
    transport = StringTransport()
    eager_writer(transport)(b"abc", True)
    assert transport.value() == b"abc"
