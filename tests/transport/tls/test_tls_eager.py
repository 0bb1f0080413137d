"""coaps+tcp writes at once (coaptcp.transport.eager.EagerTLSTransport): the server's
handshake flights and its answers reach the socket within the call that received what
they answer (the first of a reactor turn; later ones in the same turn at its end),
through Twisted's real TCP transport over a fake socket (no network), and fall back to
Twisted's buffer when the socket is full.

The client is a bare pyOpenSSL connection on memory BIOs, pumped by hand.
"""

from __future__ import annotations

from fake_socket import FakeSocket, fake_server, writing
from OpenSSL import SSL
from tls_helpers import PKI, demo_root, raw_client_context
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.resource import Site
from coaptcp.transport.eager import unsent_bytes
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.tls.settings import ServerTLSSettings
from coaptcp.transport.tls.transport import CoapTLSTransport, tls_server_factory


def messages(data: bytes) -> list[Message]:
    decoder = StreamDecoder(1 << 20)
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


class Client:
    """A TLS client on memory BIOs; ``exchange`` hands its output to the server."""

    def __init__(self, pki: PKI) -> None:
        self.tls = SSL.Connection(raw_client_context(pki.ca, [b"coap"]), None)
        self.tls.set_tlsext_host_name(b"localhost")
        self.tls.set_connect_state()
        self.plain = b""

    def output(self) -> bytes:
        try:
            return self.tls.bio_read(1 << 20)
        except SSL.WantReadError:
            return b""

    def input(self, data: bytes) -> None:
        if data:
            self.tls.bio_write(data)
        try:
            self.tls.do_handshake()
        except SSL.WantReadError:
            return
        while True:
            try:
                self.plain += self.tls.recv(1 << 16)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                return


def server(
    pki: PKI, sock: FakeSocket, clock: MemoryReactorClock | None = None
) -> tuple[CoapTLSTransport, tcp.Server]:
    clock = clock if clock is not None else MemoryReactorClock()
    settings = ServerTLSSettings(certificate=pki.server, private_key=pki.server_key)
    factory = tls_server_factory(CoapFactory(Site(demo_root()), reactor=clock), settings,
                                 clock=clock)
    protocol = factory.buildProtocol(None)
    assert isinstance(protocol, CoapTLSTransport)
    transport = fake_server(sock, protocol, clock)
    protocol.makeConnection(transport)
    return protocol, transport


def end_of_turn(transport: tcp.Server) -> None:
    transport.reactor.advance(0)  # type: ignore[attr-defined]


def handshake(client: Client, protocol: CoapTLSTransport, sock: FakeSocket) -> None:
    client.input(b"")
    for _ in range(4):
        out = client.output()
        if out:
            protocol.dataReceived(out)
        client.input(sock.take())
        end_of_turn(protocol.transport)  # type: ignore[arg-type]
        if protocol._handshakeDone and client.plain:
            return
    raise AssertionError("the handshake did not finish")


def test_handshake_flights_and_answers_are_sent_at_once(pki: PKI) -> None:
    sock = FakeSocket()
    protocol, transport = server(pki, sock)
    client = Client(pki)
    handshake(client, protocol, sock)
    # The server's flights and its CSM went straight to the socket: Twisted never had
    # to wait for the reactor to write them.
    assert [m.code for m in messages(client.plain)] == [Code.CSM]
    assert not writing(transport) and unsent_bytes(transport) == 0
    client.plain = b""
    client.tls.send(
        encode_frame(Message(Code.CSM))
        + encode_frame(Message(Code.GET, b"\x07", Options.build(uri_path=["whoami"])))
    )
    protocol.dataReceived(client.output())
    client.input(sock.take())  # in this very call: no reactor turn
    (answer,) = messages(client.plain)
    assert answer.code == Code.CONTENT and answer.token == b"\x07"
    assert not writing(transport)


