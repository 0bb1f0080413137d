"""The installed ``coaptcp-client`` script and the Client library against real servers.

End to end over loopback: our CLI and library against ``twistd coaptcp`` (the installed
plugin), libcoap 4.3.1's ``coap-server-openssl`` and an aiocoap 0.4.17 server, all over
coap+tcp.  Output bytes and exit codes are checked; no run may print a traceback.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from peers import (
    COMMAND_TIMEOUT,
    HERE,
    Completed,
    RunningPeer,
    cli_path,
    coaptcp_server_argv,
    free_port,
    run,
    run_server,
    twistd_path,
)

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.tap.demo import LargeResource

pytestmark = pytest.mark.interop


def cli(*args: str, stdin: bytes | None = None) -> Completed:
    result = run([cli_path(), *args], stdin=stdin)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def uri_client(*args: str) -> dict[str, object]:
    result = run([sys.executable, str(HERE / "coaptcp_uri_client.py"), *args])
    assert result.returncode == 0, result.stderr.decode()
    report: dict[str, object] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


def at(peer: RunningPeer, path: str = "/", host: str = "127.0.0.1") -> str:
    return f"coap+tcp://{host}:{peer.port}{path}"


def one_line(result: Completed) -> str:
    text = result.stderr.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text[:-1]


# -- the CLI against our own server -----------------------------------------------------------


def test_cli_get(coaptcp_server: RunningPeer) -> None:
    result = cli(at(coaptcp_server, "/hello"))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Hello, world!", b"")


def test_cli_large_response(coaptcp_server: RunningPeer) -> None:
    result = cli(at(coaptcp_server, "/large"))
    assert result.returncode == 0
    assert result.stdout == LargeResource.body  # 4,000 bytes, above the base 1,152


def test_cli_pretty_json(coaptcp_server: RunningPeer) -> None:
    result = cli("--pretty", at(coaptcp_server, "/info"))
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.startswith('{\n  "server": "coaptcp ')
    info = json.loads(text)
    assert info["host"] == "127.0.0.1"  # an IP literal: no Uri-Host, the default applies


def test_cli_sends_uri_host_for_a_name(coaptcp_server: RunningPeer) -> None:
    result = cli(at(coaptcp_server, "/info", host="localhost"))
    assert result.returncode == 0
    assert json.loads(result.stdout)["host"] == "localhost"


def test_cli_pretty_link_format(coaptcp_server: RunningPeer) -> None:
    result = cli("--pretty", at(coaptcp_server, "/.well-known/core"))
    lines = result.stdout.decode().splitlines()
    assert '</hello>;rt="demo.hello";ct=0;title="Greeting"' in lines
    assert all(line.startswith("</") for line in lines)


def test_cli_pretty_by_default_on_a_terminal(coaptcp_server: RunningPeer) -> None:
    # stdout is a pseudo-terminal: JSON comes out indented without asking for it.
    controller, terminal = pty.openpty()
    try:
        process = childproc.popen([cli_path(), at(coaptcp_server, "/info")],
                                   stdout=terminal, stderr=subprocess.PIPE)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        os.close(controller)
    assert process.returncode == 0, err.decode()
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert text.startswith('{\n  "server": "coaptcp ')
    assert text.endswith("}\n")


def test_cli_raw_output_is_exact(coaptcp_server: RunningPeer) -> None:
    result = cli(at(coaptcp_server, "/info"))
    assert result.stdout.startswith(b'{"server":"coaptcp ')
    assert not result.stdout.endswith(b"\n")


def test_cli_put_post_and_stdin(coaptcp_server: RunningPeer, tmp_path: Path) -> None:
    store = at(coaptcp_server, "/store")
    put = cli("-m", "PUT", "-e", "written by coaptcp-client", store)
    assert (put.returncode, put.stderr) == (0, b"")
    assert cli(store).stdout == b"written by coaptcp-client"
    body = bytes(range(256)) * 3
    source = tmp_path / "body.bin"
    source.write_bytes(body)
    post = cli("-m", "post", "-f", str(source), store)
    assert post.returncode == 0
    assert post.stdout == b"stored 768 bytes"
    assert cli(store).stdout == body
    piped = cli("-m", "put", "-f", "-", store, stdin=b"from stdin\n")
    assert piped.returncode == 0
    assert cli(store).stdout == b"from stdin\n"
    at_file = cli("-m", "put", "-e", f"@{source}", store)
    assert at_file.returncode == 0
    assert cli(store).stdout == body


def test_cli_error_responses(coaptcp_server: RunningPeer) -> None:
    missing = cli(at(coaptcp_server, "/no/such/thing"))
    assert missing.returncode == 1
    assert missing.stdout == b""
    assert one_line(missing) == "coaptcp-client: 4.04 Not Found"
    not_allowed = cli("-m", "delete", at(coaptcp_server, "/hello"))
    assert not_allowed.returncode == 1
    assert one_line(not_allowed) == (
        "coaptcp-client: 4.05 Method Not Allowed: DELETE not allowed here; allowed: GET"
    )


def test_cli_verbose(coaptcp_server: RunningPeer) -> None:
    result = cli("-v", at(coaptcp_server, "/hello"))
    assert result.returncode == 0
    assert result.stdout == b"Hello, world!"
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"-> GET coap+tcp://127.0.0.1:{coaptcp_server.port}/hello"
    assert "   Uri-Path: 'hello'" in lines
    reply = next(line for line in lines if line.startswith("<- "))
    assert reply.startswith(f"<- 2.05 Content from coap+tcp://127.0.0.1:{coaptcp_server.port} in ")
    assert re.search(r" in [0-9.]+ ms( \(after connect [0-9.]+ ms[^)]*\))?$", reply), reply
    assert "   Content-Format: 0 (text/plain; charset=utf-8)" in lines
    assert "   (13 bytes of payload; peer Max-Message-Size 66048)" in lines


def test_cli_count_and_ping(coaptcp_server: RunningPeer) -> None:
    repeated = cli("-c", "4", at(coaptcp_server, "/hello"))
    assert repeated.returncode == 0
    assert repeated.stdout == b"Hello, world!" * 4
    ping = cli("--ping", "--count", "3", at(coaptcp_server))
    assert ping.returncode == 0
    lines = ping.stdout.decode().splitlines()
    assert len(lines) == 3
    prefix = f"pong from coap+tcp://127.0.0.1:{coaptcp_server.port}: time="
    assert all(line.startswith(prefix) and line.endswith(" ms") for line in lines)


def test_cli_sends_csm_and_request_without_waiting_for_the_peer() -> None:
    # RFC 8323 section 3.3: the initiator must not wait for the acceptor's CSM.  A raw
    # server says nothing until both our CSM and our request have arrived.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(COMMAND_TIMEOUT)
        port = listener.getsockname()[1]
        process = childproc.popen([cli_path(), f"coap+tcp://127.0.0.1:{port}/raw"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(COMMAND_TIMEOUT)
                decoder = StreamDecoder(1 << 20)
                received: list[Message] = []
                while len(received) < 2:
                    chunk = connection.recv(4096)
                    assert chunk, "the client closed before sending its request"
                    decoder.feed(chunk)
                    while (message := decoder.next_message()) is not None:
                        received.append(message)
                assert [m.code for m in received] == [Code.CSM, Code.GET]
                assert received[1].options.uri_path == ("raw",)
                answer = Message(Code.CONTENT, received[1].token, payload=b"answered")
                connection.sendall(encode_frame(Message(Code.CSM)) + encode_frame(answer))
                out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err.decode()
    assert out == b"answered"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("coap+udp://127.0.0.1/hello", "unknown scheme 'coap+udp'"),
        ("coap+tcp://127.0.0.1/hello#top", "fragment"),
        ("http://127.0.0.1/", "unknown scheme 'http'"),
        ("127.0.0.1/hello", "not an absolute URI"),
        ("coap+tcp://127.0.0.1:99999/", "out of range"),
        ("coap+tcp://127.0.0.1/a b", "not allowed in the path"),
        ("coap+tcp://[::1/", "closing ']'"),
    ],
)
def test_cli_bad_uri_is_a_usage_error(uri: str, message: str) -> None:
    result = cli(uri)
    assert result.returncode == 2
    assert result.stdout == b""
    last = result.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"coaptcp-client: error: bad URI {uri!r}: ")
    assert message in last


def test_cli_refused_connection() -> None:
    port = free_port()  # nothing listens there
    result = cli(f"coap+tcp://127.0.0.1:{port}/hello")
    assert result.returncode == 3
    assert result.stdout == b""
    assert one_line(result) == (
        f"coaptcp-client: cannot connect to coap+tcp://127.0.0.1:{port}: connection refused"
    )


@pytest.fixture(scope="module")
def websocket_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp --ws`` (coap+ws) with the demo site."""
    port = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1"]
    with run_server(argv, port) as peer:
        yield peer


