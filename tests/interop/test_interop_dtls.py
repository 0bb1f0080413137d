"""coaps:// (CoAP over DTLS, RFC 7252 section 9) with libcoap 4.3.1 on loopback, both ways.

libcoap's ``coap-client-openssl`` against ``twistd coaptcp --dtls`` (PSK with -k/-u,
certificates with -c/-j/-C, a 1 MiB block-wise GET, Observe), and our ``coaptcp-client``
against libcoap's ``coap-server-openssl`` (DTLS on port + 1).  Our server also listens on
TCP, only so that the fixture can see it is up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import Completed, RunningPeer, cli_path, free_port, libcoap_client, run, run_server
from peers import twistd_path as _twistd
from tls_peers import (
    PSK_IDENTITY,
    PSK_KEY,
    Credentials,
    free_port_pair,
    libcoap_psk_server_argv,
    libcoap_tls_server_argv,
    make_credentials,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_credentials(tmp_path_factory.mktemp("dtls"))


@pytest.fixture(scope="module")
def dtls_server(credentials: Credentials) -> Iterator[RunningPeer]:
    """``twistd coaptcp --dtls`` with a certificate and a PSK file."""
    port = free_port()
    argv = [_twistd(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1",
            "--dtls", f"udp:{port}:interface=127.0.0.1",
            "--certificate", str(credentials.server),
            "--private-key", str(credentials.server_key),
            "--psk-file", str(credentials.psk_file)]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def libcoap_dtls_server(credentials: Credentials) -> Iterator[RunningPeer]:
    """libcoap's server: DTLS with a certificate and a PSK on port + 1."""
    port = free_port_pair()
    with run_server(libcoap_tls_server_argv(port, credentials), port) as peer:
        yield peer


def cli(*args: str) -> Completed:
    result = run([cli_path(), *args])
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def psk_args() -> list[str]:
    return ["-k", PSK_KEY, "-u", PSK_IDENTITY]


# -- libcoap's client against our server ------------------------------------------------


def test_libcoap_client_psk_get(dtls_server: RunningPeer) -> None:
    result = libcoap_client(*psk_args(), f"coaps://127.0.0.1:{dtls_server.port}/hello")
    assert result.stdout == b"Hello, world!", result.stderr


def test_libcoap_client_wrong_psk_gets_nothing(dtls_server: RunningPeer) -> None:
    result = libcoap_client("-k", "not the key", "-u", PSK_IDENTITY,
                            f"coaps://127.0.0.1:{dtls_server.port}/hello")
    assert b"Hello" not in result.stdout


def test_libcoap_client_blockwise_1mib(dtls_server: RunningPeer) -> None:
    result = libcoap_client(*psk_args(), f"coaps://127.0.0.1:{dtls_server.port}/big")
    assert len(result.stdout) == 1 << 20, (len(result.stdout), result.stderr)


def test_libcoap_client_certificate(dtls_server: RunningPeer, credentials: Credentials) -> None:
    result = libcoap_client("-c", str(credentials.client), "-j", str(credentials.client_key),
                            "-C", str(credentials.ca),
                            f"coaps://127.0.0.1:{dtls_server.port}/hello")
    assert result.stdout == b"Hello, world!", result.stderr


def test_libcoap_client_observes(dtls_server: RunningPeer) -> None:
    result = libcoap_client(*psk_args(), "-s", "3",
                            f"coaps://127.0.0.1:{dtls_server.port}/time")
    # the registration's answer and then notifications, printed without separators
    stamps = re.findall(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result.stdout)
    assert len(stamps) >= 2, (result.stdout, result.stderr)


# -- our client against libcoap's server ------------------------------------------------


def test_our_cli_psk_to_libcoap(libcoap_dtls_server: RunningPeer) -> None:
    result = cli("--psk-identity", PSK_IDENTITY, "--psk-key", PSK_KEY,
                 f"coaps://127.0.0.1:{libcoap_dtls_server.port + 1}/")
    assert result.returncode == 0, result.stderr
    assert b"libcoap" in result.stdout


def test_our_cli_certificate_to_libcoap(libcoap_dtls_server: RunningPeer,
                                        credentials: Credentials) -> None:
    result = cli("--cafile", str(credentials.ca),
                 f"coaps://127.0.0.1:{libcoap_dtls_server.port + 1}/")
    assert result.returncode == 0, result.stderr
    assert b"libcoap" in result.stdout


def test_our_cli_rejects_untrusted_libcoap(libcoap_dtls_server: RunningPeer,
                                           credentials: Credentials) -> None:
    result = cli("--cafile", str(credentials.rogue_server),
                 f"coaps://127.0.0.1:{libcoap_dtls_server.port + 1}/")
    assert result.returncode != 0
    assert b"libcoap" not in result.stdout


# -- our client against our server ------------------------------------------------------


