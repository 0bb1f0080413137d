"""Starting and talking to real CoAP-over-TCP peers on loopback for the interop tests.

Peers: our own ``twistd coaptcp`` (the demo site), libcoap 4.3.1's ``coap-server-openssl``
and ``coap-client-openssl`` (Debian's libcoap3-bin), and aiocoap (its ``aiocoap-client`` and
a small server script beside this file).  Every wait is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import childproc

HERE = Path(__file__).resolve().parent
STARTUP_DEADLINE = 20.0
COMMAND_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until ``port`` accepts connections; fail if the process exits or time runs out."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"peer exited early ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"peer did not listen on {port} within {STARTUP_DEADLINE}s:\n{log.read_text()}"
    )


@dataclass
class RunningPeer:
    """A server process listening on 127.0.0.1:port, with its log file."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_server(argv: Sequence[str], port: int, cwd: str | None = None) -> Iterator[RunningPeer]:
    """Start ``argv`` as a server on ``port``, yield it, and stop it afterwards."""
    workdir = tempfile.mkdtemp(prefix="coaptcp-interop-")
    log = Path(workdir) / "server.log"
    with log.open("wb") as sink:
        process = childproc.popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, cwd=cwd or workdir
        )
    try:
        wait_for_port(port, process, log)
        yield RunningPeer(port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def cli_path() -> str:
    """The ``coaptcp-client`` console script installed beside this interpreter."""
    path = Path(sys.executable).parent / "coaptcp-client"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the package (pip install .)")
    return str(path)


class Reader:
    """Decodes the CoAP messages a client sends on a raw socket (each wait bounded by the
    socket's own timeout)."""

    def __init__(self, connection: socket.socket) -> None:
        from coaptcp.core.framing import StreamDecoder

        self.connection = connection
        self.decoder = StreamDecoder(1 << 20)

    def next(self) -> Any:
        while (message := self.decoder.next_message()) is None:
            chunk = self.connection.recv(4096)
            assert chunk, "the client closed the connection"
            self.decoder.feed(chunk)
        return message

    def rest(self) -> list[Any]:
        """Every message until the client closes the connection."""
        messages = []
        while True:
            message = self.decoder.next_message()
            if message is not None:
                messages.append(message)
                continue
            chunk = self.connection.recv(4096)
            if not chunk:
                return messages
            self.decoder.feed(chunk)


def wait_for_output(process: subprocess.Popen[bytes], expected: bytes) -> bytes:
    """Read the process's stdout until ``expected`` was printed (bounded); returns it."""
    assert process.stdout is not None
    deadline = time.monotonic() + COMMAND_TIMEOUT
    seen = b""
    while not seen.startswith(expected):
        assert time.monotonic() < deadline, seen
        chunk = process.stdout.read1(4096)  # type: ignore[attr-defined]
        assert chunk, f"stdout closed after {seen!r}"
        seen += chunk
    return seen


def twistd_path() -> str:
    """The ``twistd`` installed beside this interpreter (the README's command)."""
    candidate = Path(sys.executable).parent / "twistd"
    return str(candidate) if candidate.exists() else require_binary("twistd")


def coaptcp_server_argv(port: int) -> list[str]:
    """Our server: the installed ``twistd coaptcp`` plugin with the demo site."""
    return [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1"]


def libcoap_server_argv(port: int) -> list[str]:
    """libcoap's example server on TCP (and UDP) at 127.0.0.1:port, dynamic resources on."""
    return [require_binary("coap-server-openssl"), "-A", "127.0.0.1", "-p", str(port),
            "-d", "10", "-v", "6"]


def aiocoap_server_argv(port: int) -> list[str]:
    """The aiocoap server script beside this file, TCP only."""
    return [sys.executable, str(HERE / "aiocoap_peer.py"), str(port)]


def require_binary(name: str) -> str:
    """The path of an installed program; a missing interop peer fails the test loudly."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed; install Debian's libcoap3-bin (see README)"
        )
    return path


@dataclass
class Completed:
    """What a client command printed and how it exited."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run(argv: Sequence[str], *, stdin: bytes | None = None) -> Completed:
    """Run a client command to completion, bounded by ``COMMAND_TIMEOUT``."""
    result = childproc.run(
        list(argv), input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return Completed(result.returncode, result.stdout, result.stderr)


def libcoap_client(*args: str) -> Completed:
    """``coap-client-openssl`` with the given arguments (``-B`` bounds its own wait).

    The client ends its output with a newline of its own; it is removed here.
    """
    result = run([require_binary("coap-client-openssl"), "-B", "10", *args])
    if result.stdout.endswith(b"\n"):
        result.stdout = result.stdout[:-1]
    return result


def aiocoap_client(*args: str) -> Completed:
    """aiocoap's command-line client, run by this interpreter."""
    return run([sys.executable, "-m", "aiocoap.cli.client", *args])


def coaptcp_client(port: int, *args: str) -> dict[str, object]:
    """Our client (the script beside this file); returns its JSON report."""
    result = run([sys.executable, str(HERE / "coaptcp_peer_client.py"), str(port), *args])
    if result.returncode != 0:
        raise AssertionError(
            f"our client failed ({result.returncode}):\n{result.stdout.decode()}\n"
            f"{result.stderr.decode()}"
        )
    report: dict[str, object] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report
