"""The client side of CoAP over WebSockets (RFC 8323 sections 4.1, 8.3 and 8.4).

The client opens ``/.well-known/coap`` offering the subprotocol ``coap`` and insists that
the server selects it; then it sends its CSM::

    protocol = await connect_websocket(reactor, "example.org", 8080)
    response = await protocol.request(Code.GET, Options.build(uri_path=["hello"]))

``secure=True`` is ``coaps+ws``: the same over TLS (port 443 by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from service_identity import VerificationError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from coaptcp.channel.channel import DEFAULT_CLOSE_TIMEOUT
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Role
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.uri import DEFAULT_PORTS, websocket_url
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.tcp import DEFAULT_CONNECT_TIMEOUT
from coaptcp.transport.websocket.common import (
    COAP_SUBPROTOCOL,
    WELL_KNOWN_COAP,
    CoapWebSocketMixin,
    apply_coap_options,
)
from coaptcp.transport.websocket.fastpath import bracket_ipv6_host

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = [
    "CoapWebSocketClientFactory",
    "CoapWebSocketClientProtocol",
    "WebSocketConnectError",
    "connect_websocket",
]


class WebSocketConnectError(CoapTcpError):
    """The CoAP-over-WebSockets connection could not be opened (RFC 8323 section 4.1).

    :ivar reason: what went wrong: the HTTP status of a refused upgrade, a missing
        ``coap`` subprotocol, a TLS verification failure, a connection error...
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CoapWebSocketClientProtocol(CoapWebSocketMixin, WebSocketClientProtocol):  # type: ignore[misc]
    """The client end of one CoAP-over-WebSockets connection (RFC 8323 section 4).

    Offers the subprotocol ``coap``, insists that the server selects it, then sends its
    CSM.  Use :meth:`request`, :meth:`ping`, :meth:`release` and :attr:`channel` as on
    :class:`~coaptcp.transport.tcp.CoapProtocol`.
    """

    factory: CoapWebSocketClientFactory

    def onConnect(self, response: ConnectionResponse) -> None:
        """Check that the server selected ``coap`` (RFC 8323 section 4.1)."""
        if response.protocol != COAP_SUBPROTOCOL:
            reason = (
                'the server did not select the WebSocket subprotocol "coap" '
                f"(RFC 8323 section 4.1); it selected {response.protocol!r}"
            )
            self.factory.failure_reason = reason
            raise WebSocketConnectError(reason)

    def onOpen(self) -> None:
        factory = self.factory
        self._start_channel(
            Role.INITIATOR,
            site=factory.site,
            reactor=factory.reactor,
            default_host=None,
            max_message_size=factory.max_message_size,
            require_csm=factory.require_csm,
            close_timeout=factory.close_timeout,
            limits=factory.limits,
        )
        factory.connections.add(self)
        factory.opened_connection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # type: ignore[override]
        factory = self.factory
        if reason.check(VerificationError) and not factory.opened.called:
            # Twisted's hostname check failed; autobahn would only see a dropped link.
            factory.failure_reason = (
                f"the server's certificate is not valid for {factory.server_host}: "
                f"{reason.getErrorMessage()}"
            )
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        self._channel_lost(wasClean, code, reason)
        self.factory.failed_to_open(reason or f"WebSocket closed with code {code}")


class CoapWebSocketClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    """Opens one CoAP-over-WebSockets connection to ``host``:``port`` (RFC 8323 4.1).

    :param host: the server's name or IP address (IPv6 without brackets); it is the
        Host header of the handshake, and so the default Uri-Host (section 8.5).
    :param port: the TCP port; 80 by default, 443 with ``secure``.
    :param secure: ``coaps+ws`` (the URL is ``wss://``; TLS is the endpoint's concern).
    :param path: the handshake's request target, ``/.well-known/coap`` (section 8.3).
    :ivar opened: fires with the :class:`CoapWebSocketClientProtocol` once the handshake
        is done and our CSM is sent, or fails with :class:`WebSocketConnectError`.
    """

    noisy = False  # one factory per connection: no start and stop lines for each

    protocol = CoapWebSocketClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        host: str,
        port: int | None = None,
        site: Site | Resource | None = None,
        *,
        secure: bool = False,
        path: str = WELL_KNOWN_COAP,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_csm: bool = True,
        open_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        reactor: IReactorTime | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        from coaptcp.core.version import __version__

        scheme = "coaps+ws" if secure else "coap+ws"
        if port is None:
            port = DEFAULT_PORTS[scheme]
        reactor = default_reactor(reactor)
        #: The ``ws://`` or ``wss://`` URL of the endpoint (RFC 8323 sections 8.3 and 8.4).
        self.endpoint_url = websocket_url(scheme, host, port, path)
        super().__init__(
            url=self.endpoint_url,
            origin=origin,
            protocols=[COAP_SUBPROTOCOL],
            useragent=f"coaptcp/{__version__}",
            headers=headers,
            reactor=reactor,
        )
        bracket_ipv6_host(self)
        if isinstance(site, Resource):
            site = Site(site)
        self.reactor = reactor
        #: Where we connect.
        self.server_host = host
        self.server_port = port
        self.site = site
        self.max_message_size = max_message_size
        self.require_csm = require_csm
        self.limits = limits
        self.close_timeout = close_timeout
        self.connections: set[CoapWebSocketClientProtocol] = set()
        self.failure_reason: str | None = None
        self.opened: Deferred[CoapWebSocketClientProtocol] = Deferred()
        apply_coap_options(self, close_timeout)
        self.setProtocolOptions(openHandshakeTimeout=open_timeout, perMessageCompressionOffers=[])

    def opened_connection(self, protocol: CoapWebSocketClientProtocol) -> None:
        """The handshake is done: hand the protocol to whoever waits."""
        if not self.opened.called:
            self.opened.callback(protocol)

    def failed_to_open(self, reason: str) -> None:
        """The connection closed before it opened: fail :attr:`opened` with the reason."""
        if not self.opened.called:
            self.opened.errback(Failure(WebSocketConnectError(self.failure_reason or reason)))

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """(Only used with ``reactor.connectTCP``; endpoints report failures themselves.)"""
        self.failed_to_open(reason.getErrorMessage())


