"""``twistd coaptcp --dtls``: parsing, usage errors, and the coaps:// listeners makeService
adds (RFC 7252 section 9).  No sockets: services are built, never started."""

from __future__ import annotations

from pathlib import Path

import pytest
from tap_options import parse, usage_error
from tls_helpers import PKI
from twisted.application.internet import StreamServerEndpointService, UDPServer

from coaptcp.tap import plugin
from coaptcp.transport.dtls import DtlsDatagramProtocol


@pytest.fixture
def psk_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text("gateway text:battery\n")
    return path


def test_dtls_listeners_serve_the_site_with_the_tls_credentials(psk_file: Path) -> None:
    options = parse("--tcp", "tcp:0", "--dtls", "udp:0", "--dtls",
                    "udp:0:interface=127.0.0.1", "--psk-file", str(psk_file))
    service = plugin.makeService(options)
    factory = service.factory  # type: ignore[attr-defined]
    servers = [s for s in service if isinstance(s, UDPServer)]  # type: ignore[attr-defined]
    assert len(servers) == 2
    assert servers[1].kwargs["interface"] == "127.0.0.1"
    protocol = servers[0].args[1]
    assert isinstance(protocol, DtlsDatagramProtocol)
    assert protocol.coap.site is factory.site
    # --dtls with credentials and no --tls: no coaps+tcp listener on tcp:5684
    streams = [s for s in service  # type: ignore[attr-defined]
               if isinstance(s, StreamServerEndpointService)]
    assert len(streams) == 1 and options["tls"] == []


def test_dtls_with_certificates(pki: PKI) -> None:
    options = parse("--dtls", "udp:0", "--certificate", str(pki.server),
                    "--private-key", str(pki.server_key))
    [server] = [s for s in plugin.makeService(options)  # type: ignore[attr-defined]
                if isinstance(s, UDPServer)]
    assert isinstance(server.args[1], DtlsDatagramProtocol)


def test_dtls_without_credentials_is_a_usage_error() -> None:
    assert "--dtls needs --certificate" in usage_error("--dtls", "udp:5684")


@pytest.mark.parametrize("description", ["tcp:5684", "udp:x", "udp:5684:mtu=9", "udp:70000"])
def test_bad_dtls_description_is_a_usage_error(description: str, psk_file: Path) -> None:
    assert "bad --dtls description" in usage_error("--dtls", description, "--psk-file",
                                                  str(psk_file))


def test_proxy_upstream_credentials() -> None:
    options = parse("--tcp", "tcp:0", "--proxy", "127.0.0.0/8", "--proxy-psk-identity",
                    "gateway", "--proxy-psk-key", "hex:6b6579")
    tls = options["proxy-settings"].tls
    assert (tls.psk_identity, tls.psk_key) == (b"gateway", b"key")
    assert "go together" in usage_error("--proxy", "any", "--proxy-psk-identity", "gateway")
    assert "not a readable file" in usage_error("--proxy", "any", "--proxy-cafile", "/nope")


def test_dtls_mtu_sets_the_largest_datagram(psk_file: Path) -> None:
    options = parse("--dtls", "udp:0", "--psk-file", str(psk_file), "--dtls-mtu", "576")
    [server] = [s for s in plugin.makeService(options)  # type: ignore[attr-defined]
                if isinstance(s, UDPServer)]
    assert server.args[1].mtu == 576
    options = parse("--dtls", "udp:0", "--psk-file", str(psk_file))
    [server] = [s for s in plugin.makeService(options)  # type: ignore[attr-defined]
                if isinstance(s, UDPServer)]
    assert server.args[1].mtu == 1232


@pytest.mark.parametrize("value", ["255", "65508", "1k", "-1"])
def test_dtls_mtu_out_of_range_is_a_usage_error(value: str, psk_file: Path) -> None:
    assert "--dtls-mtu must be a whole number of bytes in 256-65507" in usage_error(
        "--dtls", "udp:0", "--psk-file", str(psk_file), "--dtls-mtu", value)


def test_dtls_mtu_without_dtls_is_a_usage_error(psk_file: Path) -> None:
    assert "--dtls-mtu needs a --dtls listener" in usage_error("--dtls-mtu", "600")
    assert "--dtls-mtu needs a --dtls listener" in usage_error(
        "--tls", "tcp:0", "--psk-file", str(psk_file), "--dtls-mtu", "600")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--proxy-psk-identity", "gateway", "--proxy-psk-key", ""],
         "a PSK must be 1 to 256 bytes, not 0"),
        (["--proxy-psk-identity", "gateway", "--proxy-psk-key", "hex:"],
         "a PSK must be 1 to 256 bytes, not 0"),
        (["--proxy-psk-identity", "gateway", "--proxy-psk-key", "hex:" + "00" * 257],
         "a PSK must be 1 to 256 bytes, not 257"),
        (["--proxy-psk-identity", "", "--proxy-psk-key", "battery staple"],
         "a PSK identity must be 1 to 128 bytes"),
        (["--proxy-psk-identity", "x" * 129, "--proxy-psk-key", "battery staple"],
         "a PSK identity must be 1 to 128 bytes"),
        (["--proxy-psk-identity", "gateway", "--proxy-psk-key", "hex:6b6"],
         "--proxy-psk-key 'hex:6b6': bad hex digits"),
        (["--proxy-psk-key", "battery staple"], "go together"),
    ],
)
def test_bad_upstream_psk_is_a_usage_error(argv: list[str], message: str) -> None:
    assert message in usage_error("--tcp", "tcp:0", "--proxy", "127.0.0.0/8", *argv)


@pytest.mark.parametrize("argv", [
    ["--proxy-psk-identity", "gateway", "--proxy-psk-key", "battery staple"],
    ["--proxy-cafile", __file__],
])
def test_upstream_credentials_without_a_proxy_are_a_usage_error(argv: list[str]) -> None:
    assert f"{argv[0]} is for the proxy: give --proxy" in usage_error(
        "--tcp", "tcp:0", *argv)
    # With a reverse mount (and no forward proxy) they are the mount's credentials.
    options = parse("--tcp", "tcp:0", "--reverse", "/d=coaps://127.0.0.1/", *argv)
    tls = options["proxy-settings"].tls
    assert (tls.psk_identity, tls.cafile) == (
        (b"gateway", None) if len(argv) == 4 else (None, __file__))


@pytest.mark.parametrize(("argv", "attribute", "value"), [
    (["--proxy-max-connections", "5"], "max_connections", 5),
    (["--proxy-timeout", "3"], "timeout", 3.0),
    (["--proxy-cache-bytes", "0"], "cache_bytes", 0),
])
def test_proxy_bounds_without_a_proxy_are_a_usage_error(
    argv: list[str], attribute: str, value: float
) -> None:
    assert f"{argv[0]} is for the proxy: give --proxy" in usage_error("--tcp", "tcp:0", *argv)
    # With a forward proxy they are its bounds.
    settings = parse("--tcp", "tcp:0", "--proxy", "127.0.0.0/8", *argv)["proxy-settings"]
    assert getattr(settings, attribute) == value
