"""The server side of CoAP over WebSockets (RFC 8323 sections 4.1 and 8.3).

:class:`CoapWebSocketServerFactory` listens on a port of its own::

    serverFromString(reactor, "tcp:8080").listen(CoapWebSocketServerFactory(Site(root)))

or serves under a ``twisted.web`` site through
:func:`~coaptcp.transport.websocket.resource.websocket_resource`.  Each connection is a
:class:`CoapWebSocketServerProtocol`, counted against the connection limits from accept
(:mod:`coaptcp.transport.admission`) and given :attr:`Limits.ws_handshake_timeout` seconds
to finish its opening handshake.
"""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from coaptcp.channel.channel import DEFAULT_CLOSE_TIMEOUT
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server, make_upload_budget
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, UploadBudget
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Role
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.admission import ConnectionAdmission, ConnectionGate, Refusal
from coaptcp.transport.websocket.common import (
    COAP_SUBPROTOCOL,
    WEBSOCKET_VERSION,
    WELL_KNOWN_COAP,
    CoapWebSocketMixin,
    apply_coap_options,
    uri_host_from_header,
)
from coaptcp.transport.websocket.fastpath import AutobahnServerHandshake

__all__ = ["CoapWebSocketServerFactory", "CoapWebSocketServerProtocol"]


