"""Hostile WebSocket peers, and connections that never finish a handshake, against the real
``twistd coaptcp`` over loopback sockets (issue 12, items 3 and 5).

One server serves the module: coap+tcp, coap+ws and coaps+ws (``ssl:``) listeners, with a
one-second ``--ws-handshake-timeout`` and ``--frame-timeout``.  Handshakes dripped one byte
at a time, half sent, or a TLS connection that never says hello are closed (the timeout runs
from accept), while good clients are served meanwhile; a frame or a fragmented message that
never finishes gets an Abort with its diagnostic and the close; an invalid close code gets a
close frame with 1002 and a clean close, not a reset; WebSocket version 8 gets 426; the
listen backlog is the large default unless the description names one.

A second server runs with ``RLIMIT_NOFILE`` lowered to 256 (soft and hard): it serves at
most 128 connections, and 300 connections at once get answers (or a prompt close), never a
descriptor shortage.

Every wait is bounded by a socket timeout or a deadline; no test asserts how long anything
took.  The exact timeouts are tested in memory (tests/transport/websocket/test_ws_bounds.py,
test_ws_web_bounds.py).
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import childproc
import pytest
from hostile_server import Twistd, free_port, twistd
from hostile_wire import CONTENT, EMPTY_CSM, HELLO_TEXT, decode_all, get
from ws_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    Frame,
    coap,
    csm,
    frame,
    frame_header,
    handshake,
    parse_frames,
    parse_http,
)
from ws_wire import get as ws_get

from coaptcp.testing.certs import write_test_setup

pytestmark = pytest.mark.hostile

IO_TIMEOUT = 10.0  # seconds any single socket operation may block
DEADLINE = 20.0  # seconds a whole scenario may take before it fails


@dataclass
class Ports:
    tcp: int
    ws: int
    wss: int
    tcp_backlog_7: int


@dataclass
class WsServer:
    server: Twistd
    ports: Ports
    ca: Path


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsServer]:
    workdir = tmp_path_factory.mktemp("coaptcp-ws-hostile")
    pki = write_test_setup(workdir / "pki", ["localhost", "127.0.0.1"])
    ports = Ports(free_port(), free_port(), free_port(), free_port())
    args = [
        "--tcp", f"tcp:{ports.tcp}:interface=127.0.0.1",
        "--tcp", f"tcp:{ports.tcp_backlog_7}:interface=127.0.0.1:backlog=7",
        "--ws", f"tcp:{ports.ws}:interface=127.0.0.1",
        "--ws", f"ssl:{ports.wss}:interface=127.0.0.1:privateKey={pki['server_key']}"
        f":certKey={pki['server']}",
        "--ws-handshake-timeout", "1",
        "--frame-timeout", "1",
    ]
    with twistd(workdir, args, [ports.tcp, ports.ws, ports.wss]) as server:
        yield WsServer(server, ports, pki["ca"])


# -- clients ------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def recv_or_eof(sock: socket.socket) -> bytes:
    """One read; ``b""`` when the server has closed (a reset counts as closed too)."""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        pytest.fail(f"the server neither answered nor closed within {IO_TIMEOUT} s")


def read_until_eof(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything until the server closes, and whether it closed cleanly (FIN, no reset)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks), False
        except TimeoutError:
            pytest.fail(f"the server did not close within {IO_TIMEOUT} s")
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def coap_hello(port: int) -> list:
    """A coap+tcp client: CSM and GET /hello; the server's CSM and its answer."""
    with connect(port) as sock:
        sock.sendall(EMPTY_CSM + get("hello", b"\x42"))
        return read_answer(sock)


def read_answer(sock: socket.socket) -> list:
    """The server's first two messages (our CSM and an answer), or fewer if it closed."""
    data = b""
    while True:
        messages, _ = decode_all(data)
        if len(messages) >= 2:
            return messages
        chunk = recv_or_eof(sock)
        if not chunk:
            return messages
        data += chunk


def assert_coap_served(port: int) -> None:
    messages = coap_hello(port)
    assert len(messages) == 2 and int(messages[1].code) == CONTENT, messages
    assert messages[1].payload == HELLO_TEXT


def ws_open(sock: socket.socket) -> list[Frame]:
    """Upgrade, send our CSM, return the frames after the 101 (the server's CSM)."""
    sock.sendall(handshake())
    data = b""
    while (response := parse_http(data)) is None:
        chunk = recv_or_eof(sock)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    assert response.status == 101, response
    sock.sendall(coap(csm()))
    rest = response.body_and_rest
    while not (found := parse_frames(rest)[0]):
        rest += recv_or_eof(sock)
    assert found[0].coap().code.dotted == "7.01"
    return found


def frames_until_eof(sock: socket.socket) -> tuple[list[Frame], bool]:
    data, clean = read_until_eof(sock)
    frames, _ = parse_frames(data)
    return frames, clean


def wss_connect(ws: WsServer) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ws.ca))
    return context.wrap_socket(connect(ws.ports.wss), server_hostname="localhost")


