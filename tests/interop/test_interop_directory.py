"""The resource directory with real peers over loopback (RFC 9176).

Our server runs ``twistd coaptcp --rd`` on coap+tcp and on UDP.  libcoap's
``coap-client-openssl`` and aiocoap's client register over UDP (the registration stays
for its lifetime) and over coap+tcp (it stays as long as the client's connection: a
one-shot client's ends when it exits, one that keeps its connection with ``-G`` stays
meanwhile); lookups over either transport return them, update and removal work on the
location the directory gave.  Over coaps+tcp the endpoint name must be the client's PSK
identity or a name of its certificate (RFC 9176 section 8.2).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator

import childproc
import pytest
from peers import (
    STARTUP_DEADLINE,
    RunningPeer,
    aiocoap_client,
    coaptcp_server_argv,
    free_port,
    libcoap_client,
    require_binary,
    run_server,
)
from test_interop_udp import free_udp_port
from tls_peers import (
    PSK_HEX_IDENTITY,
    PSK_HEX_KEY,
    Credentials,
    coaptcp_tls_server_argv,
    make_credentials,
)

from coaptcp.directory import parse_links

pytestmark = pytest.mark.interop

LINKS = "</sensors/temp>;rt=temperature;if=sensor"


class Directory:
    """Our server with ``--rd``: its coap+tcp and coap:// addresses."""

    def __init__(self, peer: RunningPeer, udp_port: int) -> None:
        self.peer = peer
        self.tcp = f"coap+tcp://127.0.0.1:{peer.port}"
        self.udp = f"coap://127.0.0.1:{udp_port}"

    def lookup(self, kind: str, query: str = "", via: str | None = None) -> str:
        uri = f"{via or self.tcp}/rd-lookup/{kind}" + (f"?{query}" if query else "")
        got = libcoap_client(uri)
        assert got.returncode == 0, got.stderr
        return got.stdout.decode()

    def endpoints(self) -> list[str]:
        return [link.values("ep")[0] for link in parse_links(self.lookup("ep"))]


@pytest.fixture(scope="module")
def rd() -> Iterator[Directory]:
    port, udp_port = free_port(), free_udp_port()
    argv = [*coaptcp_server_argv(port), "--udp", f"udp:{udp_port}:interface=127.0.0.1", "--rd"]
    with run_server(argv, port) as peer:
        yield Directory(peer, udp_port)
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a lookup) until it holds, within the startup deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)  # polling another process's state: nothing to wait on


def test_libcoap_discovers_the_directory(rd: Directory) -> None:
    for via in (rd.tcp, rd.udp):
        got = libcoap_client(f"{via}/.well-known/core?rt=core.rd*")
        assert got.returncode == 0, got.stderr
        assert {link.target for link in parse_links(got.stdout.decode())} == {
            "/rd", "/rd-lookup/ep", "/rd-lookup/res"}


def test_libcoap_registers_over_udp_and_lookups_return_it(rd: Directory) -> None:
    got = libcoap_client("-m", "post", "-t", "40", "-e", LINKS, f"{rd.udp}/rd?ep=lc-udp&lt=600")
    assert got.returncode == 0, got.stderr
    for via in (rd.tcp, rd.udp):
        [link] = parse_links(rd.lookup("res", "ep=lc-udp", via=via))
        assert re.fullmatch(r"coap://127\.0\.0\.1:\d+/sensors/temp", link.target), link
        assert link.values("rt") == ["temperature"]
    [endpoint] = parse_links(rd.lookup("ep", "ep=lc-udp"))
    assert endpoint.target.startswith("/rd/") and endpoint.values("rt") == ["core.rd-ep"]
    # A temperature lookup finds it by its resource, an endpoint lookup too (section 6.2).
    assert "lc-udp" in rd.lookup("ep", "rt=temperature")


