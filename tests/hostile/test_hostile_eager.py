"""Eager writes (coaptcp.transport.eager) over real sockets, on every POSIX reactor.

The server sends its answers from the receive path when Twisted holds nothing unsent
for the connection, and leaves the rest to Twisted.  Here a client with a small receive
window pipelines large and small answers, so that sends are partial, Twisted's buffer
fills, the producer is paused and resumed, and small answers come while large ones are
still buffered: each answer must arrive whole, once, in order, over coap+tcp, coaps+tcp
and coap+ws, with the epoll, poll and select reactors (``twist --reactor``).  Socket
timeouts only bound how long an answer that must come may take.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_server import free_port, twistd
from hostile_wire import CONTENT, CSM, HELLO_TEXT, frame, get, option_bytes
from ws_wire import coap, csm, handshake, parse_frames, parse_http

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.testing.certs import write_test_setup

pytestmark = pytest.mark.hostile

MIB = 1024 * 1024
IO_TIMEOUT = 30.0  # seconds one recv may wait on a loaded machine
BIG = 8  # 1 MiB answers in each pipeline
SMALL = 200  # "Hello, world!" answers between them


class Running:
    def __init__(self, tcp: int, tls: int, ws: int, ca: Path) -> None:
        self.tcp, self.tls, self.ws, self.ca = tcp, tls, ws, ca


@pytest.fixture(scope="module", params=["epoll", "poll", "select"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp(f"eager-{request.param}")
    paths = write_test_setup(workdir / "pki", ["localhost", "127.0.0.1"])
    tcp, tls, ws = free_port(), free_port(), free_port()
    args = ["--tcp", f"tcp:{tcp}:interface=127.0.0.1",
            "--tls", f"tcp:{tls}:interface=127.0.0.1",
            "--certificate", str(paths["server"]), "--private-key", str(paths["server_key"]),
            "--ws", f"tcp:{ws}:interface=127.0.0.1"]
    with twistd(workdir, args, [tcp, tls, ws], reactor=request.param):
        yield Running(tcp, tls, ws, paths["ca"])


def pipeline() -> tuple[list[str], bytes]:
    """Paths in the order asked, big and small interleaved; tokens are the indices."""
    paths = []
    for _ in range(BIG):
        paths.append("big")
        paths += ["hello"] * (SMALL // BIG)
    return paths, b"".join(get(path, n.to_bytes(2, "big")) for n, path in enumerate(paths))


def tcp_csm(max_message_size: int) -> bytes:
    size = max_message_size.to_bytes(4, "big").lstrip(b"\0")
    return frame(CSM, b"", option_bytes([(2, size)]))


def connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    sock.settimeout(IO_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


def read_messages(recv: object, count: int) -> list[Message]:
    decoder = StreamDecoder(1 << 30)
    out: list[Message] = []
    while len(out) < count:
        message = decoder.next_message()
        if message is not None:
            out.append(message)
            continue
        data = recv(4096)  # type: ignore[operator]
        assert data, f"closed after {len(out)} of {count} messages"
        decoder.feed(data)
    return out


def check(paths: list[str], messages: list[Message]) -> None:
    assert messages[0].code == CSM
    answers = messages[1:]
    assert [int.from_bytes(m.token, "big") for m in answers] == list(range(len(paths)))
    for path, answer in zip(paths, answers, strict=True):
        assert answer.code == CONTENT
        if path == "big":
            assert len(answer.payload) == MIB
        else:
            assert answer.payload == HELLO_TEXT


def test_coap_tcp(server: Running) -> None:
    paths, requests = pipeline()
    with connect(server.tcp) as sock:
        sock.sendall(tcp_csm(4 * MIB) + requests)
        check(paths, read_messages(sock.recv, len(paths) + 1))


def test_coaps_tcp(server: Running) -> None:
    paths, requests = pipeline()
    context = ssl.create_default_context(cafile=str(server.ca))
    context.set_alpn_protocols(["coap"])
    with connect(server.tls) as plain, context.wrap_socket(
        plain, server_hostname="localhost"
    ) as sock:
        sock.sendall(tcp_csm(4 * MIB) + requests)
        check(paths, read_messages(sock.recv, len(paths) + 1))


def test_coap_ws(server: Running) -> None:
    paths, _ = pipeline()
    requests = coap(csm(4 * MIB)) + b"".join(
        coap(Message(Code.GET, n.to_bytes(2, "big"), Options.build(uri_path=[path])))
        for n, path in enumerate(paths)
    )
    with connect(server.ws) as sock:
        sock.sendall(handshake())  # RFC 6455 section 4.1: frames only after the 101
        data = b""
        while (response := parse_http(data)) is None:
            chunk = sock.recv(4096)
            assert chunk, "closed during the handshake"
            data += chunk
        assert response.status == 101
        sock.sendall(requests)
        rest = response.body_and_rest
        messages: list[Message] = []
        while len(messages) < len(paths) + 1:
            frames, rest = parse_frames(rest)
            messages += [f.coap() for f in frames]
            if len(messages) < len(paths) + 1:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(messages)} messages"
                rest += chunk
        check(paths, messages)
