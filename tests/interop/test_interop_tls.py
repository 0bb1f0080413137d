"""coaps+tcp interop on loopback, both directions (RFC 8323 sections 8.2 and 9).

- libcoap 4.3.1's ``coap-client-openssl`` against our ``twistd coaptcp --tls``: with
  certificates (server and client) and with PSK (``-u IDENTITY -k KEY``);
- aiocoap 0.4.17's client against our server (certificate, trusted through a credentials
  file);
- our client against libcoap's ``coap-server-openssl`` (certificate and PSK) and against an
  aiocoap TLS server.

Every peer runs on 127.0.0.1 with throwaway credentials made for the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import (
    RunningPeer,
    aiocoap_client,
    cli_path,
    free_port,
    libcoap_client,
    run,
    run_server,
)
from tls_peers import (
    PSK_HEX_IDENTITY,
    PSK_HEX_KEY,
    PSK_IDENTITY,
    PSK_KEY,
    Credentials,
    aiocoap_tls_server_argv,
    coaptcp_tls_client,
    coaptcp_tls_server_argv,
    free_port_pair,
    libcoap_tls_server_argv,
    make_credentials,
)

pytestmark = pytest.mark.interop

@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_credentials(tmp_path_factory.mktemp("tls-interop"))


def check_log(peer: RunningPeer) -> None:
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def our_server(credentials: Credentials) -> Iterator[RunningPeer]:
    """``twistd coaptcp`` serving the demo site over TLS, certificates and PSK."""
    port = free_port()
    with run_server(coaptcp_tls_server_argv(port, credentials), port) as peer:
        yield peer
    check_log(peer)


@pytest.fixture(scope="module")
def our_mutual_server(credentials: Credentials) -> Iterator[RunningPeer]:
    """Our server requiring client certificates from the CA (PSK clients still welcome)."""
    port = free_port()
    argv = coaptcp_tls_server_argv(port, credentials, "--client-ca", str(credentials.ca))
    with run_server(argv, port) as peer:
        yield peer
    check_log(peer)


@pytest.fixture(scope="module")
def libcoap_tls_server(credentials: Credentials) -> Iterator[RunningPeer]:
    """libcoap's server with a certificate and a PSK; yields its TLS port."""
    port = free_port_pair()
    with run_server(libcoap_tls_server_argv(port, credentials), port + 1) as peer:
        yield peer


@pytest.fixture(scope="module")
def aiocoap_tls_server(credentials: Credentials) -> Iterator[RunningPeer]:
    port = free_port()
    with run_server(aiocoap_tls_server_argv(port, credentials), port) as peer:
        yield peer


def info_from(stdout: bytes) -> dict[str, object]:
    info: dict[str, object] = json.loads(stdout)
    return info


def tls_of(info: dict[str, object]) -> dict[str, object]:
    tls = info["tls"]
    assert isinstance(tls, dict), info
    return tls


# -- libcoap's client against our server ----------------------------------------------------


def test_libcoap_client_certificate(our_server: RunningPeer, credentials: Credentials) -> None:
    result = libcoap_client("-C", str(credentials.ca),
                            f"coaps+tcp://localhost:{our_server.port}/info")
    info = info_from(result.stdout)
    assert info["secure"] is True
    assert info["host"] == "localhost"
    tls = tls_of(info)
    assert tls["server_name"] == "localhost"
    assert tls["alpn"] == "coap"  # libcoap offers ALPN in certificate mode
    assert tls["psk_identity"] is None
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")


def test_libcoap_client_large_response_over_tls(our_server: RunningPeer, credentials: Credentials
                                                ) -> None:
    from coaptcp.tap.demo import LargeResource

    result = libcoap_client("-C", str(credentials.ca),
                            f"coaps+tcp://localhost:{our_server.port}/large")
    assert result.stdout == LargeResource.body


