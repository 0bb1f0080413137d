"""TLS with pre-shared keys (RFC 4279) on pyOpenSSL contexts.

RFC 8323 section 9 lists PreSharedKey among the security modes of CoAP over TLS (with the
guidance of RFC 7925 section 4.2).  pyOpenSSL has no PSK API, but the OpenSSL binding of
``cryptography`` (the one pyOpenSSL itself is built on) exposes
``SSL_CTX_set_psk_server_callback`` and ``SSL_CTX_set_psk_client_callback``.  This module
installs those callbacks on a pyOpenSSL :class:`~OpenSSL.SSL.Context`.

It is the only module of coaptcp that touches the binding or pyOpenSSL's internals, and it
uses exactly two of them: ``Context._context`` (the ``SSL_CTX *`` a context wraps) and
``Connection._reverse_mapping`` (from an ``SSL *`` back to its
:class:`~OpenSSL.SSL.Connection`, the mapping pyOpenSSL's own callbacks use).
:func:`psk_unavailable_reason` says why PSK cannot work when either is missing.

Usage::

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    use_psk_server(context, {b"sensor-17": b"secret"}.get)
    ...
    psk_identity(connection)  # b"sensor-17" once that client has completed a handshake

The callbacks serve TLS 1.2 PSK cipher suites; OpenSSL also uses them for TLS 1.3 (as an
external PSK with SHA-256), so a TLS 1.3 peer built on OpenSSL's compatible API works too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from OpenSSL import SSL
from twisted.logger import Logger

from coaptcp.core.errors import CoapTcpError

__all__ = [
    "MAX_IDENTITY_LENGTH",
    "MAX_KEY_LENGTH",
    "PSKUnavailable",
    "check_psk",
    "psk_identity",
    "psk_unavailable_reason",
    "use_psk_client",
    "use_psk_server",
]

#: The longest identity we send or accept, in bytes.  RFC 4279 section 5.3 allows 2^16-1
#: bytes, but OpenSSL 1.1 stops at 128 and 3.x at 256; 128 is safe with every peer.
MAX_IDENTITY_LENGTH = 128
#: The longest key, in bytes (OpenSSL's PSK_MAX_PSK_LEN is 256 in 1.1 and 512 in 3.x).
MAX_KEY_LENGTH = 256

_SERVER_SETTER = "SSL_CTX_set_psk_server_callback"
_CLIENT_SETTER = "SSL_CTX_set_psk_client_callback"
_HINT_SETTER = "SSL_CTX_use_psk_identity_hint"

log = Logger()

#: Keeps each context's callbacks alive as long as the context (OpenSSL only holds a raw
#: function pointer).  A Connection keeps its Context alive, so callbacks outlive handshakes.
_callbacks: WeakKeyDictionary[SSL.Context, list[Any]] = WeakKeyDictionary()
#: The identity each connection authenticated with (set by the callbacks).
_identities: WeakKeyDictionary[SSL.Connection, bytes] = WeakKeyDictionary()


class PSKUnavailable(CoapTcpError, RuntimeError):
    """The installed ``cryptography``/pyOpenSSL cannot do TLS-PSK (the message says why)."""


def _binding() -> tuple[Any, Any]:
    from cryptography.hazmat.bindings.openssl.binding import Binding

    binding = Binding()
    return binding.ffi, binding.lib


def psk_unavailable_reason() -> str | None:
    """``None`` when PSK works here; otherwise why not (versions and the missing symbol)."""
    import cryptography
    import OpenSSL

    versions = f"cryptography {cryptography.__version__}, pyOpenSSL {OpenSSL.__version__}"
    try:
        _, lib = _binding()
    except Exception as error:  # pragma: no cover - a broken cryptography install
        return f"cannot load cryptography's OpenSSL binding ({versions}): {error}"
    if not getattr(lib, "Cryptography_HAS_PSK", 0):
        return f"the OpenSSL behind {versions} was built without PSK (Cryptography_HAS_PSK=0)"
    for name in (_SERVER_SETTER, _CLIENT_SETTER, _HINT_SETTER):
        if not hasattr(lib, name):
            return f"cryptography's OpenSSL binding lacks {name} ({versions})"
    if not hasattr(SSL.Context(SSL.TLS_METHOD), "_context"):
        return f"pyOpenSSL's Context no longer exposes its SSL_CTX as _context ({versions})"
    if not hasattr(SSL.Connection, "_reverse_mapping"):
        return f"pyOpenSSL's Connection has no _reverse_mapping ({versions})"
    return None


def _require() -> tuple[Any, Any]:
    reason = psk_unavailable_reason()
    if reason is not None:
        raise PSKUnavailable(reason)
    return _binding()


def _keep(context: SSL.Context, callback: Any) -> None:
    _callbacks.setdefault(context, []).append(callback)


def _connection_for(ssl: Any) -> SSL.Connection | None:
    connection: SSL.Connection | None = SSL.Connection._reverse_mapping.get(ssl)
    return connection


def use_psk_server(
    context: SSL.Context,
    lookup: Callable[[bytes], bytes | None] | Mapping[bytes, bytes],
    *,
    hint: bytes | None = None,
) -> None:
    """Accept PSK handshakes on ``context`` (a server context): ``lookup(identity)`` gives
    the key for a client's identity, or ``None`` to refuse it (the handshake fails).

    A client using a wrong key fails the handshake too (its Finished message does not
    verify).  ``hint`` is the PSK identity hint sent in TLS 1.2 (RFC 4279 section 5.2).
    The context also needs PSK cipher suites in its cipher list.
    """
    ffi, lib = _require()
    find = lookup.get if isinstance(lookup, Mapping) else lookup

    def server_callback(ssl: Any, identity: Any, psk: Any, max_psk_len: int) -> int:
        try:
            name = ffi.string(identity)
            key = find(name)
            if key is None:
                log.info("Refusing unknown PSK identity {identity!r}", identity=name)
                return 0
            if not 0 < len(key) <= min(max_psk_len, MAX_KEY_LENGTH):
                log.error("PSK for {identity!r} has a bad length {length}", identity=name,
                          length=len(key))
                return 0
            return _hand_over(ffi, ssl, psk, key, name)
        except Exception:
            log.failure("PSK server callback failed")
            return 0

    callback_type = ffi.typeof(getattr(lib, _SERVER_SETTER)).args[1]
    callback = ffi.callback(callback_type, server_callback)
    _keep(context, callback)
    getattr(lib, _SERVER_SETTER)(context._context, callback)
    if hint is not None:
        if getattr(lib, _HINT_SETTER)(context._context, hint) != 1:
            raise ValueError(f"OpenSSL refused the PSK identity hint {hint!r}")


def _hand_over(ffi: Any, ssl: Any, psk: Any, key: bytes, identity: bytes) -> int:
    """Copy ``key`` into OpenSSL's buffer and remember who the connection's peer is (its
    PSK identity, for :func:`psk_identity`); the key's length is the callback's answer."""
    ffi.memmove(psk, key, len(key))
    connection = _connection_for(ssl)
    if connection is not None:
        _identities[connection] = identity
    return len(key)


def use_psk_client(context: SSL.Context, identity: bytes, key: bytes) -> None:
    """Offer PSK on ``context`` (a client context) with ``identity`` and ``key``.

    OpenSSL then also offers the PSK cipher suites of the context's cipher list.
    """
    _check_identity(identity)
    _check_key(key)
    ffi, lib = _require()

    def client_callback(
        ssl: Any, hint: Any, identity_out: Any, max_identity_len: int, psk: Any, max_psk_len: int
    ) -> int:
        try:
            if len(identity) + 1 > max_identity_len or len(key) > max_psk_len:
                log.error("PSK identity or key too long for this OpenSSL")
                return 0
            ffi.memmove(identity_out, identity + b"\0", len(identity) + 1)
            return _hand_over(ffi, ssl, psk, key, identity)
        except Exception:
            log.failure("PSK client callback failed")
            return 0

    callback_type = ffi.typeof(getattr(lib, _CLIENT_SETTER)).args[1]
    callback = ffi.callback(callback_type, client_callback)
    _keep(context, callback)
    getattr(lib, _CLIENT_SETTER)(context._context, callback)


def psk_identity(connection: SSL.Connection) -> bytes | None:
    """The PSK identity ``connection`` used in its handshake, if a PSK callback ran.

    On a server: the identity the client sent and we had a key for.  On a client: the
    identity we offered (whether the server chose a PSK suite shows in the cipher name or
    in the absence of a server certificate).
    """
    return _identities.get(connection)


def _check_identity(identity: bytes) -> None:
    if not isinstance(identity, bytes):
        raise TypeError(f"a PSK identity is bytes, not {type(identity).__name__}")
    if not 0 < len(identity) <= MAX_IDENTITY_LENGTH or b"\0" in identity:
        raise ValueError(
            f"a PSK identity must be 1 to {MAX_IDENTITY_LENGTH} bytes without NUL, "
            f"not {identity!r}"
        )


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"a PSK is bytes, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"a PSK must be 1 to {MAX_KEY_LENGTH} bytes, not {len(key)}")


def check_psk(identity: bytes, key: bytes) -> None:
    """Raise :class:`ValueError`/:class:`TypeError` unless ``identity`` and ``key`` are
    usable (lengths within :data:`MAX_IDENTITY_LENGTH` and :data:`MAX_KEY_LENGTH`)."""
    _check_identity(identity)
    _check_key(key)
