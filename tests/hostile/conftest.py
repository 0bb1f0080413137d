"""Fixtures for the hostile-peer tests.

In memory: a :class:`CoapFactory` serving the demo site on a :class:`MemoryReactorClock`,
and :func:`connect` to attach a :class:`CoapProtocol` to a fresh ``StringTransport``.

Over loopback: :func:`coap_server` runs the real ``twistd -n coaptcp`` (the installed
package: the subprocess runs in a temporary directory) on a free 127.0.0.1 port, with its
log in a temporary file, and stops it afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostile_server import free_port, twistd
from hostile_wire import Server
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory, CoapProtocol

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


@contextlib.contextmanager
def running_server(
    workdir: Path, *args: str, pythonpath: str | None = None
) -> Iterator[Server]:
    """``python -m twisted coaptcp --tcp ... ARGS`` on a free loopback port, for a ``with``.

    On exit it is stopped (SIGTERM, then SIGKILL past a deadline) and its whole log,
    shutdown included, must show no traceback (see :func:`hostile_server.twistd`).
    ``pythonpath`` lets ``--resource`` find a test module (the package itself is always
    the installed one).
    """
    port = free_port()
    argv = ["--tcp", f"tcp:{port}:interface=127.0.0.1", *args]
    with twistd(workdir, argv, [port], pythonpath=pythonpath) as server:
        yield Server(port, server.process, server.log_path)


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
