"""CoAP over UDP (RFC 7252) against libcoap 4.3.1, both directions, over loopback.

Our server is ``twistd coaptcp --udp`` with the demo site; libcoap's
``coap-client-openssl`` sends it GET, PUT, POST and a 1 MiB block-wise GET (RFC 7959,
blocks of 1024), also through a relay that drops datagrams, so that both sides'
retransmission (RFC 7252 section 4.2) and our deduplication (section 4.5) are exercised.
Our client side sends requests to libcoap's ``coap-server-openssl``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from peers import (
    HERE,
    STARTUP_DEADLINE,
    RunningPeer,
    aiocoap_client,
    libcoap_client,
    libcoap_server_argv,
    require_binary,
    run,
    run_server,
    twistd_path,
)

pytestmark = pytest.mark.interop

PING = bytes((0x40, 0x00, 0x12, 0x34))  # an Empty CON: answered with a Reset (4.3)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_udp(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ping ``port`` until a Reset comes back (bounded)."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            probe.sendto(PING, ("127.0.0.1", port))
            with contextlib.suppress(OSError):
                answer = probe.recv(64)
                if answer[:1] == b"\x70" and answer[2:4] == PING[2:4]:
                    return
    raise RuntimeError(f"no answer to a ping on UDP {port}:\n{log.read_text()}")


@contextlib.contextmanager
def running_udp_server(*extra: str) -> Iterator[RunningPeer]:
    """``twistd coaptcp --udp`` with the demo site on a free port, ready once it answers
    a ping; stopped afterwards, and its log must show no traceback."""
    port = free_udp_port()
    workdir = tempfile.mkdtemp(prefix="coaptcp-udp-")
    log = Path(workdir) / "server.log"
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--udp", f"udp:{port}:interface=127.0.0.1", *extra]
    with log.open("wb") as sink:
        process = childproc.popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        wait_for_udp(port, process, log)
        yield RunningPeer(port, process, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert "Traceback" not in text and "Unhandled" not in text, text


@pytest.fixture(scope="module")
def udp_server() -> Iterator[RunningPeer]:
    with running_udp_server() as peer:
        yield peer


class LossyRelay:
    """Relays datagrams between one client and the server, dropping every ``nth`` one in
    each direction (the test's stand-in for a lossy network)."""

    def __init__(self, server_port: int, nth: int = 3) -> None:
        self.server = ("127.0.0.1", server_port)
        self.nth = nth
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.client: tuple[str, int] | None = None
        self.dropped = 0
        self.counts = {"up": 0, "down": 0}
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while self.running:
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            direction = "down" if source == self.server else "up"
            if direction == "up":
                self.client = source
            self.counts[direction] += 1
            if self.counts[direction] % self.nth == 0:
                self.dropped += 1
                continue
            target = self.client if direction == "down" else self.server
            if target is not None:
                self.sock.sendto(data, target)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def test_libcoap_gets_resources_over_udp(udp_server: RunningPeer) -> None:
    result = libcoap_client(f"coap://127.0.0.1:{udp_server.port}/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, world!"
    listing = libcoap_client(f"coap://127.0.0.1:{udp_server.port}/.well-known/core")
    assert b"</hello>" in listing.stdout and b"</store>" in listing.stdout


def test_libcoap_puts_and_posts_over_udp(udp_server: RunningPeer) -> None:
    uri = f"coap://127.0.0.1:{udp_server.port}/store"
    assert libcoap_client("-m", "put", "-e", "over udp", uri).returncode == 0
    assert libcoap_client(uri).stdout == b"over udp"
    posted = libcoap_client("-m", "post", "-e", "posted", uri)
    assert posted.returncode == 0 and posted.stdout == b"stored 6 bytes"
    assert libcoap_client(uri).stdout == b"posted"


def test_libcoap_downloads_a_mebibyte_block_wise_over_udp(udp_server: RunningPeer) -> None:
    result = libcoap_client("-B", "60", f"coap://127.0.0.1:{udp_server.port}/big")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 1024 * 1024
    assert result.stdout == big_body()


def test_libcoap_uploads_block_wise_over_udp(udp_server: RunningPeer, tmp_path: Path) -> None:
    body = bytes(range(97, 123)) * 2000  # 52,000 bytes: 51 blocks of 1024 and a part
    source = tmp_path / "body.txt"
    source.write_bytes(body)
    uri = f"coap://127.0.0.1:{udp_server.port}/store"
    put = libcoap_client("-m", "put", "-b", "1024", "-f", str(source), uri)
    assert put.returncode == 0, put.stderr
    assert libcoap_client("-B", "30", uri).stdout == body


def test_requests_survive_a_relay_that_drops_every_fourth_datagram(
    udp_server: RunningPeer, tmp_path: Path
) -> None:
    body = bytes(range(65, 91)) * 315  # 8,190 bytes: eight blocks of 1024
    source = tmp_path / "body.txt"
    source.write_bytes(body)
    direct = f"coap://127.0.0.1:{udp_server.port}/store"
    assert libcoap_client("-m", "put", "-b", "1024", "-f", str(source), direct).returncode == 0
    relay = LossyRelay(udp_server.port, nth=4)
    try:
        uri = f"coap://127.0.0.1:{relay.port}/store"
        got = libcoap_client("-B", "60", uri)  # every block retransmitted as needed
        assert got.returncode == 0, got.stderr
        assert got.stdout == body
        put = libcoap_client("-B", "60", "-m", "put", "-e", "lossy", uri)
        assert put.returncode == 0, put.stderr
    finally:
        relay.close()
    assert libcoap_client(direct).stdout == b"lossy"
    assert relay.dropped >= 2  # the relay really lost datagrams, both ways
    assert relay.counts["up"] > 8 and relay.counts["down"] > 8


def big_body() -> bytes:
    """What the demo's /big serves (1 MiB), computed the way the demo does."""
    from coaptcp.tap.demo import BigResource

    return BigResource().body


@pytest.fixture(scope="module")
def libcoap_udp_server() -> Iterator[RunningPeer]:
    port = free_udp_port()
    with run_server(libcoap_server_argv(port), port) as peer:
        yield peer


def our_client(*args: str) -> dict[str, str]:
    result = run([sys.executable, str(HERE / "coaptcp_udp_client.py"), *args])
    assert result.returncode in (0, 3), result.stderr
    answer: dict[str, str] = json.loads(result.stdout)
    return answer


def test_our_client_side_talks_to_libcoap_over_udp(libcoap_udp_server: RunningPeer) -> None:
    require_binary("coap-server-openssl")
    port = str(libcoap_udp_server.port)
    answer = our_client("127.0.0.1", port, "GET", "/")
    assert answer["code"].startswith("2.05"), answer
    assert "libcoap" in answer["payload"]
    created = our_client("127.0.0.1", port, "PUT", "/example_data", "from coaptcp")
    assert created["code"][:4] in ("2.01", "2.04"), created
    read = our_client("127.0.0.1", port, "GET", "/example_data")
    assert read["code"].startswith("2.05") and read["payload"] == "from coaptcp", read


def test_aiocoap_talks_to_us_over_udp(udp_server: RunningPeer) -> None:
    base = f"coap://127.0.0.1:{udp_server.port}"
    hello = aiocoap_client(f"{base}/hello")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == b"Hello, world!"
    put = aiocoap_client("-m", "PUT", "--payload", "from aiocoap", f"{base}/store")
    assert put.returncode == 0, put.stderr
    assert aiocoap_client(f"{base}/store").stdout.strip() == b"from aiocoap"
    non = aiocoap_client("--non", f"{base}/hello")  # a NON request gets a NON response
    assert non.returncode == 0 and non.stdout.strip() == b"Hello, world!"


def test_aiocoap_downloads_block_wise_over_udp(udp_server: RunningPeer, tmp_path: Path) -> None:
    body = bytes(range(97, 123)) * 4000  # 104,000 bytes: 102 blocks
    source = tmp_path / "body.txt"
    source.write_bytes(body)
    uri = f"coap://127.0.0.1:{udp_server.port}/store"
    put = aiocoap_client("-m", "PUT", "--payload", f"@{source}", uri)  # Block1 from aiocoap
    assert put.returncode == 0, put.stderr
    got = aiocoap_client(uri)
    assert got.returncode == 0, got.stderr
    assert got.stdout.rstrip(b"\n") == body


def test_libcoap_observes_over_udp_and_deregisters(udp_server: RunningPeer) -> None:
    relay = LossyRelay(udp_server.port, nth=1 << 30)  # a relay that drops nothing: a counter
    try:
        result = libcoap_client("-s", "4", f"coap://127.0.0.1:{relay.port}/time")
        assert result.returncode == 0, result.stderr
        stamps = result.stdout.decode().replace("Z", "Z\n").split()
        assert len(stamps) >= 3, result.stdout  # the first response and notifications
        assert len(set(stamps)) == len(stamps)  # each a new state of the clock
        time.sleep(1.5)  # what was under way when libcoap stopped has arrived
        settled = relay.counts["down"]
        time.sleep(3.0)  # the demo clock notifies every second
        # libcoap deregistered (GET with Observe=1) when it stopped: nothing more came.
        assert relay.counts["down"] == settled
    finally:
        relay.close()
