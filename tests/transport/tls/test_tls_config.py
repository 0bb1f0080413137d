"""coaptcp.transport.tls.settings: PSK files, settings checks, and the contexts they build."""

from __future__ import annotations

from pathlib import Path

import pytest
from OpenSSL import SSL
from tls_helpers import PKI

from coaptcp.transport.tls.settings import (
    ALPN_COAP,
    ClientTLSSettings,
    NoCoapALPN,
    ServerTLSSettings,
    TLSConfigurationError,
    _select_coap,
    describe_ssl_error,
    load_psk_file,
    parse_psk_file,
    parse_psk_key,
)

# -- PSK files ------------------------------------------------------------------------------


def test_psk_file_with_hex_and_text_keys() -> None:
    keys = parse_psk_file(
        "# identity key\n"
        "\n"
        "sensor-17   hex:8F1b3c\n"
        "  gateway text:correct horse battery staple  \n"
    )
    assert keys == {b"sensor-17": b"\x8f\x1b\x3c", b"gateway": b"correct horse battery staple"}


def test_psk_identity_may_be_utf8() -> None:
    assert parse_psk_file("capteur-é text:clé") == {
        "capteur-é".encode(): "clé".encode()
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("sensor hex:abc", "line 1: hex:abc is not an even number of hex digits"),
        ("sensor hex:zz", "line 1: hex:zz is not an even number"),
        ("sensor 00ff", "line 1: a key is written hex:DIGITS or text:TEXT"),
        ("sensor\n", "line 1: want IDENTITY KEY"),
        ("a text:x\na text:y", "line 2: a appears twice"),
        ("# nothing\n", "holds no identities"),
        ("a text:", "line 1: a PSK must be 1 to 256 bytes"),
        ("x" * 200 + " text:k", "line 1: a PSK identity must be 1 to 128 bytes"),
    ],
)
def test_bad_psk_files_say_which_line(text: str, message: str) -> None:
    with pytest.raises(TLSConfigurationError, match=message.replace("(", r"\(")):
        parse_psk_file(text, "keys.txt")


def test_psk_key_spec() -> None:
    assert parse_psk_key("hex:00ff") == b"\x00\xff"
    assert parse_psk_key("text:hex:00") == b"hex:00"
    with pytest.raises(ValueError):
        parse_psk_key("base64:AAAA")


def test_load_psk_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("gateway text:secret\n")
    assert load_psk_file(path) == {b"gateway": b"secret"}
    with pytest.raises(TLSConfigurationError, match="cannot read PSK file"):
        load_psk_file(tmp_path / "missing.txt")
    path.write_bytes(b"gateway text:\xff\n")
    with pytest.raises(TLSConfigurationError, match="cannot read PSK file"):
        load_psk_file(path)


# -- server settings ------------------------------------------------------------------------


def test_server_needs_a_certificate_or_psk() -> None:
    with pytest.raises(TLSConfigurationError, match="needs a certificate, PSK keys, or both"):
        ServerTLSSettings()


def test_client_ca_needs_a_certificate() -> None:
    with pytest.raises(TLSConfigurationError, match="only makes sense with a certificate"):
        ServerTLSSettings(psk_keys={b"a": b"k"}, client_ca="ca.pem")


def test_handshake_timeout_must_be_positive(pki: PKI) -> None:
    with pytest.raises(TLSConfigurationError, match="positive"):
        ServerTLSSettings(certificate=pki.server, handshake_timeout=0)
    with pytest.raises(TLSConfigurationError, match="positive"):
        ClientTLSSettings(handshake_timeout=-1)


def test_server_psk_keys_are_checked() -> None:
    with pytest.raises(TLSConfigurationError, match="identity"):
        ServerTLSSettings(psk_keys={b"": b"k"})


def test_modes(pki: PKI) -> None:
    assert ServerTLSSettings(certificate=pki.server, private_key=pki.server_key).modes == (
        "certificate",
    )
    assert ServerTLSSettings(psk_keys={b"a": b"k"}).modes == ("psk",)
    both = ServerTLSSettings(
        certificate=pki.server, private_key=pki.server_key, psk_keys={b"a": b"k"}
    )
    assert both.modes == ("certificate", "psk")


def test_server_context_from_certificate_and_key(pki: PKI) -> None:
    context = ServerTLSSettings(certificate=pki.server, private_key=pki.server_key).context
    assert isinstance(context, SSL.Context)
    assert context.get_verify_mode() == SSL.VERIFY_NONE


