"""Settings for CoAP over TLS and the pyOpenSSL contexts built from them (RFC 8323 section 9).

Two of RFC 8323's security modes are offered: Certificate (server certificates, optionally
client certificates) and PreSharedKey (TLS 1.2 PSK cipher suites, see
:mod:`coaptcp.transport.tls.psk`),
alone or together.  RawPublicKey (RFC 7250) is not: see ``docs/tls.md``.

Both sides speak TLS 1.2 and 1.3 only, with AEAD cipher suites (RFC 7525 / BCP 195, which
RFC 8323 section 9.1 points to for unconstrained peers, plus the CCM suites RFC 7925 makes
mandatory for constrained ones), no compression, no renegotiation and no session
resumption.  The server selects the ALPN protocol "coap" (RFC 8323 sections 8.2 and 11.7)
and answers a client that offers ALPN without "coap" with the no_application_protocol alert.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from OpenSSL import SSL

from coaptcp.core.errors import CoapTcpError
from coaptcp.transport.tls import psk

__all__ = [
    "ALPN_COAP",
    "CERTIFICATE_CIPHERS",
    "COAPS_TCP_PORT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "PSK_CIPHERS",
    "SESSION_ID_CONTEXT",
    "TLS13_CIPHERSUITES",
    "ClientTLSSettings",
    "NoCoapALPN",
    "ServerTLSSettings",
    "TLSConfigurationError",
    "describe_ssl_error",
    "load_psk_file",
    "parse_psk_file",
    "parse_psk_key",
]

#: The ALPN protocol identifier of CoAP over TLS (RFC 8323 section 11.7).
ALPN_COAP = b"coap"
#: The default port of coaps+tcp, the one port where ALPN is optional (RFC 8323 section 8.2).
COAPS_TCP_PORT = 5684
#: The server's session id context (OpenSSL's SSL_CTX_set_session_id_context): names the
#: application that owns a session; required once client certificates are verified.
SESSION_ID_CONTEXT = b"coaptcp"
#: Seconds a TLS handshake may take before the connection is dropped.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

#: TLS 1.2 suites for certificates: ECDHE with AEAD only (TLS 1.3 suites are OpenSSL's
#: defaults, all AEAD).  ECDHE-ECDSA-AES128-CCM8 is CoAP's mandatory suite (RFC 7252
#: section 9.1.3.3, RFC 7925 section 4.4).
CERTIFICATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-CCM",
        "ECDHE-ECDSA-AES128-CCM8",
    ]
)
#: TLS 1.3 suites, SHA-256 ones first: a TLS 1.3 PSK set through OpenSSL's TLS 1.2-style
#: callbacks is bound to SHA-256, and only works if the suite chosen uses that hash.
TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
#: TLS 1.2 PSK suites (RFC 4279 with AEAD: RFC 5487, 6655, 7905).  PSK-AES128-CCM8 is
#: CoAP's mandatory PSK suite (RFC 7252 section 9.1.3.1, RFC 7925 section 4.2).
PSK_CIPHERS = ":".join(
    [
        "ECDHE-PSK-CHACHA20-POLY1305",
        "PSK-AES128-GCM-SHA256",
        "PSK-AES256-GCM-SHA384",
        "PSK-CHACHA20-POLY1305",
        "PSK-AES128-CCM",
        "PSK-AES128-CCM8",
    ]
)

_PathLike = str | os.PathLike[str]


class TLSConfigurationError(CoapTcpError, ValueError):
    """A TLS setting cannot be used: a missing or unreadable file, a key that does not
    match its certificate, a malformed PSK file, an impossible combination."""


class NoCoapALPN(CoapTcpError, SSL.Error):
    """The client offered ALPN protocols, none of them "coap" (RFC 8323 section 8.2).

    Raised inside the ALPN callback: OpenSSL then ends the handshake with the
    no_application_protocol alert (RFC 7301 section 3.2) and Twisted reports this error.
    Like OpenSSL's own errors, it carries a list of (library, function, reason) entries.
    """

    def __init__(self, offered: list[bytes]) -> None:
        reason = f"the client offered ALPN {offered!r} without 'coap'"
        super().__init__([("coaptcp", "alpn", reason)])
        self.offered = offered

    def __str__(self) -> str:
        return describe_ssl_error(self)


# -- PSK files --------------------------------------------------------------------------


def parse_psk_key(spec: str) -> bytes:
    """A key written ``hex:00a1...`` or ``text:any text`` (UTF-8) as bytes."""
    kind, sep, value = spec.partition(":")
    if not sep or kind not in ("hex", "text"):
        raise ValueError(f"a key is written hex:DIGITS or text:TEXT, not {spec!r}")
    if kind == "hex":
        try:
            key = binascii.unhexlify(value.strip())
        except (binascii.Error, ValueError):
            raise ValueError(f"hex:{value} is not an even number of hex digits") from None
    else:
        key = value.encode("utf-8")
    psk.check_psk(b"identity", key)
    return key


def parse_psk_file(text: str, source: str = "PSK file") -> dict[bytes, bytes]:
    """Parse a PSK file: one ``IDENTITY KEY`` per line, where KEY is ``hex:...`` or
    ``text:...``; blank lines and lines starting with ``#`` are ignored.

    The identity is the first word of the line (UTF-8, no white space); the key is the rest
    of the line.  Example::

        # identity    key
        sensor-17     hex:8f1b3c5d7e9fa0b2c4d6e8f0a1b3c5d7
        gateway       text:correct horse battery staple
    """
    keys: dict[bytes, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        if len(parts) != 2:
            raise TLSConfigurationError(f"{source}, line {number}: want IDENTITY KEY")
        name, spec = parts
        identity = name.encode("utf-8")
        try:
            key = parse_psk_key(spec)
            psk.check_psk(identity, key)
        except ValueError as error:
            raise TLSConfigurationError(f"{source}, line {number}: {error}") from None
        if identity in keys:
            raise TLSConfigurationError(f"{source}, line {number}: {name} appears twice")
        keys[identity] = key
    if not keys:
        raise TLSConfigurationError(f"{source} holds no identities")
    return keys


def load_psk_file(path: _PathLike) -> dict[bytes, bytes]:
    """Read a PSK file (see :func:`parse_psk_file`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TLSConfigurationError(f"cannot read PSK file {os.fspath(path)}: {error}") from None
    return parse_psk_file(text, f"PSK file {os.fspath(path)}")


# -- contexts ---------------------------------------------------------------------------


def _base_context(method: int) -> SSL.Context:
    context = SSL.Context(method)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    # No resumption: every connection authenticates in full, so the peer's certificate or
    # PSK identity is always known to the callbacks that record it.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return context


def _readable(path: _PathLike, what: str) -> bytes:
    if not os.path.isfile(path):
        raise TLSConfigurationError(f"{what} {os.fspath(path)} is not a readable file")
    return os.fsencode(path)


#: What TLS alerts received from the peer mean, in plain words (RFC 8446 section 6.2).
_ALERTS = {
    "certificate required": "the server requires a client certificate",
    "unknown ca": "the peer does not trust the CA that issued our certificate",
    "bad certificate": "the peer rejected our certificate",
    "certificate unknown": "the peer rejected our certificate",
    "unsupported certificate": "the peer rejected our certificate",
    "certificate expired": "the peer says our certificate has expired",
    "certificate revoked": "the peer says our certificate was revoked",
    "handshake failure": "the peer found nothing acceptable in our offer "
                         "(no cipher suite, key or certificate in common)",
    "internal error": "the peer failed internally during the handshake (its log says why)",
    "no application protocol": 'the peer does not offer CoAP over TLS (no ALPN "coap")',
    "decrypt error": "the keys did not match (a wrong pre-shared key?)",
    "bad record mac": "the keys did not match (a wrong pre-shared key?)",
    "unknown psk identity": "the peer does not know our pre-shared key identity",
    "illegal parameter": "the peer rejected a handshake parameter (with a pre-shared key: "
                         "most often a wrong key)",
    "protocol version": "no TLS version in common (coaptcp speaks TLS 1.2 and 1.3)",
    "access denied": "the peer refused us access",
}
#: OpenSSL's own reasons that are hard to read, in plain words.
_REASONS = {
    "wrong version number": "the peer did not answer in TLS (a plain coap+tcp port?)",
    "decryption failed or bad record mac": "the keys did not match (a wrong pre-shared key?)",
    "peer did not return a certificate": "the client sent no certificate, and one is required",
    "no shared cipher": "no cipher suite in common (a PSK client and a certificate-only "
                        "server, or the reverse?)",
    "unexpected eof while reading": "the peer closed the connection during the handshake",
    "binder does not verify": "the keys did not match (a wrong pre-shared key?)",
}


def _plain_reason(reason: str) -> str:
    """An OpenSSL reason string in plain words, keeping the original in parentheses."""
    words = reason.lower()
    _, alert, name = words.partition(" alert ")
    meaning = _ALERTS.get(name.strip()) if alert else _REASONS.get(words)
    if meaning is None:
        return reason
    if alert:
        return f"{meaning} (TLS alert {name.strip().replace(' ', '_')})"
    return f"{meaning} ({reason})"


def describe_ssl_error(error: BaseException) -> str:
    """A one-line description of an OpenSSL error in plain words, where the reason is a
    known one (TLS alerts from the peer, RFC 8446 section 6.2), else its reason strings."""
    args = getattr(error, "args", ())
    if args and isinstance(args[0], list):
        reasons = [_plain_reason(str(entry[-1])) for entry in args[0] if entry and entry[-1]]
        if reasons:
            return "; ".join(dict.fromkeys(reasons))
    return str(error) or type(error).__name__


def _load_identity(context: SSL.Context, certificate: _PathLike, private_key: _PathLike) -> None:
    cert_path = _readable(certificate, "certificate file")
    key_path = _readable(private_key, "private key file")
    mismatch = TLSConfigurationError(
        f"the private key in {os.fspath(private_key)} does not match the certificate "
        f"in {os.fspath(certificate)}"
    )
    try:
        context.use_certificate_chain_file(cert_path)
    except SSL.Error as error:
        raise TLSConfigurationError(
            f"certificate file {os.fspath(certificate)} holds no usable PEM certificate "
            f"({describe_ssl_error(error)})"
        ) from None
    try:
        context.use_privatekey_file(key_path)
    except SSL.Error as error:
        if "mismatch" in describe_ssl_error(error):
            raise mismatch from None
        raise TLSConfigurationError(
            f"private key file {os.fspath(private_key)} holds no usable PEM key "
            f"({describe_ssl_error(error)})"
        ) from None
    try:
        context.check_privatekey()
    except SSL.Error:
        raise mismatch from None


def _load_cas(context: SSL.Context, ca_file: _PathLike) -> None:
    path = _readable(ca_file, "CA file")
    try:
        context.load_verify_locations(path)
    except SSL.Error as error:
        raise TLSConfigurationError(
            f"CA file {os.fspath(ca_file)} holds no usable PEM certificate "
            f"({describe_ssl_error(error)})"
        ) from None


def _select_coap(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    if ALPN_COAP in offered:
        return ALPN_COAP
    raise NoCoapALPN(offered)


@dataclass(frozen=True)
class ServerTLSSettings:
    """How a coaps+tcp listener authenticates itself and its clients (RFC 8323 section 9).

    :param certificate: PEM file with the server certificate (and its chain).
    :param private_key: PEM file with the certificate's key; defaults to ``certificate``
        (one file holding both).
    :param client_ca: PEM file of the CAs that issue client certificates: clients must then
        present a certificate they issued (mutual TLS).  PSK clients are not asked.
    :param psk_keys: identity → key, for PreSharedKey mode (see :func:`load_psk_file`).
    :param psk_hint: the PSK identity hint sent to TLS 1.2 clients (none by default).
    :param require_alpn: also close connections from clients that offer no ALPN at all, on
        listeners not on port 5684 (RFC 8323 section 8.2).  By default they are served.
    :param handshake_timeout: seconds before a handshake that has not finished is dropped.
    """

    certificate: _PathLike | None = None
    private_key: _PathLike | None = None
    client_ca: _PathLike | None = None
    psk_keys: Mapping[bytes, bytes] | None = field(default=None, repr=False)
    psk_hint: bytes | None = None
    require_alpn: bool = False
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def __post_init__(self) -> None:
        if self.certificate is None and not self.psk_keys:
            raise TLSConfigurationError("TLS needs a certificate, PSK keys, or both")
        if self.certificate is None and (self.private_key or self.client_ca):
            raise TLSConfigurationError(
                "a private key or client CA only makes sense with a certificate"
            )
        if not self.handshake_timeout > 0:
            raise TLSConfigurationError("the handshake timeout must be positive")
        if self.psk_keys:
            for identity, key in self.psk_keys.items():
                try:
                    psk.check_psk(identity, key)
                except (TypeError, ValueError) as error:
                    raise TLSConfigurationError(str(error)) from None

    @property
    def modes(self) -> tuple[str, ...]:
        """The security modes served: "certificate" and/or "psk"."""
        return tuple(
            mode
            for mode, enabled in (("certificate", self.certificate), ("psk", self.psk_keys))
            if enabled
        )

    def configure_credentials(self, context: SSL.Context) -> None:
        """Give ``context`` these PSK keys and/or certificate, the cipher list for them and
        client certificate checks when ``client_ca`` is set (RFC 8323 section 9; RFC 7252
        section 9.1.3 for DTLS, which shares this).  Raises as :attr:`context` does."""
        context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        ciphers = []
        if self.psk_keys:
            # First: OpenSSL clients offer PSK suites only when they have a key to use.
            ciphers.append(PSK_CIPHERS)
            psk.use_psk_server(context, dict(self.psk_keys), hint=self.psk_hint)
        if self.certificate is not None:
            ciphers.append(CERTIFICATE_CIPHERS)
            _load_identity(context, self.certificate, self.private_key or self.certificate)
        if self.client_ca is not None:
            _load_cas(context, self.client_ca)
            context.load_client_ca(_readable(self.client_ca, "CA file"))
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        # OpenSSL refuses to make a session, which a TLS 1.3 external PSK handshake does
        # even without resumption, while client verification is on and no session id
        # context is set ("session id context uninitialized"): set one, always.
        context.set_session_id(SESSION_ID_CONTEXT)
        context.set_cipher_list(":".join(ciphers).encode("ascii"))

    @cached_property
    def context(self) -> SSL.Context:
        """The pyOpenSSL server context (built once, shared by all connections).

        Raises :class:`TLSConfigurationError` for unusable files and
        :class:`~coaptcp.transport.tls.psk.PSKUnavailable` when PSK keys are given but this
        cryptography/pyOpenSSL cannot do PSK.
        """
        context = _base_context(SSL.TLS_SERVER_METHOD)
        self.configure_credentials(context)
        if hasattr(context, "set_tls13_ciphersuites"):  # pyOpenSSL 25.3 and later
            context.set_tls13_ciphersuites(TLS13_CIPHERSUITES.encode("ascii"))
        context.set_alpn_select_callback(_select_coap)
        return context


@dataclass(frozen=True)
class ClientTLSSettings:
    """How a coaps+tcp client checks the server and proves who it is (RFC 8323 section 9).

    :param ca_file: PEM file of the CAs to trust; ``None`` trusts the system's store.
    :param certificate: PEM file with a client certificate (and chain), for servers that
        ask for one; :param private_key: its key (defaults to ``certificate``).
    :param psk: ``(identity, key)`` for PreSharedKey mode.
    :param insecure: do not verify the server's certificate or name at all.  For tests
        only: every connection logs a warning.
    :param require_alpn: close the connection unless the server selects "coap".  ``None``
        (the default) follows RFC 8323 section 8.2: required on every port but 5684.
    :param server_name: the name to send in SNI and to check the certificate against;
        defaults to the host connected to.  An IP address is checked against the
        certificate's IP addresses and sends no SNI (RFC 6066 section 3).
    :param handshake_timeout: seconds before an unfinished handshake is given up.
    """

    ca_file: _PathLike | None = None
    certificate: _PathLike | None = None
    private_key: _PathLike | None = None
    psk: tuple[bytes, bytes] | None = field(default=None, repr=False)
    insecure: bool = False
    require_alpn: bool | None = None
    server_name: str | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def __post_init__(self) -> None:
        if self.certificate is None and self.private_key is not None:
            raise TLSConfigurationError("a client private key needs a client certificate")
        if self.insecure and self.ca_file is not None:
            raise TLSConfigurationError("insecure and a CA file contradict each other")
        if not self.handshake_timeout > 0:
            raise TLSConfigurationError("the handshake timeout must be positive")
        if self.psk is not None:
            try:
                identity, key = self.psk
                psk.check_psk(identity, key)
            except (TypeError, ValueError) as error:
                raise TLSConfigurationError(f"bad PSK: {error}") from None

    def alpn_required(self, port: int) -> bool:
        """Whether a connection to ``port`` must negotiate "coap" (RFC 8323 section 8.2)."""
        if self.require_alpn is not None:
            return self.require_alpn
        return port != COAPS_TCP_PORT

    @cached_property
    def context(self) -> SSL.Context:
        """The pyOpenSSL client context (built once, shared by all connections)."""
        context = _base_context(SSL.TLS_CLIENT_METHOD)
        ciphers = []
        if self.psk is not None:
            ciphers.append(PSK_CIPHERS)
            psk.use_psk_client(context, *self.psk)
        ciphers.append(CERTIFICATE_CIPHERS)
        context.set_cipher_list(":".join(ciphers).encode("ascii"))
        context.set_alpn_protos([ALPN_COAP])
        if self.insecure:
            context.set_verify(SSL.VERIFY_NONE)
        else:
            context.set_verify(SSL.VERIFY_PEER)
            if self.ca_file is not None:
                _load_cas(context, self.ca_file)
            else:
                context.set_default_verify_paths()
        if self.certificate is not None:
            _load_identity(context, self.certificate, self.private_key or self.certificate)
        return context
