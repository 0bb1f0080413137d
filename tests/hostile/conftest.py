"""Fixtures for the hostile-peer tests.

In memory: a :class:`CoapFactory` serving the demo site on a :class:`MemoryReactorClock`,
and :func:`connect` to attach a :class:`CoapProtocol` to a fresh ``StringTransport``.

Over loopback: :func:`coap_server` runs the real ``twistd -n coaptcp`` (the installed
package: the subprocess runs in a temporary directory) on a free 127.0.0.1 port, with its
log in a temporary file, and stops it afterwards; :func:`running_server` does the same with
options of a test module's choosing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostile_wire import Server, log_problems
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from coaptcp.demo import make_demo_site
from coaptcp.protocol import CoapFactory, CoapProtocol
from coaptcp.resource import Site

SERVER_START_DEADLINE = 30.0  # seconds for twistd to start accepting
SERVER_STOP_DEADLINE = 15.0


# -- in memory --------------------------------------------------------------------------


@dataclass
class Peer:
    """One in-memory connection: the server's protocol and the transport it writes to."""

    protocol: CoapProtocol
    transport: StringTransport
    aborted: list[bool] = field(default_factory=list)

    def written(self) -> bytes:
        return self.transport.value()


@pytest.fixture
def clock() -> MemoryReactorClock:
    return MemoryReactorClock()


@pytest.fixture
def factory(clock: MemoryReactorClock) -> CoapFactory:
    return CoapFactory(Site(make_demo_site()), reactor=clock)


@pytest.fixture
def connect(factory: CoapFactory):
    """Return a function that connects a new server protocol to a fresh StringTransport.

    The transport's ``abortConnection`` is replaced by a recorder (``peer.aborted``) so a
    forced drop can be told apart from a graceful ``loseConnection``.
    """
    port = iter(range(40000, 50000))

    def connect_one() -> Peer:
        peer_address = IPv4Address("TCP", "127.0.0.1", next(port))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5683), peerAddress=peer_address
        )
        protocol = factory.buildProtocol(peer_address)
        assert isinstance(protocol, CoapProtocol)
        peer = Peer(protocol, transport)
        transport.abortConnection = lambda: peer.aborted.append(True)  # type: ignore[method-assign]
        protocol.makeConnection(transport)
        return peer

    return connect_one


# -- over loopback ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_accepting(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_DEADLINE
    while True:
        if server.process.poll() is not None:
            pytest.fail(
                f"twistd exited with {server.process.returncode} before listening:\n" + server.log()
            )
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"twistd did not accept on port {server.port} in time:\n" + server.log())
        time.sleep(0.05)  # bounded polling for the port to open (the only sleep)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_DEADLINE)


def _default_signals() -> None:
    """In the child: SIGINT as by default, whatever the test runner set."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def running_server(workdir: Path, *options: str) -> Iterator[Server]:
    """``python -m twisted coaptcp --tcp ...`` plus ``options``, on a free loopback port.

    Afterwards it is stopped (SIGTERM, then SIGKILL past a deadline) and its whole log,
    shutdown included, must show no traceback.
    """
    log_path = workdir / "server.log"
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted",
                # ``python -m twisted`` is ``twist``: always in the foreground (it has no
                # -n); text logs, as twistd -n writes them, so tracebacks show as text.
                "--log-format=text",
                "--log-file=-",
                "coaptcp",
                "--tcp",
                f"tcp:{port}:interface=127.0.0.1",
                *options,
            ],
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_default_signals,
        )
    server = Server(port, process, log_path)
    try:
        _wait_until_accepting(server)
        yield server
    finally:
        _stop(process)
    problems = log_problems(server.log())
    if problems:
        pytest.fail("server log shows unhandled errors:\n" + server.log())


@pytest.fixture(scope="module")
def coap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server, ``python -m twisted coaptcp``, on a free loopback port."""
    with running_server(tmp_path_factory.mktemp("coaptcp-server")) as server:
        yield server


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory):
    """``start_server(*options)``: a context manager running the real server with them."""

    def start(*options: str):
        return running_server(tmp_path_factory.mktemp("coaptcp-server"), *options)

    return start