def test_server_context_requires_client_certificates_with_client_ca(pki: PKI) -> None:
    context = ServerTLSSettings(
        certificate=pki.server, private_key=pki.server_key, client_ca=pki.ca
    ).context
    assert context.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_certificate_file_holding_the_key_too(pki: PKI, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(pki.server.read_bytes() + pki.server_key.read_bytes())
    assert ServerTLSSettings(certificate=combined).context is not None


def test_missing_certificate_file(pki: PKI, tmp_path: Path) -> None:
    settings = ServerTLSSettings(certificate=tmp_path / "nope.pem", private_key=pki.server_key)
    with pytest.raises(TLSConfigurationError, match=r"nope\.pem is not a readable file"):
        _ = settings.context


def test_garbage_certificate_file(pki: PKI, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    settings = ServerTLSSettings(certificate=garbage, private_key=pki.server_key)
    with pytest.raises(TLSConfigurationError, match="holds no usable PEM certificate"):
        _ = settings.context


def test_certificate_without_its_key(pki: PKI) -> None:
    with pytest.raises(TLSConfigurationError, match="holds no usable PEM key"):
        _ = ServerTLSSettings(certificate=pki.server).context


def test_key_of_another_certificate(pki: PKI) -> None:
    settings = ServerTLSSettings(certificate=pki.server, private_key=pki.client_key)
    with pytest.raises(TLSConfigurationError, match="does not match the certificate"):
        _ = settings.context


def test_garbage_client_ca(pki: PKI) -> None:
    settings = ServerTLSSettings(
        certificate=pki.server, private_key=pki.server_key, client_ca=pki.server_key
    )
    with pytest.raises(TLSConfigurationError, match=r"CA file .* holds no usable PEM"):
        _ = settings.context


# -- ALPN selection -------------------------------------------------------------------------


def test_alpn_selects_coap_among_others() -> None:
    connection = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)
    assert _select_coap(connection, [b"h2", b"coap"]) == ALPN_COAP


def test_alpn_without_coap_is_a_fatal_ssl_error() -> None:
    connection = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)
    with pytest.raises(NoCoapALPN, match="without 'coap'") as caught:
        _select_coap(connection, [b"h2", b"http/1.1"])
    assert isinstance(caught.value, SSL.Error)


# -- client settings ------------------------------------------------------------------------


def test_alpn_rule_of_rfc8323_section_8_2() -> None:
    settings = ClientTLSSettings()
    assert settings.alpn_required(5683)
    assert settings.alpn_required(443)
    assert not settings.alpn_required(5684)
    assert ClientTLSSettings(require_alpn=True).alpn_required(5684)
    assert not ClientTLSSettings(require_alpn=False).alpn_required(15684)


def test_client_settings_contradictions(pki: PKI) -> None:
    with pytest.raises(TLSConfigurationError, match="contradict"):
        ClientTLSSettings(insecure=True, ca_file=pki.ca)
    with pytest.raises(TLSConfigurationError, match="needs a client certificate"):
        ClientTLSSettings(private_key=pki.client_key)
    with pytest.raises(TLSConfigurationError, match="bad PSK"):
        ClientTLSSettings(psk=(b"id", b""))
    with pytest.raises(TLSConfigurationError, match="bad PSK"):
        ClientTLSSettings(psk=("id", "key"))  # type: ignore[arg-type]


def test_client_context_verifies_by_default(pki: PKI) -> None:
    assert ClientTLSSettings().context.get_verify_mode() == SSL.VERIFY_PEER
    assert ClientTLSSettings(ca_file=pki.ca).context.get_verify_mode() == SSL.VERIFY_PEER
    assert ClientTLSSettings(insecure=True).context.get_verify_mode() == SSL.VERIFY_NONE


def test_client_context_with_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigurationError, match="is not a readable file"):
        _ = ClientTLSSettings(ca_file=tmp_path / "ca.pem").context


def test_client_certificate_and_key_are_checked(pki: PKI) -> None:
    good = ClientTLSSettings(ca_file=pki.ca, certificate=pki.client, private_key=pki.client_key)
    assert good.context is not None
    settings = ClientTLSSettings(certificate=pki.client, private_key=pki.server_key)
    with pytest.raises(TLSConfigurationError, match="does not match"):
        _ = settings.context


def test_settings_reprs_hide_keys() -> None:
    assert "secret" not in repr(ServerTLSSettings(psk_keys={b"a": b"secret"}))
    assert "secret" not in repr(ClientTLSSettings(psk=(b"a", b"secret")))


@pytest.mark.parametrize(
    ("reasons", "words"),
    [
        ([("SSL routines", "", "tlsv13 alert certificate required")],
         "the server requires a client certificate (TLS alert certificate_required)"),
        ([("SSL routines", "", "tlsv1 alert unknown ca")],
         "the peer does not trust the CA that issued our certificate (TLS alert unknown_ca)"),
        ([("SSL routines", "", "sslv3 alert handshake failure")],
         "the peer found nothing acceptable in our offer"),
        ([("SSL routines", "", "tlsv1 alert internal error")],
         "the peer failed internally during the handshake"),
        ([("SSL routines", "", "tlsv1 alert decrypt error")],
         "the keys did not match (a wrong pre-shared key?) (TLS alert decrypt_error)"),
        ([("SSL routines", "", "wrong version number")],
         "the peer did not answer in TLS (a plain coap+tcp port?) (wrong version number)"),
        ([("SSL routines", "", "peer did not return a certificate")],
         "the client sent no certificate, and one is required"),
        ([("SSL routines", "", "something new")], "something new"),
        ([("SSL routines", "", "tlsv1 alert decrypt error"),
          ("SSL routines", "", "tlsv1 alert decrypt error")],
         "(TLS alert decrypt_error)"),
    ],
)
def test_describe_ssl_error_uses_plain_words(reasons: list[tuple[str, str, str]],
                                             words: str) -> None:
    text = describe_ssl_error(SSL.Error(reasons))
    assert words in text
    assert "SSL routines" not in text
    assert text.count("decrypt_error") <= 1  # the same reason twice is said once

