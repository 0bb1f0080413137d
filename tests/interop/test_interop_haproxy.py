"""HAProxy (Debian's ``haproxy``) in front of two ``twistd coaptcp`` instances.

HAProxy balances TCP connections round-robin and prefixes each with a PROXY protocol v2
header (``send-proxy-v2``); both servers listen with Twisted's ``haproxy:`` endpoint, so
resources see the real client's address.  Checked through the balancer: requests are
answered by both servers, an observation of ``/time`` delivers notifications, and
``/info`` reports the client's own address and port, not HAProxy's.  The configuration
is the one in docs/deploy-haproxy.md, with round-robin (so that both servers are used by a
few connections) and a smaller maxconn.  Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import RunningPeer, free_port, run_server, twistd_path
from rawcoap import RawCoap

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options

pytestmark = pytest.mark.interop

HAPROXY_CONFIG = """\
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h

frontend coap
    bind 127.0.0.1:{frontend}
    default_backend coaptcp

backend coaptcp
    balance roundrobin
    server coaptcp1 127.0.0.1:{backend1} send-proxy-v2 check check-send-proxy inter 2s
    server coaptcp2 127.0.0.1:{backend2} send-proxy-v2 check check-send-proxy inter 2s
"""


def haproxy_binary() -> str:
    path = shutil.which("haproxy")
    if path is None:
        raise RuntimeError("haproxy is not installed; apt-get install haproxy (see README)")
    return path


def backend_argv(port: int) -> list[str]:
    return [
        twistd_path(),
        "--nodaemon",
        "--pidfile=",
        "coaptcp",
        "--tcp",
        f"haproxy:tcp:{port}:interface=127.0.0.1",
    ]


@pytest.fixture(scope="module")
def balanced() -> Iterator[tuple[RunningPeer, list[RunningPeer]]]:
    """HAProxy on a free port, two coaptcp servers behind it."""
    ports = [free_port(), free_port()]
    frontend = free_port()
    config = Path(tempfile.mkdtemp(prefix="coaptcp-haproxy-")) / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(frontend=frontend, backend1=ports[0], backend2=ports[1])
    )
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(run_server(backend_argv(p), p)) for p in ports]
        haproxy = stack.enter_context(
            run_server([haproxy_binary(), "-db", "-f", str(config)], frontend)
        )
        yield haproxy, servers
        assert haproxy.process.poll() is None, haproxy.log_text()
    for server in servers:
        log = server.log_text()
        assert "Traceback" not in log and "Unhandled" not in log, log


def test_requests_through_haproxy_are_answered_by_both_servers(balanced):
    haproxy, servers = balanced
    pids = set()
    for i in range(6):  # round-robin: three connections to each server
        client = RawCoap(haproxy.port)
        try:
            hello = client.request(Code.GET, "hello", token=b"h%d" % i)
            assert (hello.code, hello.payload) == (Code.CONTENT, b"Hello, world!")
            pids.add(client.info()["pid"])
        finally:
            client.close()
    assert pids == {server.process.pid for server in servers}


def test_resources_see_the_real_client_address(balanced):
    haproxy, _ = balanced
    clients = [RawCoap(haproxy.port) for _ in range(4)]
    try:
        for client in clients:
            info = client.info()
            # Our own socket's address: HAProxy's connection to the server has another
            # source port, so only the PROXY header can have told the server this one.
            assert info["peer"] == client.local
            assert info["host"] == "127.0.0.1"
    finally:
        for client in clients:
            client.close()


def test_an_observation_through_haproxy_delivers_notifications(balanced):
    haproxy, _ = balanced
    client = RawCoap(haproxy.port)
    try:
        first = client.request(Code.GET, "time", token=b"obs", observe=0)
        assert first.code == Code.CONTENT and first.options.observe is not None
        numbers = [first.options.observe]
        for _ in range(2):  # the demo clock notifies every second
            note = client.read_until(lambda m: m.token == b"obs", timeout=5)
            assert note.code == Code.CONTENT
            assert note.payload.decode().endswith("Z")
            numbers.append(note.options.observe)
        assert numbers == sorted(numbers) and len(set(numbers)) == 3, numbers
        # Deregister (RFC 7641 section 3.6, same token): a plain answer without Observe.
        client.send(Message(Code.GET, b"obs", Options.build(uri_path=["time"], observe=1)))
        last = client.read_until(lambda m: m.token == b"obs" and m.options.observe is None)
        assert last.code == Code.CONTENT
    finally:
        client.close()
