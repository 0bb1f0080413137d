"""coaps:// (CoAP over DTLS, RFC 7252 section 9) with aiocoap 0.4.17 on loopback, both ways,
in PreSharedKey mode (section 9.1.3.1): aiocoap's DTLS is tinydtls (the DTLSSocket
package), which offers TLS_PSK_WITH_AES_128_CCM_8, the suite RFC 7252 makes mandatory.

aiocoap's client against ``twistd coaptcp --dtls``: GET, a 1 MiB block-wise GET and a
wrong key; our ``coaptcp-client`` against aiocoap's ``tinydtls_server``: GET, POST and a
wrong key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from peers import HERE, Completed, RunningPeer, aiocoap_client, cli_path, free_port, run, run_server
from peers import twistd_path as _twistd
from tls_peers import PSK_IDENTITY, PSK_KEY, free_port_pair

pytestmark = pytest.mark.interop


def test_aiocoap_has_its_dtls_transport() -> None:
    # Not a skip: without DTLSSocket every test below would fail for that reason alone.
    import DTLSSocket  # noqa: F401
    from aiocoap.defaults import dtls_missing_modules

    assert dtls_missing_modules() == []


@pytest.fixture(scope="module")
def dtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPeer]:
    """``twistd coaptcp --dtls`` with a PSK file."""
    keys = tmp_path_factory.mktemp("aiocoap-dtls") / "keys.txt"
    keys.write_text(f"{PSK_IDENTITY} text:{PSK_KEY}\n")
    port = free_port()
    argv = [_twistd(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1",
            "--dtls", f"udp:{port}:interface=127.0.0.1", "--psk-file", str(keys)]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def credentials_file(directory: Path, port: int, key: str) -> Path:
    """aiocoap's client credentials: this PSK for coaps:// on 127.0.0.1:port."""
    path = directory / f"credentials-{port}-{len(key)}.json"
    path.write_text(json.dumps({
        f"coaps://127.0.0.1:{port}/*": {
            "dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": PSK_IDENTITY}},
        },
    }))
    return path


def aiocoap_get(tmp_path: Path, port: int, path: str, key: str = PSK_KEY) -> Completed:
    return aiocoap_client("--credentials", str(credentials_file(tmp_path, port, key)),
                          f"coaps://127.0.0.1:{port}/{path}")


def test_aiocoap_client_psk_get(dtls_server: RunningPeer, tmp_path: Path) -> None:
    result = aiocoap_get(tmp_path, dtls_server.port, "hello")
    assert (result.returncode, result.stdout) == (0, b"Hello, world!"), result.stderr


def test_aiocoap_client_blockwise_get_of_a_mebibyte(dtls_server: RunningPeer,
                                                    tmp_path: Path) -> None:
    result = aiocoap_get(tmp_path, dtls_server.port, "big")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 1024 * 1024


def test_aiocoap_client_with_a_wrong_key_gets_nothing(dtls_server: RunningPeer,
                                                      tmp_path: Path) -> None:
    # A wrong PSK makes the client's Finished fail its MAC check, and DTLS drops such
    # records without a word (RFC 6347 section 4.1.2.7): aiocoap waits on, so it is
    # stopped after a while; it must have received nothing.
    credentials = credentials_file(tmp_path, dtls_server.port, "not the key")
    argv = [sys.executable, "-m", "aiocoap.cli.client", "--credentials", str(credentials),
            f"coaps://127.0.0.1:{dtls_server.port}/hello"]
    try:
        done = childproc.run(argv, capture_output=True, timeout=15)
    except subprocess.TimeoutExpired as stopped:
        output = stopped.stdout or b""
    else:
        assert done.returncode != 0
        output = done.stdout
    assert b"Hello" not in output
    assert aiocoap_get(tmp_path, dtls_server.port, "hello").stdout == b"Hello, world!"


@pytest.fixture(scope="module")
def aiocoap_dtls_server() -> Iterator[RunningPeer]:
    """aiocoap's tinydtls_server: coap+tcp on port (to see it is up), DTLS on port + 1."""
    port = free_port_pair()
    argv = [sys.executable, str(HERE / "aiocoap_dtls_peer.py"), str(port), PSK_IDENTITY,
            PSK_KEY]
    with run_server(argv, port, cwd=str(HERE)) as peer:
        yield peer


def cli(*args: str) -> Completed:
    result = run([cli_path(), *args])
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def test_our_client_psk_get_from_aiocoap(aiocoap_dtls_server: RunningPeer) -> None:
    result = cli("--psk-identity", PSK_IDENTITY, "--psk-key", PSK_KEY,
                 f"coaps://127.0.0.1:{aiocoap_dtls_server.port + 1}/hello")
    assert (result.returncode, result.stdout.strip()) == (0, b"hello from aiocoap over dtls"), \
        result.stderr


def test_our_client_psk_post_to_aiocoap(aiocoap_dtls_server: RunningPeer) -> None:
    result = cli("-m", "POST", "--psk-identity", PSK_IDENTITY, "--psk-key", PSK_KEY,
                 "--payload", "ping over dtls",
                 f"coaps://127.0.0.1:{aiocoap_dtls_server.port + 1}/echo")
    assert result.returncode == 0, result.stderr
    assert b"ping over dtls" in result.stdout


def test_our_client_with_a_wrong_key_fails_cleanly(aiocoap_dtls_server: RunningPeer) -> None:
    result = cli("--psk-identity", PSK_IDENTITY, "--psk-key", "not the key", "--timeout", "5",
                 f"coaps://127.0.0.1:{aiocoap_dtls_server.port + 1}/hello")
    assert result.returncode != 0 and b"hello" not in result.stdout