def assert_ws_served(sock: socket.socket) -> None:
    ws_open(sock)
    sock.sendall(coap(ws_get(b"w", "hello")))
    data = b""
    while not (frames := parse_frames(data)[0]):
        chunk = recv_or_eof(sock)
        assert chunk, "closed before answering"
        data += chunk
    assert frames[0].coap().payload == HELLO_TEXT


def wait_until_all_closed(socks: list[socket.socket], feed: bytes | None = None) -> list[bytes]:
    """Until the server has closed every socket; with ``feed``, each open one is sent its
    next byte of ``feed`` on every round (a handshake dripped one byte at a time).
    Returns what each received (all of it before the close)."""
    received = [b""] * len(socks)
    sent = [0] * len(socks)
    open_ = set(range(len(socks)))
    deadline = time.monotonic() + DEADLINE
    while open_:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(open_)} of {len(socks)} connections still open")
        if feed is not None:
            for index in list(open_):
                if sent[index] < len(feed):
                    try:
                        socks[index].send(feed[sent[index] : sent[index] + 1])
                        sent[index] += 1
                    except OSError:  # the server has closed it: the read below says so
                        pass
        readable, _, _ = select.select([socks[i] for i in open_], [], [], 0.05)
        for sock in readable:
            index = socks.index(sock)
            chunk = recv_or_eof(sock)
            if chunk:
                received[index] += chunk
            else:
                open_.discard(index)
    if feed is not None:
        assert max(sent) < len(feed), "a dripped handshake was completed before the close"
    return received


# -- slow handshakes ---------------------------------------------------------------------


def test_good_clients_are_served(ws_server: WsServer) -> None:
    assert_coap_served(ws_server.ports.tcp)
    with connect(ws_server.ports.ws) as sock:
        assert_ws_served(sock)
    with wss_connect(ws_server) as sock:
        assert_ws_served(sock)


def test_dripping_handshakes_are_closed_while_others_are_served(ws_server: WsServer) -> None:
    drippers = [connect(ws_server.ports.ws) for _ in range(100)]
    try:
        for sock in drippers:
            sock.send(b"G")
        # Meanwhile the server serves everyone else.
        assert_coap_served(ws_server.ports.tcp)
        with connect(ws_server.ports.ws) as sock:
            assert_ws_served(sock)
        received = wait_until_all_closed(drippers, feed=handshake())
    finally:
        for sock in drippers:
            sock.close()
    assert received == [b""] * len(drippers)  # closed unanswered
    assert_coap_served(ws_server.ports.tcp)


def test_half_sent_and_silent_handshakes_are_closed(ws_server: WsServer) -> None:
    silent = [connect(ws_server.ports.ws) for _ in range(20)]
    half = [connect(ws_server.ports.ws) for _ in range(20)]
    for sock in half:
        sock.sendall(handshake()[:40])
    try:
        assert wait_until_all_closed(silent + half) == [b""] * 40
    finally:
        for sock in silent + half:
            sock.close()


