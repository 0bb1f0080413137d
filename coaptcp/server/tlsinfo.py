"""Who is at the other end of a TLS connection: :class:`TLSInfo` (RFC 8323 section 9).

Resources see it as ``request.tls`` (``None`` on plain TCP) and can authorize on it: the
peer's certificate (subject, subjectAltName) in Certificate mode, the PSK identity in
PreSharedKey mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = ["TLSInfo"]


@dataclass(frozen=True)
class TLSInfo:
    """The outcome of one TLS handshake.

    :ivar version: the protocol version, e.g. ``"TLSv1.3"``.
    :ivar cipher: the OpenSSL name of the cipher suite.
    :ivar alpn: the negotiated ALPN protocol (``"coap"``) or ``None`` if none was.
    :ivar server_name: the SNI name the client sent (RFC 6066), if any.  On a server it is
        also the requests' default Uri-Host (RFC 8323 section 8.5).
    :ivar peer_certificate: the peer's verified certificate, or ``None`` (no certificate
        asked for, or PSK).
    :ivar psk_identity: the PSK identity of a PSK handshake, else ``None``.
    """

    version: str
    cipher: str
    alpn: str | None = None
    server_name: str | None = None
    peer_certificate: x509.Certificate | None = None
    psk_identity: bytes | None = None

    @property
    def peer_subject(self) -> str | None:
        """The peer certificate's subject as an RFC 4514 string (``"CN=sensor-17,O=Acme"``)."""
        if self.peer_certificate is None:
            return None
        return self.peer_certificate.subject.rfc4514_string()

    @property
    def peer_san(self) -> tuple[str, ...]:
        """The peer certificate's subjectAltName entries, as ``"DNS:name"``,
        ``"IP:address"``, ``"URI:uri"`` or ``"email:address"`` (RFC 5280 section 4.2.1.6)."""
        if self.peer_certificate is None:
            return ()
        try:
            extension = self.peer_certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
        except x509.ExtensionNotFound:
            return ()
        names: list[str] = []
        for name in extension.value:
            if isinstance(name, x509.DNSName):
                names.append(f"DNS:{name.value}")
            elif isinstance(name, x509.IPAddress):
                names.append(f"IP:{name.value}")
            elif isinstance(name, x509.UniformResourceIdentifier):
                names.append(f"URI:{name.value}")
            elif isinstance(name, x509.RFC822Name):
                names.append(f"email:{name.value}")
        return tuple(names)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the PSK identity decoded as UTF-8 where it can be)."""
        identity = None
        if self.psk_identity is not None:
            identity = self.psk_identity.decode("utf-8", errors="backslashreplace")
        return {
            "version": self.version,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "server_name": self.server_name,
            "peer_subject": self.peer_subject,
            "peer_san": list(self.peer_san),
            "psk_identity": identity,
        }
