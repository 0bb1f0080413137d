"""coaps+tcp peers for the interop tests: a throwaway PKI and PSK file, and the commands
that run our server, libcoap's and aiocoap's with them (see peers.py for the TCP ones).

libcoap's ``coap-server-openssl -p P`` serves TLS on P + 1; aiocoap's TLS server script
listens on the port it is given.  Every wait is bounded (peers.run_server).
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from peers import HERE, require_binary, run, twistd_path

from coaptcp.testing.certs import CertificateAuthority

PSK_IDENTITY = "gateway"
PSK_KEY = "battery staple"
PSK_HEX_IDENTITY = "sensor-17"
#: Written in the PSK file as hex; the bytes are printable ("sensor key 17") so that
#: libcoap 4.3.1, whose -k takes text only, can use the same key.
PSK_HEX_KEY = b"sensor key 17".hex()


@dataclass
class Credentials:
    """PEM files (a CA, a server certificate for localhost and 127.0.0.1, a client
    certificate, a server certificate from an untrusted CA) and a PSK file."""

    directory: Path
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    rogue_server: Path
    rogue_server_key: Path
    psk_file: Path


def make_credentials(directory: Path) -> Credentials:
    ca = CertificateAuthority("coaptcp interop CA")
    rogue = CertificateAuthority("untrusted CA")
    (directory / "ca.pem").write_bytes(ca.certificate_pem)
    ca.issue("localhost", "127.0.0.1").write(directory / "server.pem", directory / "server.key")
    ca.issue("interop-client", client=True).write(
        directory / "client.pem", directory / "client.key"
    )
    rogue.issue("localhost", "127.0.0.1").write(
        directory / "rogue.pem", directory / "rogue.key"
    )
    psk_file = directory / "keys.txt"
    psk_file.write_text(
        f"{PSK_IDENTITY} text:{PSK_KEY}\n{PSK_HEX_IDENTITY} hex:{PSK_HEX_KEY}\n"
    )
    return Credentials(
        directory, directory / "ca.pem", directory / "server.pem", directory / "server.key",
        directory / "client.pem", directory / "client.key", directory / "rogue.pem",
        directory / "rogue.key", psk_file,
    )


def free_port_pair() -> int:
    """A port P on 127.0.0.1 such that P and P + 1 are both free right now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def coaptcp_tls_server_argv(port: int, credentials: Credentials, *extra: str) -> list[str]:
    """Our ``twistd coaptcp`` with certificates and PSK on 127.0.0.1:port (TLS only)."""
    return [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tls", f"tcp:{port}:interface=127.0.0.1",
            "--certificate", str(credentials.server), "--private-key", str(credentials.server_key),
            "--psk-file", str(credentials.psk_file), *extra]


def libcoap_tls_server_argv(port: int, credentials: Credentials) -> list[str]:
    """libcoap's server with a certificate and a PSK; TLS on port + 1."""
    return [require_binary("coap-server-openssl"), "-A", "127.0.0.1", "-p", str(port),
            "-c", str(credentials.server), "-j", str(credentials.server_key),
            "-k", PSK_KEY, "-d", "10", "-v", "6"]


def libcoap_psk_server_argv(port: int, key: str = PSK_KEY) -> list[str]:
    """libcoap's server with a pre-shared key only (any identity): UDP and TCP on port,
    DTLS and TLS on port + 1.  ``-v 7`` logs the PSK identity it is given and each
    subscription it creates and removes (RFC 7641), as the gateway tests read them."""
    return [require_binary("coap-server-openssl"), "-A", "127.0.0.1", "-p", str(port),
            "-k", key, "-d", "10", "-v", "7"]


def aiocoap_tls_server_argv(port: int, credentials: Credentials) -> list[str]:
    """The aiocoap TLS server script beside this file, listening on port."""
    return [sys.executable, str(HERE / "aiocoap_tls_peer.py"), str(port),
            str(credentials.server), str(credentials.server_key)]


def coaptcp_tls_client(host: str, port: int, *args: str) -> dict[str, object]:
    """Our coaps+tcp client (coaptcp_tls_client.py); returns its JSON report (which says
    ``"error"`` when the connection could not be set up)."""
    result = run([sys.executable, str(HERE / "coaptcp_tls_client.py"), host, str(port), *args])
    lines = result.stdout.decode().strip().splitlines()
    if result.returncode != 0 or not lines:
        raise AssertionError(
            f"our TLS client failed ({result.returncode}):\n{result.stdout.decode()}\n"
            f"{result.stderr.decode()}"
        )
    report: dict[str, object] = json.loads(lines[-1])
    report["stderr"] = result.stderr.decode()
    return report
