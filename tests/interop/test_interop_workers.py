"""``twistd coaptcp --workers 2`` for real: two worker processes answer on one port, a
killed worker is replaced, and SIGTERM to the parent releases every connection.

The installed plugin runs on loopback; which process answered is the ``pid`` of the demo
site's ``/info``.  Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from peers import RunningPeer, free_port, run_server, twistd_path
from rawcoap import RawCoap

from coaptcp.core.codes import Code
from coaptcp.workers.sockets import bind_listener, parse_listener

pytestmark = pytest.mark.interop

CONNECTIONS = 40
DEADLINE = 20.0


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workers_server() -> Iterator[RunningPeer]:
    port = free_port()
    argv = [
        twistd_path(),
        "--nodaemon",
        "--pidfile=",
        "coaptcp",
        "--workers",
        "2",
        "--tcp",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def connect_many(port: int, count: int) -> list[tuple[RawCoap, int]]:
    """``count`` held connections, each with the pid that answered its ``GET /info``."""
    held = []
    for i in range(count):
        client = RawCoap(port)
        held.append((client, client.info(token=b"i%d" % i)["pid"]))
    return held


def test_two_workers_answer_on_one_port_and_a_killed_one_is_replaced(workers_server):
    parent = workers_server.process.pid
    held = connect_many(workers_server.port, CONNECTIONS)
    pids = {pid for _, pid in held}
    # SO_REUSEPORT spreads connections by a hash of their addresses: with 40 of them,
    # both workers get some (all on one would have probability 2**-39).
    assert len(pids) == 2, pids
    assert parent not in pids
    assert all(parent_of(pid) == parent for pid in pids)

    victim = min(pids)
    (survivor,) = pids - {victim}
    os.kill(victim, signal.SIGKILL)
    for client, pid in held:
        if pid == victim:
            client.wait_closed()
        client.close()

    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and not seen - {survivor}:
        client = RawCoap(workers_server.port)
        seen.add(client.info()["pid"])
        client.close()
    replacements = seen - {survivor}
    assert len(replacements) == 1, (seen, workers_server.log_text())
    (replacement,) = replacements
    assert replacement != victim and parent_of(replacement) == parent
    assert not alive(victim)
    log = workers_server.log_text()
    assert f"Worker 0 pid {victim} exited" in log or f"Worker 1 pid {victim} exited" in log


def test_sigterm_to_the_parent_releases_every_connection_and_stops_the_workers(
    workers_server,
):
    held = connect_many(workers_server.port, CONNECTIONS)
    pids = {pid for _, pid in held}
    assert len(pids) == 2, pids
    workers_server.process.send_signal(signal.SIGTERM)
    for client, _ in held:
        release = client.read_until(lambda m: m.code.is_signaling and m.code != Code.CSM)
        assert release.code == Code.RELEASE, release
        client.close()  # our side of the orderly close (RFC 8323 section 5.5)
    workers_server.process.wait(DEADLINE)
    assert not any(alive(pid) for pid in pids)
    log = workers_server.log_text()
    assert "Stopping 2 workers" in log
    for pid in pids:
        assert f"(pid {pid}) stopped" in log, log


def test_workers_listeners_share_one_port_with_so_reuseport():
    bound = bind_listener(parse_listener("tcp:0:interface=127.0.0.1"), 3)
    try:
        ports = {sock.getsockname() for sock in bound.sockets}
        assert len(ports) == 1 and bound.port == next(iter(ports))[1] != 0
        for sock in bound.sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getblocking() is False
    finally:
        bound.close()
    assert bound.sockets == []