def test_libcoap_client_psk_text_key(our_server: RunningPeer) -> None:
    result = libcoap_client("-u", PSK_IDENTITY, "-k", PSK_KEY,
                            f"coaps+tcp://127.0.0.1:{our_server.port}/info")
    tls = tls_of(info_from(result.stdout))
    assert tls["psk_identity"] == PSK_IDENTITY
    assert tls["peer_subject"] is None
    # libcoap 4.3.1 restricts PSK clients to TLS 1.2: a TLS 1.2 PSK cipher suite.  It
    # offers no ALPN in PSK mode, which we accept (RFC 8323 section 8.2 asks it of clients).
    assert tls["version"] == "TLSv1.2"
    assert "PSK" in str(tls["cipher"])
    assert tls["alpn"] is None


def test_libcoap_client_psk_key_from_a_hex_entry(our_server: RunningPeer) -> None:
    key = bytes.fromhex(PSK_HEX_KEY).decode("ascii")
    result = libcoap_client("-u", PSK_HEX_IDENTITY, "-k", key,
                            f"coaps+tcp://127.0.0.1:{our_server.port}/info")
    assert tls_of(info_from(result.stdout))["psk_identity"] == PSK_HEX_IDENTITY


def test_libcoap_client_psk_put_then_get(our_server: RunningPeer) -> None:
    uri = f"coaps+tcp://127.0.0.1:{our_server.port}/store"
    put = libcoap_client("-u", PSK_IDENTITY, "-k", PSK_KEY, "-m", "put", "-e", "by psk", uri)
    assert put.returncode == 0, put.stderr
    get = libcoap_client("-u", PSK_IDENTITY, "-k", PSK_KEY, uri)
    assert get.stdout == b"by psk"


def test_libcoap_client_wrong_psk_is_refused(our_server: RunningPeer) -> None:
    result = libcoap_client("-u", PSK_IDENTITY, "-k", "not the key",
                            f"coaps+tcp://127.0.0.1:{our_server.port}/info")
    assert b'"server"' not in result.stdout
    assert "TLS handshake with" in our_server.log_text()
    # The server is unharmed: the right key still works.
    good = libcoap_client("-u", PSK_IDENTITY, "-k", PSK_KEY,
                          f"coaps+tcp://127.0.0.1:{our_server.port}/hello")
    assert good.stdout == b"Hello, world!"


def test_libcoap_client_with_client_certificate(our_mutual_server: RunningPeer,
                                                credentials: Credentials) -> None:
    result = libcoap_client(
        "-C", str(credentials.ca), "-c", str(credentials.client), "-j", str(credentials.client_key),
        f"coaps+tcp://localhost:{our_mutual_server.port}/info",
    )
    tls = tls_of(info_from(result.stdout))
    assert tls["peer_subject"] == "CN=interop-client"
    assert tls["peer_san"] == ["DNS:interop-client"]


def test_libcoap_client_without_client_certificate_is_refused(our_mutual_server: RunningPeer,
                                                              credentials: Credentials) -> None:
    result = libcoap_client("-C", str(credentials.ca),
                            f"coaps+tcp://localhost:{our_mutual_server.port}/info")
    assert b'"server"' not in result.stdout
    # The server refuses the handshake; which side's close it sees first depends on
    # timing (in TLS 1.3 libcoap may close before our alert is read).
    log = our_mutual_server.log_text()
    assert "did not return a certificate" in log or (
        "failed: connection closed during the TLS handshake" in log
    ), log


def test_libcoap_psk_client_needs_no_certificate_on_a_mutual_server(
    our_mutual_server: RunningPeer,
) -> None:
    result = libcoap_client("-u", PSK_IDENTITY, "-k", PSK_KEY,
                            f"coaps+tcp://127.0.0.1:{our_mutual_server.port}/info")
    assert tls_of(info_from(result.stdout))["psk_identity"] == PSK_IDENTITY


# -- aiocoap's client against our server ----------------------------------------------------


def aiocoap_credentials(credentials: Credentials, port: int) -> Path:
    """aiocoap's client trusts a server through a JSON credentials file mapping a URI
    pattern to ``{"tlscert": {"certfile": CA}}`` (the file name must end in .json)."""
    path = credentials.directory / f"aiocoap-{port}.json"
    path.write_text(json.dumps(
        {f"coaps+tcp://localhost:{port}/*": {"tlscert": {"certfile": str(credentials.ca)}}}
    ))
    return path


