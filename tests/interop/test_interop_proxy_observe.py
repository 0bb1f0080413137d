"""Observe through the proxy with real peers over loopback (RFC 7641 section 5, RFC 8323
section 7), and the reverse proxy (RFC 7252 section 5.7.3).

- libcoap's client observes libcoap's UDP ``/time`` through our forward proxy (``-P``).
- Two of our clients, one over coap+tcp and one over coap+ws, observe one resource of a
  UDP device played by the test on a raw socket: the device sees one registration, both
  clients get the notifications, and once both have left the device gets the
  deregistration (RFC 7641 section 3.6).
- libcoap's client reads, writes and observes a UDP server's resources through a
  ``--reverse`` mount, sending no Proxy-Uri at all.
- aiocoap's client observes aiocoap's UDP server through us (Proxy-Scheme); when it goes,
  aiocoap's count of observers falls to 0.  libcoap's client PUTs to it and GETs 1 MiB.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from peers import (
    RunningPeer,
    cli_path,
    coaptcp_server_argv,
    free_port,
    libcoap_client,
    libcoap_server_argv,
    run_server,
)
from test_interop_udp import running_udp_server

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.udp.framing import MessageType, decode_datagram, encode_datagram

pytestmark = pytest.mark.interop
OBSERVE = OptionNumber.OBSERVE


@pytest.fixture(scope="module")
def libcoap_udp() -> Iterator[RunningPeer]:
    port = free_port()
    with run_server(libcoap_server_argv(port), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def coaptcp_udp() -> Iterator[RunningPeer]:
    with running_udp_server() as peer:
        yield peer


@pytest.fixture(scope="module")
def proxy(coaptcp_udp: RunningPeer) -> Iterator[RunningPeer]:
    port, ws_port = free_port(), free_port()
    argv = [*coaptcp_server_argv(port), "--ws", f"tcp:{ws_port}:interface=127.0.0.1",
            "--proxy", "127.0.0.0/8",
            "--reverse", f"/device=coap://127.0.0.1:{coaptcp_udp.port}/"]
    with run_server(argv, port) as peer:
        peer.ws_port = ws_port  # type: ignore[attr-defined]
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def test_libcoap_observes_libcoap_s_udp_time_through_us(
    proxy: RunningPeer, libcoap_udp: RunningPeer
) -> None:
    got = libcoap_client("-s", "4", "-P", f"coap+tcp://127.0.0.1:{proxy.port}",
                         f"coap://127.0.0.1:{libcoap_udp.port}/time")
    assert got.returncode == 0, got.stderr
    # libcoap's /time changes every second: the first answer and later notifications.
    assert got.stdout.count(b":") >= 2 * 3, got.stdout


class ObservedDevice:
    """A UDP device with one observable resource: it counts registrations, sends a NON
    notification every 0.2 s while observed, and records how it was deregistered."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.registrations: list[bytes] = []
        self.deregistered = threading.Event()
        self.how = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        observer: tuple[tuple[str, int], bytes] | None = None
        sequence, message_id, last = 100, 0x4000, 0.0
        notification_ids: set[int] = set()
        while not self.stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                data = b""
            if data:
                received = decode_datagram(data)
                message = received.message
                if received.mtype is MessageType.RST:
                    if received.message_id in notification_ids:
                        self.how = "reset"
                        observer = None
                        self.deregistered.set()
                    continue
                if message.code != Code.GET:
                    continue
                observe = message.options.get_uint(OBSERVE)
                options = Options()
                if observe == 0:
                    self.registrations.append(message.token)
                    observer = (source, message.token)
                    options = options.add(OBSERVE, sequence)
                elif observer is not None and message.token == observer[1]:
                    self.how = "observe=1" if observe == 1 else "get"
                    observer = None
                    self.deregistered.set()
                answer = Message(Code.CONTENT, message.token, options, b"n%d" % sequence)
                kind = MessageType.ACK if received.mtype is MessageType.CON else MessageType.NON
                self.sock.sendto(encode_datagram(kind, received.message_id, answer), source)
                last = time.monotonic()
            if observer is not None and time.monotonic() - last > 0.2:
                sequence += 1
                message_id += 1
                notification_ids.add(message_id)
                note = Message(Code.CONTENT, observer[1], Options([(OBSERVE, sequence)]),
                               b"n%d" % sequence)
                self.sock.sendto(encode_datagram(MessageType.NON, message_id, note), observer[0])
                last = time.monotonic()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def test_two_observers_share_one_upstream_observation(proxy: RunningPeer) -> None:
    device = ObservedDevice()
    target = f"35,coap://127.0.0.1:{device.port}/state"
    ws_port = proxy.ws_port  # type: ignore[attr-defined]
    observers = [
        childproc.popen([cli_path(), "--observe", "-c", "4", "-O", target,
                          f"coap+tcp://127.0.0.1:{proxy.port}/"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE),
        childproc.popen([cli_path(), "--observe", "-c", "4", "-O", target,
                          f"coap+ws://127.0.0.1:{ws_port}/"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE),
    ]
    try:
        outputs = [process.communicate(timeout=30) for process in observers]
        assert device.deregistered.wait(timeout=20), "the proxy did not deregister upstream"
    finally:
        for process in observers:
            process.kill()
        device.close()
    for process, (stdout, stderr) in zip(observers, outputs, strict=True):
        assert process.returncode == 0, stderr
        lines = stdout.split()
        assert len(lines) == 4 and all(line.startswith(b"n") for line in lines), stdout
        numbers = [int(line[1:]) for line in lines]
        assert numbers == sorted(numbers) and len(set(numbers)) == 4, numbers
    assert len(device.registrations) == 1, device.registrations
    assert device.how in ("observe=1", "reset")


def test_libcoap_uses_a_udp_server_through_a_reverse_mount(proxy: RunningPeer) -> None:
    base = f"coap+tcp://127.0.0.1:{proxy.port}/device"
    assert libcoap_client(f"{base}/hello").stdout == b"Hello, world!"
    put = libcoap_client("-m", "put", "-e", "via the mount", f"{base}/store")
    assert put.returncode == 0, put.stderr
    assert libcoap_client(f"{base}/store").stdout == b"via the mount"
    observed = libcoap_client("-s", "3", f"{base}/time")
    assert observed.returncode == 0, observed.stderr
    assert observed.stdout.count(b"T") >= 2, observed.stdout  # ISO times, one a second


@pytest.fixture(scope="module")
def aiocoap_udp() -> Iterator[RunningPeer]:
    port = free_port()  # aiocoap serves UDP and TCP on the port; TCP says when it is ready
    argv = [sys.executable, str(Path(__file__).with_name("aiocoap_observed_peer.py")),
            str(port), "udp"]
    with run_server(argv, port) as peer:
        yield peer


def test_aiocoap_observes_aiocoap_over_udp_through_us_and_leaving_deregisters(
    proxy: RunningPeer, aiocoap_udp: RunningPeer
) -> None:
    origin = f"coap://127.0.0.1:{aiocoap_udp.port}"
    observer = childproc.popen(
        [sys.executable, str(Path(__file__).with_name("aiocoap_observer.py")),
         f"{origin}/time", "1000", "60", f"coap+tcp://127.0.0.1:{proxy.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert observer.stdout is not None
        lines = [json.loads(observer.stdout.readline()) for _ in range(4)]
        assert all(line.get("code") == "2.05 Content" for line in lines), lines
        ticks = [int(line["payload"].split()[1]) for line in lines]
        assert ticks == sorted(ticks) and len(set(ticks)) == 4, ticks
        observes = [line["observe"] for line in lines]
        assert None not in observes and observes == sorted(observes), observes
        assert libcoap_client(f"{origin}/observers").stdout == b"1"  # we observe upstream
    finally:
        observer.kill()
        observer.wait()
    # The downstream connection is gone: the proxy deregisters from aiocoap.
    deadline = time.monotonic() + 10
    while libcoap_client(f"{origin}/observers").stdout != b"0":
        assert time.monotonic() < deadline, "the upstream observation was not cancelled"
        time.sleep(0.2)


def test_libcoap_puts_and_gets_a_mebibyte_from_aiocoap_over_udp_through_us(
    proxy: RunningPeer, aiocoap_udp: RunningPeer
) -> None:
    origin = f"coap://127.0.0.1:{aiocoap_udp.port}"
    via = f"coap+tcp://127.0.0.1:{proxy.port}"
    put = libcoap_client("-m", "put", "-e", "relayed to aiocoap", "-P", via, f"{origin}/store")
    assert put.returncode == 0, put.stderr
    assert libcoap_client(f"{origin}/store").stdout == b"relayed to aiocoap"  # directly
    mib = libcoap_client("-B", "60", "-P", via, f"{origin}/mib")
    assert mib.returncode == 0, mib.stderr
    assert mib.stdout == bytes(i * 7 % 251 for i in range(1 << 20))
