"""``twistd coaptcp`` TLS options: parsing, usage errors, and the listeners makeService adds.

No sockets: options are parsed and services built but never started; the built TLS factory
is exercised in memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import childproc
import pytest
from tap_options import parse, usage_error
from tls_helpers import PKI, connect_pair
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock

from coaptcp.tap import plugin as tap
from coaptcp.transport.tcp import CoapProtocol
from coaptcp.transport.tls.settings import ClientTLSSettings
from coaptcp.transport.tls.transport import CoapTLSFactory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def psk_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text("# identity key\nsensor-17 hex:00112233445566778899\ngateway text:battery\n")
    return path


def cert_args(pki: PKI) -> list[str]:
    return ["--certificate", str(pki.server), "--private-key", str(pki.server_key)]


def test_without_tls_options_nothing_changes() -> None:
    options = parse()
    assert options["tls"] == []
    assert options["tls-settings"] is None
    assert options["tcp"] == ["tcp:5683"]


def test_tls_endpoint_with_certificate(pki: PKI) -> None:
    options = parse("--tls", "tcp:0:interface=127.0.0.1", *cert_args(pki))
    assert options["tls"] == ["tcp:0:interface=127.0.0.1"]
    settings = options["tls-settings"]
    assert settings.modes == ("certificate",)
    assert settings.require_alpn is False
    assert settings.handshake_timeout == 10.0
    # TLS only: no clear-text listener unless asked for.
    assert options["tcp"] == []


def test_credentials_without_tls_listen_on_5684(pki: PKI) -> None:
    assert parse(*cert_args(pki))["tls"] == ["tcp:5684"]


def test_psk_file_alone(psk_file: Path) -> None:
    options = parse("--psk-file", str(psk_file))
    assert options["tls"] == ["tcp:5684"]
    settings = options["tls-settings"]
    assert settings.modes == ("psk",)
    assert settings.psk_keys == {b"sensor-17": bytes.fromhex("00112233445566778899"),
                                 b"gateway": b"battery"}


def test_everything_together(pki: PKI, psk_file: Path) -> None:
    options = parse(
        "--tcp", "tcp:0", "--tls", "tcp:0", "--tls", "tcp6:0:interface=\\:\\:1",
        *cert_args(pki), "--client-ca", str(pki.ca), "--psk-file", str(psk_file),
        "--require-alpn", "--tls-handshake-timeout", "2.5",
    )
    settings = options["tls-settings"]
    assert options["tcp"] == ["tcp:0"]
    assert options["tls"] == ["tcp:0", "tcp6:0:interface=\\:\\:1"]
    assert settings.modes == ("certificate", "psk")
    assert settings.client_ca == str(pki.ca)
    assert settings.require_alpn is True
    assert settings.handshake_timeout == 2.5


def test_certificate_file_may_hold_the_key(pki: PKI, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pki.server.read_bytes() + pki.server_key.read_bytes())
    assert parse("--certificate", str(combined))["tls-settings"].modes == ("certificate",)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tls", "tcp:0"], "--tls needs --certificate (and --private-key) or --psk-file"),
        (["--require-alpn"], "--tls needs --certificate"),
        (["--tls", "nonsense:0", "--psk-file", "{psk}"], "bad endpoint description"),
        (["--tls", "ssl:5684", "--psk-file", "{psk}"], "coaptcp adds TLS itself"),
        (["--certificate", "{missing}"], "is not a readable file"),
        (["--certificate", "{server}"], "holds no usable PEM key"),
        (["--certificate", "{server}", "--private-key", "{client_key}"], "does not match"),
        (["--psk-file", "{missing}"], "cannot read PSK file"),
        (["--psk-file", "{bad_psk}"], "line 1: a key is written hex:DIGITS or text:TEXT"),
        (["--psk-file", "{psk}", "--client-ca", "{ca}"], "only makes sense with a certificate"),
        (["--psk-file", "{psk}", "--tls-handshake-timeout", "0"], "must be a positive"),
        (["--psk-file", "{psk}", "--tls-handshake-timeout", "soon"], "must be a positive"),
    ],
)
def test_usage_errors(args: list[str], needle: str, pki: PKI, psk_file: Path, tmp_path: Path
                      ) -> None:
    bad_psk = tmp_path / "bad.txt"
    bad_psk.write_text("sensor 0011\n")
    values = {
        "psk": psk_file, "missing": tmp_path / "missing.pem", "server": pki.server,
        "client_key": pki.client_key, "bad_psk": bad_psk, "ca": pki.ca,
    }
    message = usage_error(*[arg.format(**values) for arg in args])
    assert needle in message


def test_make_service_adds_tls_listeners_sharing_the_coap_factory(pki: PKI) -> None:
    options = parse("--tcp", "tcp:0", "--tls", "tcp:0", "--tls", "tcp:0", *cert_args(pki))
    service = tap.makeService(options)
    children = list(service)
    assert len(children) == 3
    assert all(isinstance(c, StreamServerEndpointService) for c in children)
    plain, *secure = children
    assert plain.factory is service.factory
    assert all(isinstance(c.factory, CoapTLSFactory) for c in secure)
    assert all(c.factory.wrappedFactory is service.factory for c in secure)
    assert not any(c.running for c in children)


def test_made_tls_factory_serves_our_client(pki: PKI, psk_file: Path) -> None:
    options = parse("--tls", "tcp:0", *cert_args(pki), "--psk-file", str(psk_file))
    service = tap.makeService(options)
    tls_factory = next(iter(service)).factory
    clock = MemoryReactorClock()
    tls_factory.clock = clock
    tls_factory._clock = clock
    service.factory.reactor = clock
    by_psk = connect_pair(tls_factory, ClientTLSSettings(psk=(b"gateway", b"battery")),
                          clock=clock)
    assert isinstance(by_psk.handshake(), CoapProtocol)
    by_cert = connect_pair(tls_factory, ClientTLSSettings(ca_file=pki.ca), clock=clock)
    assert isinstance(by_cert.handshake(), CoapProtocol)


def run_twist(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return childproc.run(
        [sys.executable, "-m", "twisted", "coaptcp", *args],
        cwd="/tmp", env=env, capture_output=True, text=True, timeout=60,
    )


def test_help_documents_the_tls_options() -> None:
    result = run_twist("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--tls", "--certificate", "--private-key", "--client-ca", "--psk-file",
                   "--require-alpn", "--tls-handshake-timeout"):
        assert option in result.stdout


def test_bad_tls_file_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_twist("--tls", "tcp:0", "--certificate", str(tmp_path / "nope.pem"))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "nope.pem is not a readable file" in output