def test_tls_connections_that_never_finish_their_handshake_are_closed(ws_server: WsServer) -> None:
    silent = [connect(ws_server.ports.wss) for _ in range(10)]
    context = ssl.create_default_context(cafile=str(ws_server.ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        context.wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    client_hello = outgoing.read()
    half = [connect(ws_server.ports.wss) for _ in range(10)]
    for sock in half:
        sock.sendall(client_hello[: len(client_hello) // 2])
    # A TLS connection whose HTTP request never comes is the same case one layer up.
    no_request = [wss_connect(ws_server) for _ in range(5)]
    try:
        with wss_connect(ws_server) as good:
            assert_ws_served(good)
        wait_until_all_closed(silent + half)
        for sock in no_request:
            assert read_until_eof(sock)[0] == b""
    finally:
        for sock in silent + half + no_request:
            sock.close()


def test_websocket_version_8_gets_426(ws_server: WsServer) -> None:
    with connect(ws_server.ports.ws) as sock:
        sock.sendall(handshake().replace(b"Version: 13", b"Version: 8"))
        data, _ = read_until_eof(sock)
    response = parse_http(data)
    assert response is not None and response.status == 426, data
    assert response.headers["sec-websocket-version"] == "13"


# -- frames and close codes ----------------------------------------------------------------


@pytest.mark.parametrize("code", [999, 1005, 1006, 1015, 5000])
def test_invalid_close_code_gets_a_1002_close_frame_and_a_clean_close(
    ws_server: WsServer, code: int
) -> None:
    with connect(ws_server.ports.ws) as sock:
        ws_open(sock)
        sock.sendall(frame(struct.pack("!H", code), OP_CLOSE))
        frames, clean = frames_until_eof(sock)
    assert [f.opcode for f in frames] == [OP_CLOSE]
    assert frames[0].close_code == 1002
    assert clean, "the server reset the connection instead of closing it"


def trickle_until_answered(sock: socket.socket, piece: bytes) -> tuple[Frame, Frame]:
    """Send ``piece`` every 0.3 s until the server answers; its first two frames."""
    sock.settimeout(0.3)
    data = b""
    deadline = time.monotonic() + DEADLINE
    while not parse_frames(data)[0]:
        assert time.monotonic() < deadline, "no answer to a frame or message that never ends"
        sock.sendall(piece)
        try:
            data += sock.recv(65536)
        except TimeoutError:
            pass
    sock.settimeout(IO_TIMEOUT)
    while len(parse_frames(data)[0]) < 2:
        data += recv_or_eof(sock)
    first, second = parse_frames(data)[0][:2]
    return first, second


@pytest.mark.parametrize("port_name", ["ws", "wss"])
def test_a_frame_trickling_in_gets_abort_then_close(ws_server: WsServer, port_name: str) -> None:
    sock = wss_connect(ws_server) if port_name == "wss" else connect(ws_server.ports.ws)
    with sock:
        ws_open(sock)
        sock.sendall(frame_header(60_000))
        abort, close = trickle_until_answered(sock, b"\x00")  # one byte of the frame
    assert abort.opcode == OP_BINARY and abort.coap().code.dotted == "7.05"
    assert abort.coap().payload == b"a WebSocket frame took longer than 1 s to arrive"
    assert close.opcode == OP_CLOSE and close.close_code == 1002


def test_a_fragmented_message_never_finished_gets_abort_then_close(ws_server: WsServer) -> None:
    with connect(ws_server.ports.ws) as sock:
        ws_open(sock)
        sock.sendall(frame(b"\x01", OP_BINARY, fin=False))
        abort, close = trickle_until_answered(sock, frame(b"", OP_CONTINUATION, fin=False))
    assert abort.coap().payload == (
        b"a fragmented WebSocket message took longer than 1 s to finish"
    )
    assert close.close_code == 1002


# -- the listen backlog ----------------------------------------------------------------------


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as ``ss`` shows it (Send-Q)."""
    try:
        output = childproc.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True,
            timeout=IO_TIMEOUT,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("ss (iproute2) is not available")
    (line,) = output.splitlines()
    return int(line.split()[2])


def test_listeners_have_the_large_default_backlog(ws_server: WsServer) -> None:
    with open("/proc/sys/net/core/somaxconn") as f:
        somaxconn = int(f.read())
    expected = min(1024, somaxconn)
    assert listen_backlog(ws_server.ports.tcp) == expected
    assert listen_backlog(ws_server.ports.ws) == expected
    assert listen_backlog(ws_server.ports.wss) == expected
    assert listen_backlog(ws_server.ports.tcp_backlog_7) == 7  # as the description says


def test_zz_server_log(ws_server: WsServer) -> None:
    log = ws_server.server.log()
    assert "handshake did not finish within 1 s of being accepted" in log
    assert "invalid close code 999" in log


# -- a lowered descriptor limit ---------------------------------------------------------------

NOFILE = 256
CAPPED = NOFILE - 64 - 64  # what fit_descriptor_limit leaves for connections


def test_the_descriptor_limit_caps_connections_before_it_runs_out(tmp_path: Path) -> None:
    tcp, ws = free_port(), free_port()
    args = [
        "--tcp", f"tcp:{tcp}:interface=127.0.0.1",
        "--ws", f"tcp:{ws}:interface=127.0.0.1",
        "--ws-handshake-timeout", "5",
    ]
    with twistd(tmp_path, args, [tcp, ws], nofile=NOFILE) as server:
        assert f"Serving at most {CAPPED} connections, not 20000" in server.log()
        holders = [connect(ws) for _ in range(CAPPED)]
        extra = []
        try:
            # The next connection on the same port is accepted after all of them: it is
            # over the limit, and told so.
            with connect(ws) as over:
                data, _ = read_until_eof(over)
            response = parse_http(data)
            assert response is not None and response.status == 503, data
            assert f"more than {CAPPED} connections".encode() in data
            # 300 coap+tcp clients at once, more than the descriptors left: each one gets
            # our CSM and an Abort, or (far over the limit) a prompt close; none waits.
            extra = [connect(tcp) for _ in range(300)]
            for sock in extra:
                try:
                    sock.sendall(EMPTY_CSM + get("hello", b"\x42"))
                except (ConnectionResetError, BrokenPipeError):
                    pass  # closed at once, far over the limit
            outcomes = {"refused": 0, "served": 0, "closed": 0}
            for sock in extra:
                messages = read_answer(sock)
                if not messages:
                    outcomes["closed"] += 1
                elif messages[1].code.dotted == "2.05":
                    outcomes["served"] += 1  # a place freed meanwhile (the port probes')
                else:
                    assert [m.code.dotted for m in messages] == ["7.01", "7.05"], messages
                    assert messages[1].payload == (
                        f"server busy: more than {CAPPED} connections".encode()
                    )
                    outcomes["refused"] += 1
            assert outcomes["refused"] > 0 and outcomes["served"] <= 2, outcomes
            held = server.open_descriptors()
            assert held is None or held < NOFILE
            # Once the holders' handshake time is up, new clients are served again.
            wait_until_all_closed(holders)
            assert_coap_served(tcp)
        finally:
            for sock in holders + extra:
                sock.close()
        log = server.log()
    assert "Refusing connections: server busy" in log
    assert "EMFILE" not in log and "Too many open files" not in log
