"""``coaps://`` for the :class:`~coaptcp.client.Client`: CoAP over DTLS (RFC 7252 section 9).

A ``coaps://host:port`` endpoint is a :class:`~coaptcp.client.udp.UdpPeer` whose socket is a
:class:`~coaptcp.transport.dtls.DtlsDatagramProtocol`: the peer sends through the same
CoAP-over-UDP message layer as ``coap://``, and the socket keeps one DTLS session per
server address.  The credentials are the client's
:class:`~coaptcp.client.connectors.TlsOptions` (a PSK, or a CA file and optionally a client
certificate); a certificate is checked against the host name of the URI.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail

from coaptcp.channel.reactor import default_reactor
from coaptcp.client.udp import UdpPeer, UdpSockets
from coaptcp.transport.dtls import DtlsDatagramProtocol
from coaptcp.transport.tls.settings import ClientTLSSettings
from coaptcp.transport.udp import CoapDatagramProtocol
from coaptcp.transport.udp.address import resolve_host

__all__ = ["DtlsConnector", "DtlsSockets", "dtls_client_settings"]


def dtls_client_settings(tls: Any) -> ClientTLSSettings:
    """The DTLS client settings for the connector's ``TlsOptions`` (RFC 7252 9.1.3)."""
    psk = None
    if tls.psk_identity is not None:
        psk = (tls.psk_identity, tls.psk_key)
    return ClientTLSSettings(
        ca_file=tls.cafile,
        certificate=tls.certfile,
        private_key=tls.keyfile,
        psk=psk,
        insecure=tls.insecure,
    )


class DtlsSockets(UdpSockets):
    """The coaps:// sockets of one client and one set of credentials (one per address
    family), opened on first use and closed when the last peer is released."""

    def __init__(self, reactor: Any, settings: ClientTLSSettings) -> None:
        super().__init__(reactor)
        self.settings = settings
        self._dtls: dict[bool, DtlsDatagramProtocol] = {}

    def dtls_for(self, address: str) -> DtlsDatagramProtocol:
        """The DTLS socket for ``address`` (IPv6 when it has a colon)."""
        ipv6 = ":" in address
        entry = self._open.get(ipv6)
        if entry is None:
            protocol = DtlsDatagramProtocol(None, client=self.settings, reactor=self.reactor)
            port = self.reactor.listenUDP(0, protocol, interface="::" if ipv6 else "0.0.0.0")
            self._open[ipv6] = (port, protocol.coap)
            self._dtls[ipv6] = protocol
        return self._dtls[ipv6]

    def protocol_for(self, address: str) -> CoapDatagramProtocol:
        """The CoAP message layer above the DTLS socket for ``address``."""
        return self.dtls_for(address).coap

    def left(self, peer: UdpPeer) -> None:
        """``peer`` is released; close the sockets when no peer is left."""
        super().left(peer)
        if not self._open:
            self._dtls.clear()


class DtlsConnector:
    """The ``coaps`` connector of one client (``connector(reactor, host, port, options)``)."""

    def __init__(self) -> None:
        self._sockets: dict[tuple[int, Any], DtlsSockets] = {}

    def __call__(self, reactor: Any, host: str, port: int, options: Any) -> Deferred[Any]:
        reactor = default_reactor(reactor)
        try:
            settings = dtls_client_settings(options.tls)
        except Exception as error:
            return fail(error)
        key = (id(reactor), options.tls)
        sockets = self._sockets.get(key)
        if sockets is None:
            sockets = self._sockets[key] = DtlsSockets(reactor, settings)

        def resolved(addresses: Any) -> UdpPeer:
            if not addresses:
                raise OSError(f"{host} has no address")
            address = addresses[0]
            sockets.dtls_for(address).expect_name((address, port), host)
            return UdpPeer(sockets, address, port, reactor)

        return resolve_host(reactor, host, port).addCallback(resolved)