def test_a_second_connection_in_the_same_turn_sends_at_its_end(pki: PKI) -> None:
    clock = MemoryReactorClock()
    ends = []
    for _ in range(2):
        sock = FakeSocket()
        protocol, transport = server(pki, sock, clock)
        client = Client(pki)
        handshake(client, protocol, sock)
        client.plain = b""
        ends.append((sock, protocol, transport, client))
    for _, protocol, _, client in ends:
        client.tls.send(
            encode_frame(Message(Code.CSM))
            + encode_frame(Message(Code.GET, b"\x09", Options.build(uri_path=["whoami"])))
        )
        protocol.dataReceived(client.output())
    (first, *_), (second, _, second_transport, _) = ends
    assert first.wire() and not second.wire()  # the first at once, the second held
    assert unsent_bytes(second_transport) > 0 and not writing(second_transport)
    clock.advance(0)  # the end of the turn
    for sock, _, transport, client in ends:
        client.input(sock.take())
        (answer,) = messages(client.plain)
        assert answer.token == b"\x09" and not writing(transport)


def test_a_full_socket_hands_the_ciphertext_to_twisted(pki: PKI) -> None:
    sock = FakeSocket()
    protocol, transport = server(pki, sock)
    client = Client(pki)
    handshake(client, protocol, sock)
    client.plain = b""
    sock.room = 5
    client.tls.send(
        encode_frame(Message(Code.CSM))
        + encode_frame(Message(Code.GET, b"\x08", Options.build(uri_path=["whoami"])))
    )
    protocol.dataReceived(client.output())
    assert len(sock.wire()) == 5 and unsent_bytes(transport) > 0 and writing(transport)
    sock.room = None
    transport.doWrite()
    client.input(sock.take())
    (answer,) = messages(client.plain)
    assert answer.token == b"\x08" and not writing(transport)


def request(token: bytes) -> bytes:
    return encode_frame(Message(Code.GET, token, Options.build(uri_path=["whoami"])))


def opened(pki: PKI) -> tuple[CoapTLSTransport, tcp.Server, FakeSocket, Client]:
    sock = FakeSocket()
    protocol, transport = server(pki, sock)
    client = Client(pki)
    handshake(client, protocol, sock)
    client.plain = b""
    client.tls.send(encode_frame(Message(Code.CSM)))
    protocol.dataReceived(client.output())
    return protocol, transport, sock, client


def test_records_split_over_reads_and_many_in_one_read_are_all_read(pki: PKI) -> None:
    # The receive loop stops when OpenSSL holds nothing more: not before a record's
    # second half arrives, not before the last of many records is read.
    protocol, _, sock, client = opened(pki)
    client.tls.send(request(b"\x01"))
    record = client.output()
    protocol.dataReceived(record[:7])
    protocol.dataReceived(record[7:])
    for token in (b"\x02", b"\x03", b"\x04"):
        client.tls.send(request(token))  # one record each
    protocol.dataReceived(client.output())
    end_of_turn(protocol.transport)  # type: ignore[arg-type]
    client.input(sock.take())
    assert [m.token for m in messages(client.plain)] == [b"\x01", b"\x02", b"\x03", b"\x04"]


def test_the_peers_close_notify_is_answered_and_closes(pki: PKI) -> None:
    protocol, transport, sock, client = opened(pki)
    client.tls.shutdown()
    protocol.dataReceived(client.output())
    end_of_turn(transport)
    assert protocol._lostTLSConnection
    client.input(sock.take())  # our close_notify came back
    assert client.tls.get_shutdown() & SSL.RECEIVED_SHUTDOWN


def test_a_corrupted_record_ends_the_tls_connection(pki: PKI) -> None:
    protocol, transport, _, client = opened(pki)
    client.tls.send(request(b"\x05"))
    record = bytearray(client.output())
    record[-1] ^= 0xFF  # the record's authentication tag no longer matches
    protocol.dataReceived(bytes(record))
    assert protocol._lostTLSConnection
    assert transport.disconnecting or not transport.connected
