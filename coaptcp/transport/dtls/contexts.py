"""DTLS 1.2 contexts for coaps:// (RFC 7252 section 9) from the TLS settings of coaps+tcp.

The same :class:`~coaptcp.transport.tls.ServerTLSSettings` and
:class:`~coaptcp.transport.tls.ClientTLSSettings` describe both: PreSharedKey mode (RFC 7252
section 9.1.3.1, through :mod:`coaptcp.transport.tls.psk`) and Certificate mode (section
9.1.3.3).  RawPublicKey (section 9.1.3.2) is not offered, as for TLS.  DTLS has no ALPN in
RFC 7252, so none is offered or required.  The DTLS record layer is DTLS 1.2 (RFC 6347);
OpenSSL 3 has no DTLS 1.3.
"""

from __future__ import annotations

from OpenSSL import SSL

from coaptcp.transport.tls import psk
from coaptcp.transport.tls.settings import (
    CERTIFICATE_CIPHERS,
    PSK_CIPHERS,
    ClientTLSSettings,
    ServerTLSSettings,
    _load_cas,
    _load_identity,
)

__all__ = ["DTLS1_2_VERSION", "dtls_client_context", "dtls_server_context"]

#: The wire version of DTLS 1.2 (RFC 6347 section 4.1).
DTLS1_2_VERSION = 0xFEFD


def _base(method: int) -> SSL.Context:
    context = SSL.Context(method)
    context.set_min_proto_version(DTLS1_2_VERSION)
    # OP_NO_QUERY_MTU: a memory BIO knows no path MTU; the record size is set per
    # connection instead (set_ciphertext_mtu).
    context.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU
    )
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return context


def dtls_server_context(settings: ServerTLSSettings) -> SSL.Context:
    """A new DTLS server context for ``settings`` (PSK keys and/or a certificate, client
    certificates when ``client_ca`` is set).  The caller adds the cookie callbacks."""
    context = _base(SSL.DTLS_SERVER_METHOD)
    settings.configure_credentials(context)
    return context


def dtls_client_context(settings: ClientTLSSettings) -> SSL.Context:
    """A new DTLS client context for ``settings``: the PSK if given, else certificates
    verified against ``ca_file`` (or the system store) unless ``insecure``."""
    context = _base(SSL.DTLS_CLIENT_METHOD)
    ciphers = []
    if settings.psk is not None:
        ciphers.append(PSK_CIPHERS)
        psk.use_psk_client(context, *settings.psk)
    psk_only = settings.psk is not None and settings.ca_file is None and not settings.insecure
    if not psk_only:  # a PSK alone offers no certificate suite: nothing left unverified
        ciphers.append(CERTIFICATE_CIPHERS)
    context.set_cipher_list(":".join(ciphers).encode("ascii"))
    if settings.insecure or psk_only:
        context.set_verify(SSL.VERIFY_NONE)
    else:
        context.set_verify(SSL.VERIFY_PEER)
        if settings.ca_file is not None:
            _load_cas(context, settings.ca_file)
        else:
            context.set_default_verify_paths()
    if settings.certificate is not None:
        _load_identity(context, settings.certificate, settings.private_key or settings.certificate)
    return context
