"""Devices that call in, reached through ``/ep/NAME/...`` (RFC 9176 section 5, RFC 8323
section 3.3), with real peers over loopback.

An aiocoap device (``aiocoap_ep_device.py``) opens a coap+tcp connection to our
``twistd coaptcp --rd --tcp ... --udp ...``, registers as ``aio-dev`` and serves its
own resources on that connection.  libcoap's ``coap-client-openssl`` then reads and
observes them through ``/ep/aio-dev/...`` over coap+tcp and over UDP.  When the device
is killed, the next request gets 5.04 at once (its registration ended with its
connection: no request waits for a timeout); started again, it is reachable again.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import childproc
import pytest
from peers import (
    HERE,
    STARTUP_DEADLINE,
    RunningPeer,
    coaptcp_server_argv,
    free_port,
    libcoap_client,
    run_server,
    wait_for_output,
)
from test_interop_udp import free_udp_port

pytestmark = pytest.mark.interop


class Gateway:
    """Our server with ``--rd``: its coap+tcp and coap:// addresses."""

    def __init__(self, peer: RunningPeer, udp_port: int) -> None:
        self.peer = peer
        self.tcp = f"coap+tcp://127.0.0.1:{peer.port}"
        self.udp = f"coap://127.0.0.1:{udp_port}"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    port, udp_port = free_port(), free_udp_port()
    # A long device timeout: a 5.04 below comes from the closed connection, not a timer.
    argv = [*coaptcp_server_argv(port), "--udp", f"udp:{udp_port}:interface=127.0.0.1",
            "--rd", "--rd-proxy-timeout", "300"]
    with run_server(argv, port) as peer:
        yield Gateway(peer, udp_port)
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def start_device(gateway: Gateway, name: str) -> subprocess.Popen[bytes]:
    """The aiocoap device, registered (its ``registered`` line read)."""
    process = childproc.popen(
        [sys.executable, str(HERE / "aiocoap_ep_device.py"), gateway.tcp, name],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE,
    )
    try:
        assert wait_for_output(process, b"registered /rd/").startswith(b"registered /rd/")
    except BaseException:
        process.kill()
        process.wait(timeout=STARTUP_DEADLINE)
        raise
    return process


@pytest.fixture
def device(gateway: Gateway) -> Iterator[subprocess.Popen[bytes]]:
    process = start_device(gateway, "aio-dev")
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=STARTUP_DEADLINE)


def output(*args: str) -> str:
    got = libcoap_client(*args)
    return (got.stdout + got.stderr).decode()


def test_libcoap_reads_the_device_through_ep_over_tcp_and_udp(
    gateway: Gateway, device: subprocess.Popen[bytes],
) -> None:
    for via in (gateway.tcp, gateway.udp):
        got = libcoap_client(f"{via}/ep/aio-dev/hello?a=1&b=2")
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"hello from aio-dev?a=1&b=2"
    assert "4.04 no endpoint 'nobody' is registered" in output(f"{gateway.udp}/ep/nobody/hello")


@pytest.mark.parametrize("via", ["tcp", "udp"])
def test_libcoap_observes_the_device_through_ep(
    gateway: Gateway, device: subprocess.Popen[bytes], via: str,
) -> None:
    got = libcoap_client("-s", "2", f"{getattr(gateway, via)}/ep/aio-dev/time")
    assert got.returncode == 0, got.stderr
    ticks = [int(n) for n in re.findall(rb"tick (\d+)", got.stdout)]
    assert len(ticks) >= 3, got.stdout  # the first response and notifications after it
    assert ticks == sorted(set(ticks)), got.stdout  # each change once, in order


def test_a_killed_device_is_5_04_at_once_and_reachable_again_once_back(
    gateway: Gateway, device: subprocess.Popen[bytes],
) -> None:
    assert libcoap_client(f"{gateway.tcp}/ep/aio-dev/hello").stdout == b"hello from aio-dev"
    device.send_signal(signal.SIGKILL)
    device.wait(timeout=STARTUP_DEADLINE)
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not re.search(r"aio-dev \(/rd/\w+\) is gone: its connection ended",
                        gateway.peer.log_text()):
        assert time.monotonic() < deadline, "the gateway never saw the connection end"
        time.sleep(0.1)  # another process's state: nothing to wait on
    for via in (gateway.tcp, gateway.udp):
        said = output(f"{via}/ep/aio-dev/hello")
        # The connection's end, not the 300 s timer, answered.
        assert "5.04 endpoint 'aio-dev' is gone: its connection ended" in said, said
    again = start_device(gateway, "aio-dev")
    try:
        for via in (gateway.tcp, gateway.udp):
            assert libcoap_client(f"{via}/ep/aio-dev/hello").stdout == b"hello from aio-dev"
    finally:
        again.kill()
        again.wait(timeout=STARTUP_DEADLINE)