def test_aiocoap_client_certificate(our_server: RunningPeer, credentials: Credentials) -> None:
    creds = aiocoap_credentials(credentials, our_server.port)
    result = aiocoap_client("--credentials", str(creds), "--no-pretty-print",
                            f"coaps+tcp://localhost:{our_server.port}/info")
    assert result.returncode == 0, result.stderr
    info = info_from(result.stdout)
    assert info["secure"] is True
    tls = tls_of(info)
    assert tls["alpn"] == "coap"
    assert tls["server_name"] == "localhost"


def test_aiocoap_client_large_response_over_tls(our_server: RunningPeer,
                                                credentials: Credentials) -> None:
    from coaptcp.tap.demo import LargeResource

    creds = aiocoap_credentials(credentials, our_server.port)
    result = aiocoap_client("--credentials", str(creds),
                            f"coaps+tcp://localhost:{our_server.port}/large")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == LargeResource.body.strip()


def test_aiocoap_client_does_not_trust_our_test_ca_by_default(our_server: RunningPeer) -> None:
    result = aiocoap_client(f"coaps+tcp://localhost:{our_server.port}/hello")
    assert result.returncode != 0
    assert b"Hello" not in result.stdout


# -- our client against libcoap's server ----------------------------------------------------


def test_our_client_certificate_to_libcoap(libcoap_tls_server: RunningPeer,
                                           credentials: Credentials) -> None:
    report = coaptcp_tls_client("localhost", libcoap_tls_server.port, "--ca",
                                str(credentials.ca), "GET", "/")
    assert report["code"] == "2.05", report
    assert "libcoap" in str(report["payload"])
    tls = report["tls"]
    assert isinstance(tls, dict)
    assert tls["alpn"] == "coap"
    assert tls["peer_subject"] == "CN=localhost"
    assert tls["server_name"] == "localhost"


def test_our_client_by_ip_address_to_libcoap(libcoap_tls_server: RunningPeer,
                                             credentials: Credentials) -> None:
    report = coaptcp_tls_client("127.0.0.1", libcoap_tls_server.port, "--ca",
                                str(credentials.ca), "GET", "/")
    assert report["code"] == "2.05", report
    tls = report["tls"]
    assert isinstance(tls, dict) and tls["server_name"] is None


@pytest.mark.parametrize("tls12", [False, True])
def test_our_client_psk_to_libcoap(libcoap_tls_server: RunningPeer, tls12: bool) -> None:
    args = ["--psk", PSK_IDENTITY, PSK_KEY, *(["--max-tls12"] if tls12 else []), "GET", "/"]
    report = coaptcp_tls_client("127.0.0.1", libcoap_tls_server.port, *args)
    assert report["code"] == "2.05", report
    tls = report["tls"]
    assert isinstance(tls, dict)
    assert tls["psk_identity"] == PSK_IDENTITY
    assert tls["peer_subject"] is None
    if tls12:
        assert tls["version"] == "TLSv1.2" and "PSK" in str(tls["cipher"])


def test_our_client_wrong_psk_to_libcoap(libcoap_tls_server: RunningPeer) -> None:
    report = coaptcp_tls_client("127.0.0.1", libcoap_tls_server.port,
                                "--psk", PSK_IDENTITY, "wrong key", "GET", "/")
    assert report.get("error") == "HandshakeFailed", report


def test_our_client_rejects_libcoap_under_another_name(libcoap_tls_server: RunningPeer,
                                                       credentials: Credentials) -> None:
    report = coaptcp_tls_client("127.0.0.1", libcoap_tls_server.port, "--ca",
                                str(credentials.ca), "--server-name", "coap.example.org",
                                "GET", "/")
    assert report.get("error") == "CertificateRejected", report
    assert "not valid for coap.example.org" in str(report["message"])


def test_our_client_uses_the_system_store_by_default(libcoap_tls_server: RunningPeer) -> None:
    report = coaptcp_tls_client("localhost", libcoap_tls_server.port, "GET", "/")
    assert report.get("error") == "CertificateRejected", report
    assert "not a trusted CA" in str(report["message"])