def test_our_cli_psk_and_certificate_to_ourselves(dtls_server: RunningPeer,
                                                  credentials: Credentials) -> None:
    by_psk = cli("--psk-identity", PSK_IDENTITY, "--psk-key", PSK_KEY,
                 f"coaps://127.0.0.1:{dtls_server.port}/hello")
    by_certificate = cli("--cafile", str(credentials.ca), "--cert", str(credentials.client),
                         "--key", str(credentials.client_key),
                         f"coaps://localhost:{dtls_server.port}/hello")
    assert (by_psk.returncode, by_psk.stdout) == (0, b"Hello, world!"), by_psk.stderr
    assert (by_certificate.returncode, by_certificate.stdout) == (0, b"Hello, world!"), \
        by_certificate.stderr


def test_our_cli_wrong_psk_fails_clearly(dtls_server: RunningPeer, tmp_path: Path) -> None:
    result = cli("--psk-identity", PSK_IDENTITY, "--psk-key", "wrong",
                 f"coaps://127.0.0.1:{dtls_server.port}/hello")
    assert result.returncode != 0
    assert b"DTLS" in result.stderr, result.stderr


# -- the gateway: coap+tcp in, coaps:// out -----------------------------------------------


def test_proxy_reaches_a_libcoap_dtls_psk_server(libcoap_dtls_server: RunningPeer) -> None:
    port = free_port()
    argv = [_twistd(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1", "--proxy", "127.0.0.0/8",
            "--proxy-psk-identity", PSK_IDENTITY, "--proxy-psk-key", PSK_KEY]
    with run_server(argv, port) as proxy:
        result = libcoap_client("-P", f"coap+tcp://127.0.0.1:{proxy.port}",
                                f"coaps://127.0.0.1:{libcoap_dtls_server.port + 1}/")
    assert b"libcoap" in result.stdout, result.stderr
    assert "Traceback" not in proxy.log_text()


# -- the gateway: coaps:// in, coap:// out --------------------------------------------------


def test_proxy_serves_a_coaps_client_and_reaches_a_libcoap_udp_server(
        libcoap_dtls_server: RunningPeer, credentials: Credentials) -> None:
    """libcoap's client over DTLS-PSK sends Proxy-Uri requests to our proxy's --dtls port;
    the proxy forwards them over plain UDP to libcoap's server (GET, then Observe)."""
    port = free_port()
    argv = [_twistd(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1",
            "--dtls", f"udp:{port}:interface=127.0.0.1",
            "--psk-file", str(credentials.psk_file), "--proxy", "127.0.0.0/8"]
    upstream = f"coap://127.0.0.1:{libcoap_dtls_server.port}"
    with run_server(argv, port) as proxy:
        through = ["-P", f"coaps://127.0.0.1:{proxy.port}", *psk_args()]
        result = libcoap_client(*through, f"{upstream}/")
        assert b"libcoap" in result.stdout, result.stderr
        observed = libcoap_client(*through, "-s", "3", f"{upstream}/time")
        refused = libcoap_client(*through, "coap://192.0.2.1/")  # not in --proxy
    stamps = re.findall(rb"\d\d:\d\d:\d\d", observed.stdout)
    assert len(set(stamps)) >= 2, (observed.stdout, observed.stderr)
    assert b"5.05" in refused.stderr and b"not allowed" in refused.stderr, refused
    log = proxy.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def test_observe_through_the_proxy_over_dtls_deregisters_upstream() -> None:
    """Our client observes libcoap's ``/time`` over coap+ws through the proxy, which
    observes it over coaps:// (PSK); when the client has had its notifications and
    leaves, the proxy deregisters from libcoap with GET Observe=1 (RFC 7641 section 3.6),
    which libcoap logs (``-v 7``) as the removal of its one subscription."""
    device_port, port = free_port_pair(), free_port()
    argv = [_twistd(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", "--proxy", "127.0.0.0/8",
            "--proxy-psk-identity", PSK_IDENTITY, "--proxy-psk-key", PSK_KEY]
    time_uri = f"coaps://127.0.0.1:{device_port + 1}/time"
    with run_server(libcoap_psk_server_argv(device_port), device_port) as device, \
            run_server(argv, port) as proxy:
        result = cli("--observe", "-c", "3", "-O", f"35,{time_uri}",
                     f"coap+ws://127.0.0.1:{port}/")
        assert result.returncode == 0, result.stderr
        clocks = re.findall(rb"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d", result.stdout)
        assert len(clocks) == 3 and len(set(clocks)) == 3, result.stdout
        deadline = time.monotonic() + 20
        while "removed subscription" not in device.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling a child's log: nothing to wait on
        log = device.log_text()
    assert f"got psk_identity: '{PSK_IDENTITY}'" in log
    assert log.count("create new subscription") == 1
    assert log.count("removed subscription") == 1, log
    assert re.search(r"c:GET .*\[ Observe:1,.*Uri-Path:time", log), log
    assert "Traceback" not in proxy.log_text()
