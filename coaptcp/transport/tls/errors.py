"""The ways a coaps+tcp connection fails to be set up (RFC 8323 section 9).

Every one is a :class:`TLSFailure`, itself a :class:`~coaptcp.core.errors.CoapTcpError`;
the handshake Deferred of :func:`~coaptcp.transport.tls.connect.connect_tls` fails with one.
"""

from __future__ import annotations

from OpenSSL import SSL
from twisted.python.failure import Failure

from coaptcp.core.errors import CoapTcpError
from coaptcp.transport.tls.settings import describe_ssl_error

__all__ = [
    "ALPNNotNegotiated",
    "CertificateRejected",
    "HandshakeFailed",
    "HandshakeTimeout",
    "InsecureTLSWarning",
    "TLSFailure",
    "as_tls_failure",
    "failure_kind",
    "verify_error_text",
]


class TLSFailure(CoapTcpError):
    """A coaps+tcp connection could not be set up (the subclasses say why)."""


class HandshakeTimeout(TLSFailure):
    """The TLS handshake did not finish within the handshake timeout."""


class HandshakeFailed(TLSFailure):
    """OpenSSL ended the handshake (an alert from the peer, no shared cipher or ALPN
    protocol, a wrong PSK, a rejected client certificate) or the peer closed during it."""


class CertificateRejected(TLSFailure):
    """The server's certificate did not verify: untrusted issuer, expired, or issued for
    another name (checked with ``service_identity``, RFC 6125)."""


class ALPNNotNegotiated(TLSFailure):
    """ALPN did not select "coap" where RFC 8323 section 8.2 requires it."""


class InsecureTLSWarning(UserWarning):
    """A client was configured not to verify servers (``ClientTLSSettings(insecure=True)``)."""


# OpenSSL's X509_V_ERR_* numbers for the failures people meet in practice.
_VERIFY_ERRORS = {
    2: "unable to get the issuer certificate",
    9: "the certificate is not yet valid",
    10: "the certificate has expired",
    18: "the certificate is self-signed and not trusted",
    19: "a self-signed certificate in the chain is not trusted",
    20: "its issuer is not a trusted CA",
    21: "unable to verify the first certificate",
    26: "the certificate is not meant for this purpose",
}


def verify_error_text(errno: int) -> str:
    """Why OpenSSL rejected a certificate, in words (its ``X509_V_ERR_*`` number)."""
    return _VERIFY_ERRORS.get(errno, f"verification error {errno}")


def as_tls_failure(reason: Failure) -> Failure:
    """Why a handshake failed, as a :class:`TLSFailure` (RFC 8323 section 9)."""
    if reason.check(TLSFailure):
        return reason
    if reason.check(SSL.Error):
        assert reason.value is not None
        return Failure(HandshakeFailed(f"TLS handshake failed: {describe_ssl_error(reason.value)}"))
    return Failure(
        HandshakeFailed(f"connection closed during the TLS handshake: {reason.getErrorMessage()}")
    )


#: Words in OpenSSL's reason strings, and the kind of failure each says (the first that
#: matches wins), for :func:`failure_kind`.
_SSL_KINDS = (
    ("no shared cipher", "no_shared_cipher"),
    ("no suitable signature", "no_shared_cipher"),
    ("alert", "peer_alert"),
    ("certificate", "certificate"),
    ("psk", "psk"),
    ("version", "version"),
    ("protocol", "version"),
    ("http request", "not_tls"),
    ("wrong ssl", "not_tls"),
    ("packet length", "not_tls"),
)


def failure_kind(reason: Failure) -> str:
    """Why a handshake failed, as one word of a short fixed set (the ``reason`` label of
    ``coap_tls_handshake_failures_total``, see :mod:`coaptcp.metrics`): ``timeout``,
    ``alpn`` (RFC 8323 section 8.2), ``certificate``, ``rejected`` (another check after
    the handshake), ``no_shared_cipher``, ``peer_alert`` (the peer ended it with an
    alert, RFC 8446 section 6.2), ``psk``, ``version``, ``not_tls``, ``tls_error``
    (another OpenSSL error) or ``closed`` (the peer closed during the handshake)."""
    if reason.check(HandshakeTimeout):
        return "timeout"
    if reason.check(ALPNNotNegotiated):
        return "alpn"
    if reason.check(CertificateRejected):
        return "certificate"
    if reason.check(TLSFailure):
        return "rejected"
    if reason.check(SSL.Error):
        args = getattr(reason.value, "args", ())
        entries = args[0] if args and isinstance(args[0], list) else []
        text = " ".join(str(entry[-1]) for entry in entries if entry).lower()
        for words, kind in _SSL_KINDS:
            if words in text:
                return kind
        return "tls_error"
    return "closed"