def test_our_insecure_client_connects_and_warns(libcoap_tls_server: RunningPeer) -> None:
    report = coaptcp_tls_client("localhost", libcoap_tls_server.port, "--insecure", "GET", "/")
    assert report["code"] == "2.05", report
    assert report["warnings"] == ["InsecureTLSWarning"]


# -- our client against aiocoap's TLS server ------------------------------------------------


def test_our_client_to_aiocoap_tls_server(aiocoap_tls_server: RunningPeer,
                                          credentials: Credentials) -> None:
    report = coaptcp_tls_client("localhost", aiocoap_tls_server.port, "--ca",
                                str(credentials.ca), "GET", "/hello")
    assert report["code"] == "2.05", report
    assert report["payload"] == "hello from aiocoap"
    tls = report["tls"]
    assert isinstance(tls, dict) and tls["alpn"] == "coap"


def test_our_client_sends_a_large_body_to_aiocoap_tls_server(aiocoap_tls_server: RunningPeer,
                                                             credentials: Credentials) -> None:
    # 4,000 bytes in one message (aiocoap's CSM allows it), spread over TLS records; our
    # CSM announces BERT, so aiocoap echoes it whole too.
    body = "0123456789abcdef" * 250
    report = coaptcp_tls_client("localhost", aiocoap_tls_server.port, "--ca",
                                str(credentials.ca), "--payload", body, "POST", "/echo")
    assert report["code"] == "2.04", report
    assert report["payload"] == body


# -- our client against our server ----------------------------------------------------------


def test_our_client_to_our_server_with_client_certificate(our_mutual_server: RunningPeer,
                                                          credentials: Credentials) -> None:
    report = coaptcp_tls_client(
        "localhost", our_mutual_server.port, "--ca", str(credentials.ca),
        "--cert", str(credentials.client), "--key", str(credentials.client_key), "GET", "/info",
    )
    assert report["code"] == "2.05", report
    info = json.loads(str(report["payload"]))
    assert info["tls"]["peer_subject"] == "CN=interop-client"


def test_our_client_psk_to_our_server(our_server: RunningPeer) -> None:
    key = bytes.fromhex(PSK_HEX_KEY).decode("ascii")
    report = coaptcp_tls_client("127.0.0.1", our_server.port, "--psk", PSK_HEX_IDENTITY, key,
                                "GET", "/info")
    assert report["code"] == "2.05", report
    info = json.loads(str(report["payload"]))
    assert info["tls"]["psk_identity"] == PSK_HEX_IDENTITY


def test_our_client_psk_to_our_mutual_server(our_mutual_server: RunningPeer) -> None:
    # PSK beside --client-ca (issue 13, item 4): a PSK client is not asked for a
    # certificate and is served, over TLS 1.3 as libcoap's TLS 1.2 client is above.
    key = bytes.fromhex(PSK_HEX_KEY).decode("ascii")
    report = coaptcp_tls_client("127.0.0.1", our_mutual_server.port, "--psk",
                                PSK_HEX_IDENTITY, key, "GET", "/info")
    assert report["code"] == "2.05", report
    info = json.loads(str(report["payload"]))
    assert info["tls"]["psk_identity"] == PSK_HEX_IDENTITY
    assert info["tls"]["version"] == "TLSv1.3"
    assert info["tls"]["peer_subject"] is None


def test_coaptcp_client_psk_to_our_mutual_server(our_mutual_server: RunningPeer) -> None:
    result = run([cli_path(), "--psk-identity", PSK_IDENTITY, "--psk-key", PSK_KEY,
                  f"coaps+tcp://127.0.0.1:{our_mutual_server.port}/info"])
    assert result.returncode == 0, result.stderr.decode()
    assert tls_of(info_from(result.stdout))["psk_identity"] == PSK_IDENTITY


def test_coaptcp_client_without_a_certificate_is_told_in_plain_words(
    our_mutual_server: RunningPeer, credentials: Credentials
) -> None:
    result = run([cli_path(), "--cafile", str(credentials.ca),
                  f"coaps+tcp://localhost:{our_mutual_server.port}/info"])
    assert result.returncode == 3
    err = result.stderr.decode()
    assert "the server requires a client certificate (TLS alert certificate_required)" in err
    assert "SSL routines" not in err and err.count("\n") == 1
