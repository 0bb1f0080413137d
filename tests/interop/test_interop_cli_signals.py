"""The installed ``coaptcp-client`` against silent peers and the real SIGINT (issue 13).

Ctrl-C with a request or Ping outstanding exits 130 with one line; Ctrl-C ends a
``--ping --interval`` series with exit 0; a usage error is exit 2; an observation whose
registration times out is closed without waiting for an answer to its deregistration.
The client is a child process started with the default SIGINT disposition
(``childproc``), so the test's SIGINT reaches it however the test run was started.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator

import childproc
import pytest
from peers import COMMAND_TIMEOUT, Reader, RunningPeer, cli_path, run, wait_for_output

from coaptcp.core.codes import Code

pytestmark = pytest.mark.interop


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A listener on 127.0.0.1 that accepts and reads but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(COMMAND_TIMEOUT)
        yield listener


def start_cli(*args: str) -> subprocess.Popen[bytes]:
    return childproc.popen([cli_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    try:
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def url(listener: socket.socket, path: str = "") -> str:
    return f"coap+tcp://127.0.0.1:{listener.getsockname()[1]}{path}"


@pytest.mark.parametrize(
    ("args", "last"),
    [(["-c", "100000"], Code.GET), (["--ping"], Code.PING)],
    ids=["request", "ping"],
)
def test_ctrl_c_with_an_answer_outstanding_exits_130_with_one_line(
    silent_listener: socket.socket, args: list[str], last: Code
) -> None:
    process = start_cli(*args, url(silent_listener, "/hello"))
    try:
        connection, _ = silent_listener.accept()
        with connection:
            connection.settimeout(COMMAND_TIMEOUT)
            messages = Reader(connection)
            assert messages.next().code == Code.CSM
            assert messages.next().code == last  # now it waits for an answer
            process.send_signal(signal.SIGINT)
            code, out, err = finish(process)
            # It released the connection before exiting (RFC 8323 section 5.5).
            assert [m.code for m in messages.rest()] == [Code.RELEASE]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (code, out) == (130, b"")
    assert err == b"coaptcp-client: interrupted\n"


def test_ctrl_c_during_requests_to_our_server(coaptcp_server: RunningPeer) -> None:
    # The issue's own case: many GETs to the demo, interrupted while they run.
    process = start_cli("-c", "100000", f"coap+tcp://127.0.0.1:{coaptcp_server.port}/hello")
    wait_for_output(process, b"Hello, world!Hello, world!")
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert code == 130
    assert err == b"coaptcp-client: interrupted\n"
    assert out.replace(b"Hello, world!", b"") == b""


def test_ctrl_c_ends_a_ping_series_with_exit_0(coaptcp_server: RunningPeer) -> None:
    process = start_cli("--ping", "--interval", "0.2", f"coap+tcp://127.0.0.1:{coaptcp_server.port}")
    seen = wait_for_output(process, b"pong from coap+tcp://127.0.0.1:")
    while seen.count(b"\n") < 2:  # two round trips printed
        seen += wait_for_output(process, b"pong")
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert (code, err) == (0, b"")
    lines = (seen + out).decode().splitlines()
    assert [line.split(" seq=")[1].split()[0] for line in lines] == [
        str(n) for n in range(1, len(lines) + 1)
    ]


def test_observation_timeout_closes_without_waiting(silent_listener: socket.socket) -> None:
    process = start_cli("--timeout", "1", "--observe", url(silent_listener, "/time"))
    try:
        connection, _ = silent_listener.accept()
        with connection:
            connection.settimeout(COMMAND_TIMEOUT)
            sent = Reader(connection).rest()  # until the client closes
            code, out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert [(m.code, m.options.observe) for m in sent] == [
        (Code.CSM, None), (Code.GET, 0), (Code.GET, 1), (Code.RELEASE, None)
    ]
    assert (code, out) == (3, b"")
    port = silent_listener.getsockname()[1]
    expected = f"coaptcp-client: no response from coap+tcp://127.0.0.1:{port} within 1 s\n"
    assert err == expected.encode()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_bad_timeout_is_a_usage_error(value: str) -> None:
    result = run([cli_path(), f"--timeout={value}", "coap+tcp://127.0.0.1/hello"])
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert lines[-1].startswith("coaptcp-client: error: argument --timeout: ")
    assert "internal error" not in result.stderr.decode()
