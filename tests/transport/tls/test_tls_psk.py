"""coaptcp.transport.tls.psk on its own: PSK callbacks on bare pyOpenSSL contexts, handshakes in
memory.

No Twisted here: two SSL.Connection objects with memory BIOs, bytes moved by hand.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from OpenSSL import SSL

from coaptcp.transport.tls import psk
from coaptcp.transport.tls.settings import PSK_CIPHERS

KEYS = {b"sensor-17": b"\x8f\x1b\x3c\x5d\x7e\x9f\xa0\xb2", b"gateway": b"correct horse"}


def server_context(lookup: Any = KEYS.get, hint: bytes | None = None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_cipher_list(PSK_CIPHERS.encode())
    psk.use_psk_server(context, lookup, hint=hint)
    return context


def client_context(identity: bytes, key: bytes, max_version: int | None = None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_cipher_list(PSK_CIPHERS.encode())
    if max_version is not None:
        context.set_max_proto_version(max_version)
    psk.use_psk_client(context, identity, key)
    return context


def handshake(server: SSL.Context, client: SSL.Context) -> tuple[SSL.Connection, SSL.Connection]:
    """Run a handshake and one application record each way; raises SSL.Error on failure."""
    s = SSL.Connection(server, None)
    s.set_accept_state()
    c = SSL.Connection(client, None)
    c.set_connect_state()
    for _ in range(20):
        progressed = False
        for this, other in ((c, s), (s, c)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                data = this.bio_read(65536)
            except SSL.WantReadError:
                continue
            other.bio_write(data)
            progressed = True
        if not progressed:
            break
    c.sendall(b"ping")
    s.bio_write(c.bio_read(65536))
    assert s.recv(100) == b"ping"
    s.sendall(b"pong")
    c.bio_write(s.bio_read(65536))
    assert c.recv(100) == b"pong"
    return s, c


def test_psk_is_available_with_the_installed_versions() -> None:
    assert psk.psk_unavailable_reason() is None


def test_right_key_tls12_uses_a_psk_suite_and_records_the_identity() -> None:
    s, c = handshake(
        server_context(), client_context(b"sensor-17", KEYS[b"sensor-17"], SSL.TLS1_2_VERSION)
    )
    assert s.get_protocol_version_name() == "TLSv1.2"
    assert "PSK" in s.get_cipher_name()
    assert s.get_peer_certificate() is None
    assert psk.psk_identity(s) == b"sensor-17"
    assert psk.psk_identity(c) == b"sensor-17"


def test_right_key_tls13() -> None:
    s, _ = handshake(server_context(), client_context(b"gateway", KEYS[b"gateway"]))
    assert s.get_protocol_version_name() == "TLSv1.3"
    assert psk.psk_identity(s) == b"gateway"


@pytest.mark.parametrize("max_version", [SSL.TLS1_2_VERSION, None])
def test_wrong_key_fails_the_handshake(max_version: int | None) -> None:
    with pytest.raises(SSL.Error):
        handshake(server_context(), client_context(b"sensor-17", b"not the key", max_version))


@pytest.mark.parametrize("max_version", [SSL.TLS1_2_VERSION, None])
def test_unknown_identity_fails_the_handshake(max_version: int | None) -> None:
    with pytest.raises(SSL.Error):
        handshake(server_context(), client_context(b"stranger", b"whatever", max_version))


def test_failing_lookup_refuses_instead_of_crashing() -> None:
    def lookup(identity: bytes) -> bytes:
        raise RuntimeError("database down")

    with pytest.raises(SSL.Error):
        handshake(server_context(lookup), client_context(b"gateway", b"x", SSL.TLS1_2_VERSION))


def test_lookup_may_be_a_mapping() -> None:
    s, _ = handshake(server_context(KEYS), client_context(b"gateway", KEYS[b"gateway"]))
    assert psk.psk_identity(s) == b"gateway"


def test_server_with_identity_hint_serves_tls12_clients() -> None:
    seen: list[bytes] = []

    def lookup(identity: bytes) -> bytes | None:
        seen.append(identity)
        return KEYS.get(identity)

    s, _ = handshake(
        server_context(lookup, hint=b"coaptcp"),
        client_context(b"gateway", KEYS[b"gateway"], SSL.TLS1_2_VERSION),
    )
    assert seen == [b"gateway"]
    assert psk.psk_identity(s) == b"gateway"


def test_over_long_identity_hint_is_refused() -> None:
    with pytest.raises(ValueError, match="hint"):
        server_context(hint=b"h" * 1000)


def test_callbacks_outlive_the_callers_references() -> None:
    server = server_context()
    client = client_context(b"gateway", KEYS[b"gateway"])
    gc.collect()
    s, _ = handshake(server, client)
    assert psk.psk_identity(s) == b"gateway"


def test_a_connection_without_psk_has_no_identity() -> None:
    assert psk.psk_identity(SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)) is None


@pytest.mark.parametrize(
    "identity, key",
    [(b"", b"k"), (b"x" * 129, b"k"), (b"a\0b", b"k"), (b"id", b""), (b"id", b"k" * 257)],
)
def test_unusable_identities_and_keys_are_refused(identity: bytes, key: bytes) -> None:
    with pytest.raises(ValueError):
        psk.use_psk_client(SSL.Context(SSL.TLS_CLIENT_METHOD), identity, key)


def test_identity_and_key_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        psk.check_psk("id", b"k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        psk.check_psk(b"id", "k")  # type: ignore[arg-type]


def test_unavailable_psk_is_reported_with_the_missing_symbol(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    class Lib:
        Cryptography_HAS_PSK = 1
        SSL_CTX_set_psk_server_callback = SSL_CTX_use_psk_identity_hint = object()

    monkeypatch.setattr(psk, "_binding", lambda: (None, Lib()))
    reason = psk.psk_unavailable_reason()
    assert reason is not None and "SSL_CTX_set_psk_client_callback" in reason
    assert "cryptography" in reason
    with pytest.raises(psk.PSKUnavailable, match="SSL_CTX_set_psk_client_callback"):
        psk.use_psk_server(SSL.Context(SSL.TLS_SERVER_METHOD), KEYS.get)
