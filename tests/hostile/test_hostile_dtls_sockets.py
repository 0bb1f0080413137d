"""Hostile DTLS peers against the real ``python -m twisted coaptcp --dtls`` over loopback.

A ClientHello flood from many source ports is answered with HelloVerifyRequests and keeps
nothing (RFC 6347 section 4.2.1); garbage datagrams get no answer; handshakes that stop
after the cookie are bounded per host and time out (``--tls-handshake-timeout 1``); a good
client from another address keeps being served throughout.  The exact bounds and timeouts
are tested in memory (tests/transport/dtls/test_dtls_memory.py); here every wait is bounded
by a socket timeout or a deadline.  The server's log must show no traceback.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import childproc
import pytest
from hostile_server import free_port, twistd
from hostile_wire import Server
from OpenSSL import SSL

from coaptcp.transport.tls.psk import use_psk_client
from coaptcp.transport.tls.settings import PSK_CIPHERS

pytestmark = pytest.mark.hostile

IO_TIMEOUT = 10.0
ATTACKER = "127.0.0.2"  # loopback too, but another host for the per-host bounds


@pytest.fixture(scope="module")
def dtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("coaptcp-dtls-server")
    keys = workdir / "keys.txt"
    keys.write_text("gateway text:battery staple\n")
    port = free_port()
    args = ["--tcp", f"tcp:{port}:interface=127.0.0.1", "--dtls", f"udp:{port}",
            "--psk-file", str(keys), "--tls-handshake-timeout", "1"]
    with twistd(workdir, args, [port], pythonpath=os.environ.get("PYTHONPATH")) as server:
        yield Server(port, server.process, server.log_path)


def client_connection() -> SSL.Connection:
    context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    context.set_cipher_list(PSK_CIPHERS.encode())
    use_psk_client(context, b"gateway", b"battery staple")
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    return connection


def flight(connection: SSL.Connection) -> bytes:
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(IO_TIMEOUT)
    return sock


def is_hello_verify_request(datagram: bytes) -> bool:
    return len(datagram) > 13 and datagram[0] == 22 and datagram[13] == 3


def good_client_works(server: Server) -> None:
    result = childproc.run(
        ["coap-client-openssl", "-B", "10", "-u", "gateway", "-k", "battery staple",
         f"coaps://127.0.0.1:{server.port}/hello"],
        capture_output=True, timeout=30,
    )
    assert result.stdout.strip() == b"Hello, world!", result.stderr


def half_handshake(server: Server) -> socket.socket:
    """Get past the cookie from ATTACKER, then fall silent."""
    sock = udp_socket(ATTACKER)
    connection = client_connection()
    sock.sendto(flight(connection), ("127.0.0.1", server.port))
    verify = sock.recv(65536)
    assert is_hello_verify_request(verify)
    connection.bio_write(verify)
    sock.sendto(flight(connection), ("127.0.0.1", server.port))
    return sock


def wait_for_log(server: Server, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 20
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.1)
    return server.log()


def test_client_hello_flood_is_answered_statelessly(dtls_server: Server) -> None:
    hello = flight(client_connection())
    sockets = [udp_socket(ATTACKER) for _ in range(300)]
    try:
        for start in range(0, len(sockets), 20):  # in bursts the socket buffer holds
            burst = sockets[start:start + 20]
            for sock in burst:
                sock.sendto(hello, ("127.0.0.1", dtls_server.port))
            for sock in burst:
                assert is_hello_verify_request(sock.recv(65536))
    finally:
        for sock in sockets:
            sock.close()
    good_client_works(dtls_server)
    assert "max_handshakes" not in dtls_server.log()  # none of them became a handshake


def test_garbage_gets_no_answer(dtls_server: Server) -> None:
    with udp_socket(ATTACKER) as sock:
        for junk in (b"\x00", b"\x16\xfe\xfd" + b"\xff" * 100, b"\x17\xfe\xfd" + b"\0" * 40,
                     b"\x40\x01\x00\x01", os.urandom(1200)):
            sock.sendto(junk, ("127.0.0.1", dtls_server.port))
        sock.sendto(flight(client_connection()), ("127.0.0.1", dtls_server.port))
        # the first answer on this socket is the HelloVerifyRequest: the garbage got none
        assert is_hello_verify_request(sock.recv(65536))
    good_client_works(dtls_server)


def test_half_finished_handshakes_are_bounded_and_time_out(dtls_server: Server) -> None:
    stalled = [half_handshake(dtls_server) for _ in range(12)]
    try:
        log = wait_for_log(dtls_server, "max_handshakes_per_host reached")
        good_client_works(dtls_server)  # another host is not affected
        log = wait_for_log(dtls_server, "dropped: the handshake timed out", 8)
        assert log.count("dropped: the handshake timed out") >= 8
        # the bound is free again: a new half handshake from the attacker gets in
        stalled.append(half_handshake(dtls_server))
        wait_for_log(dtls_server, "dropped: the handshake timed out", 9)
    finally:
        for sock in stalled:
            sock.close()
    good_client_works(dtls_server)
    assert "Traceback" not in log



def handshake(sock: socket.socket, server: Server) -> tuple[SSL.Connection, bytes]:
    """A PSK handshake from ``sock``; returns the connection and the ClientHello that
    carried the cookie (what an attacker on the path would capture and replay)."""
    target = ("127.0.0.1", server.port)
    connection = client_connection()
    sock.sendto(flight(connection), target)
    connection.bio_write(sock.recv(65536))
    hello = flight(connection)
    sock.sendto(hello, target)
    while True:
        connection.bio_write(sock.recv(65536))
        try:
            connection.do_handshake()
        except SSL.WantReadError:
            try:
                sock.sendto(connection.bio_read(65536), target)
            except SSL.WantReadError:  # nothing to send yet: more of the flight to come
                pass
            continue
        return connection, hello


def get_hello(sock: socket.socket, server: Server, connection: SSL.Connection,
              message_id: int) -> bytes:
    """A CON GET /hello over ``connection``; the payload of the answer."""
    request = bytes([0x41, 0x01]) + message_id.to_bytes(2, "big") + b"\x99\xb5hello"
    connection.send(request)
    sock.sendto(connection.bio_read(65536), ("127.0.0.1", server.port))
    while True:
        datagram = sock.recv(65536)
        if datagram[0] != 23:  # handshake records answering the replay: not for us
            continue
        connection.bio_write(datagram)
        try:
            answer = connection.recv(65536)
        except SSL.WantReadError:
            continue
        assert answer[1] == 0x45 and answer[2:4] == request[2:4], answer  # 2.05, same MID
        return answer.split(b"\xff", 1)[1]


def test_a_replayed_client_hello_leaves_the_session_serving(dtls_server: Server) -> None:
    with udp_socket() as sock:
        connection, hello = handshake(sock, dtls_server)
        assert get_hello(sock, dtls_server, connection, 0x1234) == b"Hello, world!"
        for _ in range(5):  # the replay comes from the client's own address
            sock.sendto(hello, ("127.0.0.1", dtls_server.port))
        assert get_hello(sock, dtls_server, connection, 0x1235) == b"Hello, world!"
        port = sock.getsockname()[1]
    log = dtls_server.log()
    assert f"DTLS session with ('127.0.0.1', {port}) dropped" not in log
    assert "Traceback" not in log