def test_cli_over_websockets(websocket_server: RunningPeer) -> None:
    uri = f"coap+ws://127.0.0.1:{websocket_server.port}/hello"
    result = cli(uri)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Hello, world!", b"")
    result = cli(f"coap+ws://127.0.0.1:{websocket_server.port}/large")
    assert result.stdout == LargeResource.body


def test_cli_ping_over_websockets(websocket_server: RunningPeer) -> None:
    result = cli("--ping", f"coap+ws://127.0.0.1:{websocket_server.port}")
    assert result.returncode == 0
    assert result.stdout.startswith(b"pong from coap+ws://127.0.0.1:")


def test_cli_websocket_refused_connection() -> None:
    result = cli(f"coap+ws://127.0.0.1:{free_port()}/hello")
    assert result.returncode == 3
    assert one_line(result).startswith("coaptcp-client: cannot connect to coap+ws://127.0.0.1:")


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Throwaway certificates (coaptcp.testing.certs) and a PSK file."""
    from coaptcp.testing.certs import write_test_setup

    directory = tmp_path_factory.mktemp("tls")
    paths = write_test_setup(directory)
    paths["psk"] = directory / "keys.txt"
    paths["psk"].write_text("gateway text:battery staple\n")
    return paths


@pytest.fixture(scope="module")
def tls_server(tls_setup: dict[str, Path]) -> Iterator[RunningPeer]:
    """``twistd coaptcp`` serving coaps+tcp with a certificate and a PSK, and coaps+ws."""
    port, ws_port = free_port(), free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tls", f"tcp:{port}:interface=127.0.0.1",
            "--certificate", str(tls_setup["server"]),
            "--private-key", str(tls_setup["server_key"]),
            "--psk-file", str(tls_setup["psk"]),
            "--ws", (f"ssl:{ws_port}:interface=127.0.0.1:privateKey={tls_setup['server_key']}"
                     f":certKey={tls_setup['server']}")]
    with run_server(argv, port) as peer:
        peer.extra = {"ws_port": ws_port}  # type: ignore[attr-defined]
        yield peer


def test_cli_coaps_tcp_with_a_certificate(tls_server: RunningPeer,
                                          tls_setup: dict[str, Path]) -> None:
    result = cli("--cafile", str(tls_setup["ca"]),
                 f"coaps+tcp://localhost:{tls_server.port}/hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Hello, world!", b"")


def test_cli_coaps_tcp_with_a_psk(tls_server: RunningPeer) -> None:
    result = cli("--psk-identity", "gateway", "--psk-key", "battery staple",
                 f"coaps+tcp://127.0.0.1:{tls_server.port}/info")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["secure"] is True


def test_cli_coaps_tcp_untrusted_server_fails_clearly(tls_server: RunningPeer) -> None:
    # No --cafile: the system trust store does not know our throwaway CA.
    result = cli(f"coaps+tcp://localhost:{tls_server.port}/hello")
    assert result.returncode == 3
    assert result.stdout == b""
    assert "certificate" in one_line(result)


def test_cli_coaps_tcp_wrong_psk_fails_clearly(tls_server: RunningPeer) -> None:
    result = cli("--psk-identity", "gateway", "--psk-key", "wrong key",
                 f"coaps+tcp://127.0.0.1:{tls_server.port}/hello")
    assert result.returncode == 3
    assert one_line(result).startswith("coaptcp-client: cannot connect to coaps+tcp://")


def test_cli_coaps_ws_with_a_certificate(tls_server: RunningPeer,
                                         tls_setup: dict[str, Path]) -> None:
    ws_port = tls_server.extra["ws_port"]  # type: ignore[attr-defined]
    result = cli("--cafile", str(tls_setup["ca"]), f"coaps+ws://localhost:{ws_port}/hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Hello, world!", b"")


def test_cli_coaps_ws_rejects_psk_clearly(tls_server: RunningPeer) -> None:
    ws_port = tls_server.extra["ws_port"]  # type: ignore[attr-defined]
    result = cli("--psk-identity", "gateway", "--psk-key", "battery staple",
                 f"coaps+ws://localhost:{ws_port}/hello")
    # Known before connecting: a usage error (exit 2, docs/client.md), not "no response".
    assert result.returncode == 2
    last = result.stderr.decode().splitlines()[-1]
    assert last == ("coaptcp-client: error: --psk-identity: pre-shared keys are not "
                    "supported for coaps+ws; use coaps+tcp or coaps")


def test_cli_observe_with_another_method_is_a_clear_usage_error() -> None:
    result = cli("--observe", "-m", "put", "coap+tcp://127.0.0.1/hello")
    assert result.returncode == 2
    assert "--observe sends GET (RFC 7641): drop -m" in result.stderr.decode()


def test_cli_help_and_version() -> None:
    help_result = cli("--help")
    assert help_result.returncode == 0
    assert b"--psk-identity" in help_result.stdout
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith(b"coaptcp-client ")


# -- the library against our own server -----------------------------------------------------------


def test_library_pools_and_pipelines(coaptcp_server: RunningPeer) -> None:
    report = uri_client("pipeline", "25", at(coaptcp_server, "/hello"),
                        at(coaptcp_server, "/info"))
    assert report["responses"] == 50
    assert report["codes"] == ["2.05"]
    assert report["connections_made"] == 1  # both URIs share the endpoint's connection
    two = uri_client("pipeline", "5", at(coaptcp_server, "/hello"),
                     at(coaptcp_server, "/hello", host="localhost"))
    assert two["connections_made"] == 2  # a different host is a different endpoint


def test_library_ping(coaptcp_server: RunningPeer) -> None:
    report = uri_client("ping", at(coaptcp_server))
    assert isinstance(report["rtt"], float) and report["rtt"] >= 0


@pytest.fixture
def stoppable_server() -> Iterator[RunningPeer]:
    """A ``twistd coaptcp`` of our own, which the test may SIGSTOP."""
    port = free_port()
    with run_server(coaptcp_server_argv(port), port) as peer:
        try:
            yield peer
        finally:
            os.kill(peer.process.pid, signal.SIGCONT)


def test_library_detects_a_dead_peer(stoppable_server: RunningPeer) -> None:
    # The server process is stopped: its kernel still holds the TCP connection open, but
    # no Pong comes back; the keepalive Ping times out and the request in flight fails
    # with a clear error instead of hanging.
    process = childproc.popen(
        [sys.executable, str(HERE / "coaptcp_uri_client.py"), "dead-peer",
         at(stoppable_server, "/hello")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        first = json.loads(process.stdout.readline())
        assert first == {"step": "connected", "code": "2.05"}
        os.kill(stoppable_server.process.pid, signal.SIGSTOP)
        process.stdin.write(b"go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["error"] == "ConnectionClosedError", err.decode()
    assert "no Pong within 0.5 s" in report["message"]
    assert f"coap+tcp://127.0.0.1:{stoppable_server.port}" in report["message"]


# -- libcoap's server -----------------------------------------------------------------------------


def test_cli_against_libcoap(libcoap_server: RunningPeer) -> None:
    banner = cli(at(libcoap_server, "/"))
    assert banner.returncode == 0
    assert banner.stdout.startswith(b"This is a test server made with libcoap")
    data = cli(at(libcoap_server, "/example_data"))
    assert data.returncode == 0
    assert len(data.stdout) == 1500  # one frame: our CSM allows it
    assert data.stderr == b""
    created = cli("-m", "put", "-e", "made by coaptcp-client", at(libcoap_server, "/coaptcp"))
    assert created.returncode == 0
    assert cli(at(libcoap_server, "/coaptcp")).stdout == b"made by coaptcp-client"
    missing = cli(at(libcoap_server, "/no/such/thing"))
    assert missing.returncode == 1
    assert one_line(missing).startswith("coaptcp-client: 4.04 Not Found")
    not_allowed = cli("-m", "post", "-e", "x", at(libcoap_server, "/"))
    assert not_allowed.returncode == 1
    assert "4.05" in one_line(not_allowed)


def test_cli_ping_libcoap(libcoap_server: RunningPeer) -> None:
    # libcoap answers with an empty-token Pong (docs/interop.md); it still counts.
    result = cli("--ping", "-c", "2", at(libcoap_server))
    assert result.returncode == 0
    assert len(result.stdout.decode().splitlines()) == 2


def test_cli_verbose_libcoap_shows_its_max_message_size(libcoap_server: RunningPeer) -> None:
    result = cli("-v", at(libcoap_server, "/time", host="localhost"))
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    assert "   Uri-Host: 'localhost'" in lines
    assert any("peer Max-Message-Size 8388864" in line for line in lines)


def test_library_against_libcoap(libcoap_server: RunningPeer) -> None:
    report = uri_client("pipeline", "20", at(libcoap_server, "/"),
                        at(libcoap_server, "/example_data"))
    assert report["responses"] == 40
    assert report["codes"] == ["2.05"]
    assert report["payload_lengths"] == [136, 1500]
    assert report["connections_made"] == 1
    assert isinstance(uri_client("ping", at(libcoap_server))["rtt"], float)


# -- an aiocoap server ----------------------------------------------------------------------------


def test_cli_against_aiocoap(aiocoap_server: RunningPeer) -> None:
    hello = cli(at(aiocoap_server, "/hello"))
    assert (hello.returncode, hello.stdout, hello.stderr) == (0, b"hello from aiocoap", b"")
    echo = cli("-m", "put", "-e", "echo me", at(aiocoap_server, "/echo"))
    assert (echo.returncode, echo.stdout) == (0, b"echo me")
    missing = cli(at(aiocoap_server, "/nothing"))
    assert missing.returncode == 1
    assert one_line(missing) == "coaptcp-client: 4.04 Not Found"
    links = cli("--pretty", at(aiocoap_server, "/.well-known/core"))
    assert "</hello>" in links.stdout.decode().splitlines()


def test_cli_gets_aiocoap_large_body_whole(aiocoap_server: RunningPeer) -> None:
    # Our CSM announces Block-Wise-Transfer with a Max-Message-Size above 1,152, so aiocoap
    # sends /big (4,000 bytes) in one message rather than in Block2 blocks.
    result = cli(at(aiocoap_server, "/big"))
    assert result.returncode == 0
    assert len(result.stdout) == 4000
    assert result.stderr == b""


def test_cli_ping_aiocoap(aiocoap_server: RunningPeer) -> None:
    result = cli("--ping", at(aiocoap_server))
    assert result.returncode == 0
    assert result.stdout.startswith(f"pong from coap+tcp://127.0.0.1:{aiocoap_server.port}".encode())


def test_library_against_aiocoap(aiocoap_server: RunningPeer) -> None:
    report = uri_client("pipeline", "20", at(aiocoap_server, "/hello"))
    assert report == {"codes": ["2.05"], "payload_lengths": [18], "responses": 20,
                      "connections_made": 1}
    echoed = uri_client("request", "POST", at(aiocoap_server, "/echo"), "posted")
    assert (echoed["code"], echoed["payload"]) == ("2.04", "posted")