class CoapWebSocketServerProtocol(  # type: ignore[misc]
    AutobahnServerHandshake, CoapWebSocketMixin, WebSocketServerProtocol
):
    """The server end of one CoAP-over-WebSockets connection (RFC 8323 section 4).

    Accepts the opening handshake only with the subprotocol ``coap`` (and, standalone,
    only at ``/.well-known/coap``), then sends its CSM.  The application side is the same
    as :class:`~coaptcp.transport.tcp.CoapProtocol`: :meth:`request`, :meth:`ping`,
    :meth:`release`, :meth:`abort` and :attr:`channel`.
    """

    factory: CoapWebSocketServerFactory
    _default_host: str | None = None
    _handshake_call: IDelayedCall | None = None
    _refusal: Refusal | None = None

    def connectionMade(self) -> None:
        """Count the connection from accept, and start the handshake's clock.

        Mounted in a ``twisted.web`` site, the HTTP connection that hands us its
        transport was counted already: its count becomes ours.  A connection over a
        limit gets HTTP 503 (or, far over it, is dropped at once).
        """
        super().connectionMade()
        factory = self.factory
        handover = factory._handover
        gate = factory.gate
        peer = self.transport.getPeer()
        if handover is not None and gate.transfer(handover, self):
            refusal = gate.readdress(self, peer)  # after a PROXY header, the client's
        else:
            refusal = gate.admit(self, peer)
        timeout = factory.limits.ws_handshake_timeout
        if timeout is not None:
            self._handshake_call = factory.reactor.callLater(timeout, self._handshake_timed_out)
        if refusal is not None:
            if handover is None or not refusal.answer:
                self._refuse(refusal)
            else:
                # Counted only now, in a twisted.web site of its own: the handshake that
                # twisted.web read is on its way, refuse it (onConnect) once it is here.
                self._refusal = refusal

    def _refuse(self, refusal: Refusal) -> None:
        if not refusal.answer:
            self.transport.abortConnection()
            return
        self._refuse_handshake(
            f"Service Unavailable: {refusal.diagnostic}",
            503,
            [("Retry-After", str(self.factory.limits.retry_after))],
        )

    def _handshake_timed_out(self) -> None:
        self._handshake_call = None
        if self._ws_open():
            return
        factory = self.factory
        factory.gate.handshake_timed_out(
            factory.reactor, self.transport.getPeer(), factory.limits.ws_handshake_timeout or 0
        )
        self.transport.abortConnection()

    def _stop_handshake_timer(self) -> None:
        call, self._handshake_call = self._handshake_call, None
        if call is not None and call.active():
            call.cancel()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # type: ignore[override]
        self._stop_handshake_timer()
        self.factory.discharge(self)
        super().connectionLost(reason)

    def onConnect(self, request: ConnectionRequest) -> str:
        """Check the handshake (RFC 8323 section 4.1) and pick the subprotocol."""
        if self._refusal is not None:
            raise ConnectionDeny(
                ConnectionDeny.SERVICE_UNAVAILABLE,
                f"Service Unavailable: {self._refusal.diagnostic}",
            )
        path = self.factory.path
        if path is not None and request.path != path:
            raise ConnectionDeny(
                ConnectionDeny.NOT_FOUND,
                f"Not Found: CoAP over WebSockets is served at {path}",
            )
        if COAP_SUBPROTOCOL not in request.protocols:
            offered = ", ".join(request.protocols) if request.protocols else "none"
            raise ConnectionDeny(
                ConnectionDeny.BAD_REQUEST,
                f'Bad Request: offer the WebSocket subprotocol "coap" '
                f"(RFC 8323 section 4.1); offered: {offered}",
            )
        self._default_host = uri_host_from_header(request.host or "")
        return COAP_SUBPROTOCOL

    def onOpen(self) -> None:
        factory = self.factory
        self._start_channel(
            Role.ACCEPTOR,
            site=factory.site,
            reactor=factory.reactor,
            default_host=self._default_host,
            max_message_size=factory.max_message_size,
            require_csm=factory.require_csm,
            close_timeout=factory.close_timeout,
            limits=factory.limits,
            blockwise=make_blockwise_server(
                factory.limits, factory.upload_budget, factory.max_body_size
            ),
        )
        self._stop_handshake_timer()
        factory.connections.add(self)  # counted since accept; now it can be released
        factory.count_accepted(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._channel_lost(wasClean, code, reason)


class CoapWebSocketServerFactory(ConnectionAdmission, WebSocketServerFactory):  # type: ignore[misc]
    """Builds :class:`CoapWebSocketServerProtocol` instances for one resource tree.

    :param site: the resource tree (a :class:`Site`, a bare :class:`Resource`, or ``None``
        to answer every request with 5.01, RFC 8323 section 3.3).
    :param path: the only request path accepted for the handshake, ``/.well-known/coap``
        by default (RFC 8323 section 8.3); ``None`` accepts any (used when mounted in a
        ``twisted.web`` site, which has already routed the request).
    :param max_message_size: our Max-Message-Size (RFC 8323 section 5.3.1).
    :param require_csm: abort peers whose first message is not a CSM (RFC 8323 section 3.3).
    :param allowed_origins: autobahn's Origin patterns for browser clients (``["*"]``: any).
    :param reactor: the reactor for our timers; the global one when ``None``.
    :param max_body_size: the largest Block1 upload reassembled (RFC 7959 section 2.9.3).
    :param upload_budget: the bytes partial Block1 uploads may hold, shared with the
        server's other factories (:func:`~coaptcp.channel.limits.make_upload_budget`); by
        default one of ``limits.max_upload_bytes`` for this factory alone.
    :param limits: timeouts and bounds (:mod:`coaptcp.channel.limits`), the handshake timeout
        and the connection limits among them.
    :param gate: counts the connections against ``limits`` from accept (shared with the
        server's other listeners); by default the factory counts its own.
    """

    protocol = CoapWebSocketServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        path: str | None = WELL_KNOWN_COAP,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_csm: bool = True,
        allowed_origins: list[str] | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        reactor: IReactorTime | None = None,
        server: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        upload_budget: UploadBudget | None = None,
        gate: ConnectionGate | None = None,
    ) -> None:
        if server is None:
            from coaptcp.core.version import __version__

            server = f"coaptcp/{__version__}"
        reactor = default_reactor(reactor)
        super().__init__(protocols=[COAP_SUBPROTOCOL], server=server, reactor=reactor)
        self.reactor = reactor
        if isinstance(site, Resource):
            site = Site(site)
        self.site = site
        self.path = path
        self.max_message_size = max_message_size
        self.require_csm = require_csm
        self.close_timeout = close_timeout
        self.limits = limits
        self.max_body_size = max_body_size
        if upload_budget is None:
            upload_budget = make_upload_budget(limits)
        self.upload_budget = upload_budget
        self._init_admission(gate)
        #: While ``twisted.web`` hands a connection to us: the HTTP channel it leaves.
        self._handover: object | None = None
        apply_coap_options(self, close_timeout)
        self.setProtocolOptions(
            webStatus=False,  # a plain GET gets 426 Upgrade Required, not autobahn's page
            allowedOrigins=allowed_origins or ["*"],
            versions=[WEBSOCKET_VERSION],  # RFC 6455 only; 8 (hybi-08) and older get 426
            openHandshakeTimeout=0,  # our own timeout runs from accept (connectionMade)
        )
