"""``twistd coaptcp --call-home``: parsing, usage errors (never tracebacks), and the
CallHome services makeService adds (serving the same tree as the listeners).

No sockets: options are parsed and services built but never started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tap_options import parse, usage_error
from tls_helpers import PKI
from twisted.application.internet import StreamServerEndpointService

from coaptcp.callhome import CallHome
from coaptcp.tap import plugin as tap

BACKEND = "coap+tcp://127.0.0.1:15683/rd?ep=node1"
SECURE = "coaps+tcp://localhost/rd?ep=sensor-17"


def test_call_home_alone_listens_nowhere() -> None:
    options = parse("--call-home", BACKEND)
    assert options["call-home"] == [BACKEND]
    assert options["tcp"] == [] and options["ws"] == [] and options["udp"] == []
    service = tap.makeService(options)
    [device] = list(service)
    assert isinstance(device, CallHome)
    assert not any(isinstance(child, StreamServerEndpointService) for child in service)
    assert device.directory.endpoint == "node1"
    assert device.directory.lifetime == 90_000
    assert device.keepalive == 30.0 and device.backoff.max_delay == 300.0
    assert device.site is service.factory.site  # the same tree as any listener
    assert device.connect_options.max_message_size == options["max-message-size"]
    assert not device.running


def test_call_home_beside_listeners_and_repeated() -> None:
    other = "coap+ws://127.0.0.1:8080/rd?ep=node1"
    options = parse("--tcp", "tcp:0", "--call-home", BACKEND, "--call-home", other,
                    "--call-home-lifetime", "600", "--call-home-keepalive", "0",
                    "--call-home-max-delay", "60")
    service = tap.makeService(options)
    listeners = [c for c in service if isinstance(c, StreamServerEndpointService)]
    devices = [c for c in service if isinstance(c, CallHome)]
    assert len(listeners) == 1
    assert [str(d.directory.uri) for d in devices] == [
        "coap+tcp://127.0.0.1:15683/rd?ep=node1&lt=600",
        "coap+ws://127.0.0.1:8080/rd?ep=node1&lt=600",
    ]
    assert all(d.keepalive is None and d.backoff.max_delay == 60 for d in devices)
    assert all(d.site is service.factory.site for d in devices)


def test_without_call_home_nothing_changes() -> None:
    options = parse()
    assert options["tcp"] == ["tcp:5683"]
    assert options["call-home-settings"] is None
    assert not any(isinstance(c, CallHome) for c in tap.makeService(options))


def test_tls_credentials_reach_the_device(pki: PKI) -> None:
    options = parse("--call-home", SECURE, "--call-home-ca", str(pki.ca),
                    "--call-home-certificate", str(pki.client),
                    "--call-home-key", str(pki.client_key))
    [device] = list(tap.makeService(options))
    tls = device.connect_options.tls
    assert (tls.cafile, tls.certfile, tls.keyfile) == (str(pki.ca), str(pki.client),
                                                       str(pki.client_key))
    assert options["tls"] == [] and options["tls-settings"] is None  # no TLS listener


def test_a_psk_file_gives_the_one_identity(tmp_path: Path) -> None:
    keys = tmp_path / "device.psk"
    keys.write_text("# the device's key\nsensor-17 hex:00112233445566778899\n")
    options = parse("--call-home", SECURE, "--call-home-psk-file", str(keys))
    [device] = list(tap.makeService(options))
    tls = device.connect_options.tls
    assert (tls.psk_identity, tls.psk_key) == (b"sensor-17", bytes.fromhex("00112233445566778899"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--call-home", "coap://127.0.0.1/rd?ep=n"], "no connection to call home over"),
        (["--call-home", "coap+tcp://127.0.0.1/rd"], "name the endpoint with ?ep=NAME"),
        (["--call-home", "coap+tcp://127.0.0.1?ep=n"], "path of the directory"),
        (["--call-home", "ftp://x/rd?ep=n"], "--call-home ftp://x/rd?ep=n"),
        (["--call-home", BACKEND, "--call-home-lifetime", "0"], "from 1 to 4294967295"),
        (["--call-home", BACKEND, "--call-home-lifetime", "1h"], "whole number of seconds"),
        (["--call-home", "coap+tcp://h/rd?ep=n&lt=5", "--call-home-lifetime", "6"], "differs"),
        (["--call-home", BACKEND, "--call-home-keepalive", "-1"], "must be positive"),
        (["--call-home", BACKEND, "--call-home-keepalive", "x"], "number of seconds"),
        (["--call-home", BACKEND, "--call-home-max-delay", "0"], "must be positive"),
        (["--call-home", BACKEND, "--call-home-max-delay", "0.5"], "at least 1 s"),
        (["--call-home-lifetime", "60"], "--call-home-lifetime needs --call-home"),
        (["--call-home", BACKEND, "--call-home-ca", "{ca}"], "for coaps+tcp or coaps+ws"),
        (["--call-home", SECURE, "--call-home-ca", "{missing}"], "is not a readable file"),
        (["--call-home", SECURE, "--call-home-key", "{key}"],
         "--call-home-key needs --call-home-certificate"),
        (["--call-home", SECURE, "--call-home-certificate", "{client}",
          "--call-home-key", "{ca}"], "--call-home TLS:"),
        (["--call-home", SECURE, "--call-home-psk-file", "{two_keys}"], "exactly one"),
        (["--call-home", "coaps+ws://h/rd?ep=n", "--call-home-psk-file", "{one_key}"],
         "coaps+tcp only"),
        (["--call-home", BACKEND, "--workers", "2"], "cannot be combined with --workers"),
    ],
)
def test_usage_errors(args: list[str], needle: str, pki: PKI, tmp_path: Path) -> None:
    two_keys = tmp_path / "two.psk"
    two_keys.write_text("a hex:00112233\nb hex:44556677\n")
    one_key = tmp_path / "one.psk"
    one_key.write_text("a hex:00112233\n")
    values = {"ca": pki.ca, "missing": tmp_path / "nope.pem", "key": pki.client_key,
              "client": pki.client, "two_keys": two_keys, "one_key": one_key}
    message = usage_error(*[arg.format(**values) for arg in args])
    assert needle in message, message
