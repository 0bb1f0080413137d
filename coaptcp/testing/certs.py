"""Throwaway certificates for tests and test setups of coaps+tcp (never for production).

A private CA issues server and client certificates with ECDSA P-256 keys, the names given as
subjectAltName entries (DNS names and IP addresses, as RFC 6125 checks them) and the right
extended key usage.  Tests make expired or wrongly named certificates with the validity
and names they need.

From the command line, a complete test setup (CA, server and client certificates)::

    python -m coaptcp.testing.certs DIRECTORY [--host localhost --host 127.0.0.1]

writes ``ca.pem``, ``server.pem``, ``server.key``, ``client.pem`` and ``client.key``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "Issued", "main", "write_test_setup"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, certificate_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
              ) -> None:
        """Write the certificate and key as PEM files (the key readable by its owner only)."""
        Path(certificate_path).write_bytes(self.certificate_pem)
        key_file = Path(key_path)
        key_file.touch(mode=0o600)
        key_file.write_bytes(self.key_pem)


class CertificateAuthority:
    """A self-signed test CA.

    :param name: the CA's common name.
    :param not_before: start of validity (default: a day ago).
    :param not_after: end of validity (default: in 30 days).
    """

    def __init__(
        self,
        name: str = "coaptcp test CA",
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> None:
        now = _now()
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self.key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _DAY)
            .not_valid_after(not_after or now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate in PEM (what peers load as their trusted CA file)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *names: str,
        common_name: str | None = None,
        client: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Issued:
        """Issue a leaf certificate for ``names`` (DNS names or IP addresses, put in the
        subjectAltName); for a TLS client when ``client`` is true, else for a server."""
        now = _now()
        key = ec.generate_private_key(ec.SECP256R1())
        cn = common_name or (names[0] if names else "coaptcp test peer")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _DAY)
            .not_valid_after(not_after or now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
        return Issued(builder.sign(self.key, hashes.SHA256()), key)


def write_test_setup(
    directory: str | os.PathLike[str], hosts: Sequence[str] = DEFAULT_HOSTS
) -> dict[str, Path]:
    """Write a CA, a server certificate for ``hosts`` and a client certificate into
    ``directory``; returns the paths by name (``ca``, ``server``, ``server_key``,
    ``client``, ``client_key``)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority()
    paths = {
        "ca": target / "ca.pem",
        "server": target / "server.pem",
        "server_key": target / "server.key",
        "client": target / "client.pem",
        "client_key": target / "client.key",
    }
    paths["ca"].write_bytes(ca.certificate_pem)
    ca.issue(*hosts).write(paths["server"], paths["server_key"])
    ca.issue("coaptcp-test-client", client=True).write(paths["client"], paths["client_key"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coaptcp.testing.certs DIRECTORY [--host NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m coaptcp.testing.certs",
        description="Write a throwaway CA, server and client certificate for testing "
        "coaps+tcp (never use them in production).",
    )
    parser.add_argument("directory", help="where to write the PEM files")
    parser.add_argument(
        "--host",
        action="append",
        help="a DNS name or IP address of the server (repeatable; default: "
        + ", ".join(DEFAULT_HOSTS) + ")",
    )
    arguments = parser.parse_args(argv)
    paths = write_test_setup(arguments.directory, arguments.host or DEFAULT_HOSTS)
    for name, path in paths.items():
        print(f"{name:11} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
