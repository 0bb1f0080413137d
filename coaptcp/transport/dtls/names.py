"""Whom a coaps:// server certificate is for (RFC 7252 section 9.1.3.3, RFC 6125): the
check a DTLS client makes once the handshake is done, through ``service_identity``."""

from __future__ import annotations

import ipaddress

from OpenSSL import SSL

from coaptcp.transport.tls.settings import ClientTLSSettings

__all__ = ["is_address", "wrong_server_name"]


def is_address(name: str) -> bool:
    """Whether ``name`` is an IP address literal (an IPv6 zone suffix allowed)."""
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def wrong_server_name(connection: SSL.Connection, settings: ClientTLSSettings,
                      name: str) -> str | None:
    """Why the server's certificate on ``connection`` is not for ``name`` (or for
    ``settings.server_name`` when set); ``None`` when it is, when there is no certificate
    (PSK), or when ``settings.insecure``."""
    if settings.insecure or connection.get_peer_certificate() is None:
        return None
    from service_identity import VerificationError
    from service_identity.pyopenssl import verify_hostname, verify_ip_address

    name = settings.server_name or name
    try:
        if is_address(name):
            verify_ip_address(connection, name)
        else:
            verify_hostname(connection, name)
    except VerificationError as error:
        return f"the server's certificate is not for {name}: {error}"
    return None
