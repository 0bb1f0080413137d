"""coaps+tcp listeners and connections (RFC 8323 sections 8.2 and 9).

Serving::

    settings = ServerTLSSettings(certificate="server.pem", private_key="server.key")
    await listen_tls(serverFromString(reactor, "tcp:5684"), CoapFactory(root), settings)

Connecting::

    protocol = await connect_tls(reactor, "coap.example", 5684,
                                 settings=ClientTLSSettings(ca_file="ca.pem"))
    response = await protocol.request(Code.GET, Options.build(uri_path=["hello"]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Role
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.tcp import DEFAULT_CONNECT_TIMEOUT, CoapFactory, CoapProtocol
from coaptcp.transport.tls.settings import COAPS_TCP_PORT, ClientTLSSettings, ServerTLSSettings
from coaptcp.transport.tls.transport import (
    CoapTLSTransport,
    tls_client_factory,
    tls_server_factory,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IListeningPort,
        IStreamClientEndpoint,
        IStreamServerEndpoint,
    )

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "connect_tls", "listen_tls"]


def listen_tls(
    endpoint: IStreamServerEndpoint,
    coap_factory: CoapFactory,
    settings: ServerTLSSettings,
) -> Deferred[IListeningPort]:
    """Serve ``coap_factory`` over TLS on ``endpoint`` (e.g. ``serverFromString(reactor,
    "tcp:5684")``); fires with the listening port."""
    listening: Deferred[IListeningPort] = endpoint.listen(
        tls_server_factory(coap_factory, settings)
    )
    return listening


def connect_tls(
    reactor: Any,
    host: str,
    port: int = COAPS_TCP_PORT,
    *,
    site: Site | Resource | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    endpoint: IStreamClientEndpoint | None = None,
    require_csm: bool = True,
    settings: ClientTLSSettings | None = None,
) -> Deferred[CoapProtocol]:
    """Open a coaps+tcp connection (RFC 8323 section 8.2) and fire with its protocol.

    The Deferred fires once the TLS handshake succeeded and the server passed the checks:
    its certificate chain (system trust store, or ``settings.ca_file``) and name (RFC 6125,
    the host or ``settings.server_name``, also sent as SNI), or its PSK; and ALPN "coap"
    where required.  It fails with a :class:`~coaptcp.transport.tls.errors.TLSFailure`
    otherwise, or with the TCP connection's error.  Our CSM is already queued; requests
    may be sent at once.

    :param reactor: the reactor (``None``: the global one).
    :param host: the server's name or IP address (an IPv6 literal with or without
        brackets): checked against its certificate and sent as SNI.
    :param port: the TCP port, 5684 by default; it decides whether ALPN is required.
    :param site: resources to serve to the server's requests (RFC 8323 section 3.3).
    :param limits: timeouts and bounds of the connection (:mod:`coaptcp.channel.limits`).
    :param max_message_size: our Max-Message-Size, sent in our CSM (section 5.3.1).
    :param timeout: seconds to wait for the TCP connection (the handshake has
        ``settings.handshake_timeout``).
    :param endpoint: a stream client endpoint to the server, to use instead of a
        ``HostnameEndpoint(reactor, host, port)``; TLS is added on top of it.
    :param require_csm: abort a server whose first message is not a CSM (section 3.3).
    :param settings: trust anchors, client credentials, PSK, ALPN and the handshake
        timeout (:class:`~coaptcp.transport.tls.settings.ClientTLSSettings`); the
        defaults verify the server against the platform's trust store.
    """
    from twisted.internet.endpoints import HostnameEndpoint

    reactor = default_reactor(reactor)
    settings = settings if settings is not None else ClientTLSSettings()
    host = host.strip("[]")  # an IPv6 literal as written in a URI
    coap_factory = CoapFactory(
        site,
        role=Role.INITIATOR,
        max_message_size=max_message_size,
        require_csm=require_csm,
        reactor=reactor,
        limits=limits,
    )
    factory = tls_client_factory(coap_factory, settings, host, port, clock=reactor)
    if endpoint is None:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    connecting: Deferred[Any] = endpoint.connect(factory)

    def handshake(transport: CoapTLSTransport) -> Deferred[CoapProtocol]:
        result = transport.handshake_result
        assert result is not None  # set in makeConnection, before the endpoint fires
        return result

    return connecting.addCallback(handshake)