def test_libcoap_over_coap_tcp_is_registered_while_its_connection_lasts(rd: Directory) -> None:
    # -G repeats the POST every second on one connection: it keeps the connection open.
    client = childproc.popen(
        [require_binary("coap-client-openssl"), "-B", "60", "-m", "post", "-G", "60", "-e",
         LINKS, f"{rd.tcp}/rd?ep=lc-tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: "lc-tcp" in rd.endpoints(), "libcoap's registration shows")
        [link] = parse_links(rd.lookup("res", "ep=lc-tcp", via=rd.udp))
        assert re.fullmatch(r"coap\+tcp://127\.0\.0\.1:\d+/sensors/temp", link.target), link
    finally:
        client.terminate()
        client.wait(timeout=10)
    eventually(lambda: "lc-tcp" not in rd.endpoints(), "it is gone with its connection")


def test_a_one_shot_coap_tcp_registration_ends_with_the_connection(rd: Directory) -> None:
    got = libcoap_client("-m", "post", "-e", LINKS, f"{rd.tcp}/rd?ep=lc-once")
    assert got.returncode == 0, got.stderr
    eventually(lambda: "lc-once" not in rd.endpoints(), "it is gone with its connection")
    log = rd.peer.log_text()
    assert "Registered lc-once at /rd/" in log  # it was there, for as long as it was connected
    assert re.search(r"lc-once \(/rd/\w+\) is gone: its connection ended", log), log


def _aiocoap_register(uri: str) -> str:
    got = aiocoap_client("-m", "POST", "--content-format", "application/link-format",
                         "--payload", LINKS, uri)
    assert got.returncode == 0, got.stderr
    found = re.search(rb"Location options indicate new resource: (/rd/\w+)", got.stderr)
    assert found, got.stderr
    return found.group(1).decode()


def test_aiocoap_registers_updates_and_removes_over_udp(rd: Directory) -> None:
    location = _aiocoap_register(f"{rd.udp}/rd?ep=aio-udp&lt=600")
    assert "aio-udp" in rd.endpoints()
    got = libcoap_client("-m", "post", f"{rd.udp}{location}?lt=1200&base=coap://device.example")
    assert got.returncode == 0, got.stderr
    assert rd.lookup("res", "ep=aio-udp") == (
        "<coap://device.example/sensors/temp>;rt=temperature;if=sensor")
    got = libcoap_client(f"{rd.udp}{location}")  # GET: the links as registered
    assert got.stdout.decode() == LINKS
    assert libcoap_client("-m", "delete", f"{rd.udp}{location}").returncode == 0
    assert "aio-udp" not in rd.endpoints()


def test_aiocoap_registers_over_coap_tcp_until_it_releases(rd: Directory) -> None:
    location = _aiocoap_register(f"{rd.tcp}/rd?ep=aio-tcp")
    assert location.startswith("/rd/")
    # aiocoap's client sends Release as it exits: the registration ends with it.
    eventually(lambda: "aio-tcp" not in rd.endpoints(), "it is gone with its connection")
    assert f"aio-tcp ({location}) is gone: its connection ended" in rd.peer.log_text()


@pytest.fixture(scope="module")
def rd_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Credentials, RunningPeer]]:
    credentials = make_credentials(tmp_path_factory.mktemp("rd-tls"))
    port = free_port()
    argv = [*coaptcp_tls_server_argv(port, credentials, "--client-ca", str(credentials.ca)),
            "--rd"]
    with run_server(argv, port) as peer:
        yield f"coaps+tcp://localhost:{port}", credentials, peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def test_over_tls_the_endpoint_name_must_be_the_psk_identity(
    rd_tls: tuple[str, Credentials, RunningPeer],
) -> None:
    uri, _, peer = rd_tls
    psk = ("-u", PSK_HEX_IDENTITY, "-k", bytes.fromhex(PSK_HEX_KEY).decode())
    got = libcoap_client(*psk, "-m", "post", "-e", LINKS, f"{uri}/rd?ep={PSK_HEX_IDENTITY}")
    assert got.returncode == 0 and b"4.03" not in got.stdout + got.stderr, got
    assert f"Registered {PSK_HEX_IDENTITY} at /rd/" in peer.log_text()
    got = libcoap_client(*psk, "-m", "post", "-e", LINKS, f"{uri}/rd?ep=someone-else")
    assert (f"4.03 this peer may not register as 'someone-else': its TLS identity is "
            f"'{PSK_HEX_IDENTITY}'") in (got.stdout + got.stderr).decode()  # libcoap: stderr
    assert "Registered someone-else" not in peer.log_text()


def test_over_tls_the_endpoint_name_must_be_in_the_client_certificate(
    rd_tls: tuple[str, Credentials, RunningPeer],
) -> None:
    uri, credentials, peer = rd_tls
    cert = ("-c", str(credentials.client), "-j", str(credentials.client_key),
            "-C", str(credentials.ca))
    got = libcoap_client(*cert, "-m", "post", "-e", LINKS, f"{uri}/rd?ep=interop-client")
    assert got.returncode == 0 and b"4.03" not in got.stdout + got.stderr, got
    assert "Registered interop-client at /rd/" in peer.log_text()
    got = libcoap_client(*cert, "-m", "post", "-e", LINKS, f"{uri}/rd?ep=gateway")
    assert ("4.03 this peer may not register as 'gateway': its TLS identity is "
            "'interop-client'") in (got.stdout + got.stderr).decode()
    assert "Registered gateway" not in peer.log_text()
