"""The coaps:// part of ``twistd coaptcp``: ``--dtls udp:5684`` (RFC 7252 section 9).

The listeners take the same credentials as ``--tls`` (``--certificate``, ``--private-key``,
``--psk-file``, ``--client-ca``) and the same ``udp:PORT[:interface=ADDRESS]`` descriptions
as ``--udp``::

    twistd -n coaptcp --dtls udp:5684 --psk-file keys.txt
    twistd -n coaptcp --dtls udp:5684 --certificate server.pem --private-key server.key

``--dtls-mtu N`` sets the largest datagram sent (default 1232 bytes, IPv6's minimum MTU
less the headers; RFC 6347 section 4.1.1.1): handshake records are cut to fit it.

With ``--dtls`` and no ``--tls``, credentials open no coaps+tcp listener.  Each listener is
a :class:`~coaptcp.transport.dtls.DtlsDatagramProtocol` serving the site of the stream
listeners.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import UDPServer
from twisted.application.service import MultiService
from twisted.python import usage

from coaptcp.tap.udp import parse_udp_description
from coaptcp.transport.dtls import DEFAULT_MTU, DtlsDatagramProtocol, DtlsLimits
from coaptcp.transport.dtls.contexts import dtls_server_context
from coaptcp.transport.dtls.records import MAX_MTU, MIN_MTU, check_mtu
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.tls.psk import PSKUnavailable
from coaptcp.transport.tls.settings import TLSConfigurationError

__all__ = ["DEFAULT_DTLS_PORT", "DtlsOptions", "add_dtls_listeners", "check_dtls_options"]

#: The default port of coaps:// (RFC 7252 section 6.2).
DEFAULT_DTLS_PORT = 5684


class DtlsOptions:
    """The repeatable ``--dtls`` option for ``twistd coaptcp``'s ``usage.Options`` (a
    mixin: its list is ``options["dtls"]``)."""

    def opt_dtls(self, description: str) -> None:
        """Serve coaps:// (CoAP over DTLS, RFC 7252 section 9) on udp:PORT[:interface=ADDR]
        with the --certificate/--psk-file credentials (repeatable)."""
        try:
            parse_udp_description(description)
        except usage.UsageError as error:
            raise usage.UsageError(str(error).replace("--udp", "--dtls", 1)) from None
        listeners: list[str] = self.setdefault("dtls", [])  # type: ignore[attr-defined]
        listeners.append(description)

    def opt_dtls_mtu(self, value: str) -> None:
        """Largest coaps:// datagram sent, in bytes (default 1232; RFC 6347 section
        4.1.1.1)."""
        try:
            mtu = check_mtu(int(value))
        except ValueError:
            raise usage.UsageError(
                f"--dtls-mtu must be a whole number of bytes in {MIN_MTU}-{MAX_MTU}, not {value!r}"
            ) from None
        self["dtls-mtu"] = mtu  # type: ignore[index]


def check_dtls_options(options: Any) -> None:
    """Check that ``--dtls`` has credentials and that they make a DTLS context (a
    :class:`usage.UsageError` otherwise).  Called once the TLS settings are built."""
    if not options.get("dtls"):
        if options.get("dtls-mtu") is not None:
            raise usage.UsageError("--dtls-mtu needs a --dtls listener")
        return
    settings = options.get("tls-settings")
    if settings is None:
        raise usage.UsageError("--dtls needs --certificate (and --private-key) or --psk-file")
    try:
        dtls_server_context(settings)
    except (TLSConfigurationError, PSKUnavailable) as error:
        raise usage.UsageError(f"DTLS: {error}")


def add_dtls_listeners(
    service: MultiService, options: Any, factory: CoapFactory, reactor: Any = None
) -> list[DtlsDatagramProtocol]:
    """Add one coaps:// listener per ``--dtls`` description to ``service``, serving the
    site of ``factory`` with its upload bounds and budget."""
    protocols = []
    settings = options.get("tls-settings")
    for description in options.get("dtls") or []:
        listener = parse_udp_description(description)
        protocol = DtlsDatagramProtocol(
            factory.site,
            server=settings,
            limits=DtlsLimits(handshake_timeout=settings.handshake_timeout),
            reactor=reactor,
            mtu=options.get("dtls-mtu") or DEFAULT_MTU,
            upload_limits=factory.limits,
            upload_budget=factory.upload_budget,
            max_body_size=factory.max_body_size,
        )
        UDPServer(
            listener.port, protocol, interface=listener.interface, reactor=reactor
        ).setServiceParent(service)
        protocols.append(protocol)
    return protocols
