"""Hostile TLS peers against the real ``twistd coaptcp --tls`` over loopback sockets.

Garbage instead of a ClientHello, half a ClientHello, and a connection that never starts
its handshake must cost the server nothing lasting: it closes them (garbage at once; the
stalled ones after ``--tls-handshake-timeout``, one second here) and keeps serving good TLS
clients meanwhile.  The exact timeout is tested in memory (tests/transport/tls/test_tls_memory.py);
here every wait is only bounded by a socket timeout.  At the end the server's log must show
no traceback.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_server import free_port, twistd
from hostile_wire import Server, open_connection
from hostile_wire import read_until_eof as wire_read_until_eof

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.testing.certs import write_test_setup

pytestmark = pytest.mark.hostile

IO_TIMEOUT = 10.0  # seconds any single socket operation may block
HANDSHAKE_TIMEOUT = "1"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """``python -m twisted coaptcp --tls`` (the installed package) and its CA file."""
    workdir = tmp_path_factory.mktemp("coaptcp-tls-server")
    paths = write_test_setup(workdir / "pki", ["localhost", "127.0.0.1"])
    port = free_port()
    args = ["--tls", f"tcp:{port}:interface=127.0.0.1",
            "--certificate", str(paths["server"]), "--private-key", str(paths["server_key"]),
            "--tls-handshake-timeout", HANDSHAKE_TIMEOUT]
    with twistd(workdir, args, [port]) as server:
        yield Server(port, server.process, server.log_path), paths["ca"]


def raw_connection(server: Server) -> socket.socket:
    return open_connection(server.port, IO_TIMEOUT)


def read_until_eof(sock: socket.socket) -> bytes:
    return wire_read_until_eof(sock, reset_is_eof=True)


def get_hello(server: Server, ca: Path) -> Message:
    """A well-behaved coaps+tcp client: handshake, CSM, GET /hello; the response."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["coap"])
    with raw_connection(server) as plain, context.wrap_socket(
        plain, server_hostname="localhost"
    ) as tls:
        assert tls.selected_alpn_protocol() == "coap"
        tls.sendall(
            encode_frame(Message(Code.CSM))
            + encode_frame(Message(Code.GET, b"\x42", Options.build(uri_path=["hello"])))
        )
        decoder = StreamDecoder(1 << 20)
        messages: list[Message] = []
        while len(messages) < 2:
            chunk = tls.recv(65536)
            assert chunk, f"server closed after {messages}"
            decoder.feed(chunk)
            while (message := decoder.next_message()) is not None:
                messages.append(message)
    csm, response = messages[:2]
    assert csm.code == Code.CSM
    return response


def assert_serves(server: Server, ca: Path) -> None:
    response = get_hello(server, ca)
    assert response.code == Code.CONTENT
    assert response.token == b"\x42"
    assert response.payload == b"Hello, world!"


def test_good_client_is_served(tls_server: tuple[Server, Path]) -> None:
    assert_serves(*tls_server)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        encode_frame(Message(Code.CSM)),  # plain CoAP over TCP on the TLS port
        b"\x16\x03\x01\xff\xff" + bytes(range(256)) * 4,  # a record header lying about length
        bytes(range(256)),
    ],
    ids=["http", "plain-coap", "bogus-record", "bytes"],
)
def test_garbage_instead_of_client_hello_is_closed(tls_server: tuple[Server, Path],
                                                   garbage: bytes) -> None:
    server, ca = tls_server
    with raw_connection(server) as sock:
        sock.sendall(garbage)
        reply = read_until_eof(sock)
    # At most a TLS alert comes back, never CoAP (no CSM in the clear).
    assert not reply or reply[0] == 0x15, reply[:20]
    assert_serves(server, ca)


def test_stalled_handshakes_do_not_block_others_and_are_closed(tls_server: tuple[Server, Path]
                                                               ) -> None:
    server, ca = tls_server
    silent = raw_connection(server)
    hello_context = ssl.create_default_context(cafile=str(ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    half = hello_context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        half.do_handshake()
    client_hello = outgoing.read()
    partial = raw_connection(server)
    partial.sendall(client_hello[: len(client_hello) // 2])
    try:
        # Both handshakes stall; a good client is still served meanwhile.
        assert_serves(server, ca)
        # Then the server drops both (after its 1 s handshake timeout).
        assert read_until_eof(silent) == b""
        assert read_until_eof(partial) == b""
    finally:
        silent.close()
        partial.close()
    assert_serves(server, ca)
    assert "did not finish within 1.0 s" in server.log()