def connect_websocket(
    reactor: Any,
    host: str,
    port: int | None = None,
    *,
    site: Site | Resource | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    endpoint: IStreamClientEndpoint | None = None,
    require_csm: bool = True,
    secure: bool = False,
    path: str = WELL_KNOWN_COAP,
    tls_options: Any = None,
    trust_root: Any = None,
    origin: str | None = None,
) -> Deferred[CoapWebSocketClientProtocol]:
    """Open a CoAP-over-WebSockets connection (RFC 8323 sections 4 and 8.3-8.4).

    :param reactor: the reactor (``None``: the global one).
    :param host: the server's name or IP address (an IPv6 literal with or without
        brackets); the Host header of the handshake names it.
    :param port: the TCP port: 80 by default (``coap+ws``), 443 with ``secure``.
    :param site: resources this side serves to the server (RFC 8323 section 3.3 lets
        either side send requests); ``None`` answers 5.01.
    :param limits: timeouts and bounds of the connection (:mod:`coaptcp.channel.limits`).
    :param max_message_size: our Max-Message-Size, sent in our CSM (section 5.3.1).
    :param timeout: bound, in seconds, on the TCP connect and on the opening handshake.
    :param endpoint: connect through this endpoint instead of one to ``host``:``port``
        (which then only give the Host header); no TLS is added to it.
    :param require_csm: abort a server whose first message is not a CSM (section 3.3).
    :param secure: ``coaps+ws``: WebSockets over TLS.
    :param path: the handshake's request target: ``/.well-known/coap`` (section 8.3),
        unless the server is mounted elsewhere.
    :param tls_options: with ``secure``, a complete ``IOpenSSLClientConnectionCreator``.
    :param trust_root: with ``secure`` and no ``tls_options``, the certificate
        authorities to trust (an ``IOpenSSLTrustRoot`` such as ``Certificate.loadPEM``);
        the platform's by default.  The server's certificate must be valid for ``host``,
        checked with service_identity by Twisted's ``optionsForClientTLS``.
    :param origin: an Origin header to send (browsers send one; we do not by default).

    Fires with a :class:`CoapWebSocketClientProtocol` that has sent its CSM, so requests
    can go at once (section 3.3); fails with :class:`WebSocketConnectError` when the
    connection or the handshake fails or ``coap`` is not selected.
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    reactor = default_reactor(reactor)
    host = host.strip("[]")  # an IPv6 literal as written in a URI
    factory = CoapWebSocketClientFactory(
        host,
        port,
        site,
        secure=secure,
        path=path,
        max_message_size=max_message_size,
        require_csm=require_csm,
        open_timeout=timeout,
        origin=origin,
        reactor=reactor,
        limits=limits,
    )
    if endpoint is None:
        endpoint = HostnameEndpoint(reactor, host, factory.server_port, timeout=timeout)
        if secure:
            if tls_options is None:
                from twisted.internet.ssl import optionsForClientTLS

                tls_options = optionsForClientTLS(host, trustRoot=trust_root)
            endpoint = wrapClientTLS(tls_options, endpoint)

    connected: list[CoapWebSocketClientProtocol] = []

    def cancel(_: Deferred[CoapWebSocketClientProtocol]) -> None:
        connecting.cancel()  # still connecting: stop; connected: drop the link
        for protocol in connected:
            protocol._drop(abort=True)

    factory.opened = Deferred(cancel)

    def transport_connected(protocol: CoapWebSocketClientProtocol) -> None:
        connected.append(protocol)

    def connect_failed(failure: Failure) -> None:
        if failure.check(CancelledError):
            return  # we cancelled it: factory.opened fails with CancelledError itself
        if not factory.opened.called:
            reason = f"cannot connect to {factory.endpoint_url}: {failure.getErrorMessage()}"
            factory.opened.errback(Failure(WebSocketConnectError(reason)))

    connecting: Deferred[Any] = endpoint.connect(factory)
    connecting.addCallbacks(transport_connected, connect_failed)
    return factory.opened
