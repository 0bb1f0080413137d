"""CoAP over TCP (and TLS) for Twisted: :class:`CoapProtocol` and :class:`CoapFactory`.

The same classes serve ``coap+tcp`` and ``coaps+tcp``: TLS is the endpoint's concern
(RFC 8323 sections 3 and 9).  Either side can send requests (section 3.3); a factory with
a :class:`~coaptcp.server.resource.Site` answers them, one without answers 5.01.

Listening::

    from twisted.internet.endpoints import serverFromString
    serverFromString(reactor, "tcp:5683").listen(CoapFactory(Site(root)))

Connecting::

    protocol = await connect_tcp(reactor, "coap.example", 5683)
    response = await protocol.request(Code.GET, Options.build(uri_path=["hello"]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from coaptcp.channel.channel import Channel, ChannelOwner
from coaptcp.channel.limits import DEFAULT_LIMITS, Limits, make_blockwise_server, make_upload_budget
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, UploadBudget
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role
from coaptcp.core.uri import DEFAULT_PORTS
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.admission import ConnectionAdmission, ConnectionGate, host_of
from coaptcp.transport.eager import (
    BATCH_MESSAGES,
    EagerWrite,
    closes_at_once,
    eager_writer,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = ["COAP_TCP_PORT", "DEFAULT_CONNECT_TIMEOUT", "CoapFactory", "CoapProtocol", "connect_tcp"]

#: The default port of ``coap+tcp`` (RFC 8323 section 8.1).
COAP_TCP_PORT = DEFAULT_PORTS["coap+tcp"]
#: Seconds the ``connect_*`` functions wait for the TCP connection (and, over WebSockets,
#: the opening handshake) by default.
DEFAULT_CONNECT_TIMEOUT = 30.0


@implementer(IHandshakeListener, IHalfCloseableProtocol)
class CoapProtocol(ChannelOwner, Protocol):
    """One CoAP-over-TCP connection (RFC 8323 section 3), either role.

    The protocol sends its CSM as soon as it is connected.  Use :meth:`request`,
    :meth:`ping` and :meth:`release` to talk to the peer.  A peer that closes its
    sending side (a TCP FIN) still gets the answers to what it sent before.
    """

    factory: CoapFactory
    channel: Channel
    _send: EagerWrite

    def connectionMade(self) -> None:
        factory = self.factory
        connection = Connection(
            factory.role,
            max_message_size=factory.max_message_size,
            block_wise_transfer=True,
            require_csm=factory.require_csm,
        )
        transport = self.transport
        assert transport is not None
        # Whole messages are written at once: do not hold the tail of one (a large block's
        # last segment, say) for the peer's ACK (Nagle), which stalls request/response.
        # Over TLS this reaches the socket below the TLS layer; without it, the last flight
        # of a handshake (TLS 1.3 tickets, then our CSM) waited ~40 ms for a delayed ACK.
        no_delay = getattr(transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        secure = ISSLTransport.providedBy(transport)
        # Answers go to the socket from the receive path when Twisted holds nothing
        # unsent, not on the reactor's next turn (coaptcp.transport.eager).
        self._send = eager_writer(transport)
        self.channel = Channel(
            connection,
            write=self._write_frames,
            write_soon=self._write_frames_soon,
            close=self._close_transport,
            abort=transport.abortConnection,  # type: ignore[attr-defined]
            reactor=factory.reactor,
            site=factory.site,
            peer=transport.getPeer(),
            default_host=host_of(transport.getHost()),
            secure=bool(secure),
            limits=factory.limits,
            blockwise=make_blockwise_server(
                factory.limits, factory.upload_budget, factory.max_body_size
            ),
            set_reading=self._set_reading,
        )
        refusal = factory.admit(self)
        if refusal is not None and not refusal.answer:
            transport.abortConnection()  # type: ignore[attr-defined]
            return
        # Flow control: when the transport's write buffer fills (a slow reader), we stop
        # reading its requests and hold notifications until it drains.  Over TLS the
        # handshake must be read first: Twisted's TLS layer pauses its producer while our
        # CSM waits for the handshake, and pausing reads then would stall the handshake.
        self._reading_pausable = not secure
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.channel.start()
        if refusal is not None:
            self.channel.abort(refusal.diagnostic, "connection_limit")

    def _write_frames(self, frames: list[bytes], soon: bool = False) -> None:
        # One write of the joined frames: one send, and writeSequence would check and
        # count each frame in Python.  Many answers to one read, and notifications
        # (``soon``), may wait for the end of the turn (coaptcp.transport.eager).
        if len(frames) == 1:
            self._send(frames[0], soon)
        else:
            self._send(b"".join(frames), soon or len(frames) >= BATCH_MESSAGES)

    def _write_frames_soon(self, frames: list[bytes]) -> None:
        # Notifications: at the end of the reactor's turn (the channel's write_soon).
        self._write_frames(frames, True)

    def _close_transport(self) -> bool:
        """Close gracefully, no longer as the transport's producer: Twisted's TLS layer
        holds back its close_notify, and so the close, while a producer is registered.

        True when the close cannot wait for the peer: a TCP transport that holds nothing
        unsent, its socket writable, closes in the reactor's next turn (TLS waits for the
        peer's close_notify; :func:`~coaptcp.transport.eager.closes_at_once`).
        """
        transport = self.transport
        if transport is None:
            return True
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        return closes_at_once(transport)

    _peer_settled = False

    def dataReceived(self, data: bytes) -> None:
        if not self._peer_settled and self._settle_peer():
            return
        # The peer's address is settled: from now on the transport (or the TLS layer)
        # calls the channel directly, one call less for every read.
        self.dataReceived = self.channel.data_received  # type: ignore[method-assign]
        self.channel.data_received(data)

    def _settle_peer(self) -> bool:
        """Take the peer's address again at the first data; true if it is now refused.

        Behind a PROXY-protocol endpoint (``haproxy:tcp:...``), the transport learns the
        real client's address from the header that precedes the first data, after
        ``connectionMade``: resources and the per-address limit must see that address,
        not the load balancer's (and the default Uri-Host is the proxied destination).
        """
        self._peer_settled = True
        transport = self.transport
        assert transport is not None
        peer = transport.getPeer()
        if peer == self.channel.peer:
            return False
        self.channel.peer = peer
        self.channel.default_host = host_of(transport.getHost())
        refusal = self.factory.gate.readdress(self, peer)
        if refusal is not None:
            self.channel.abort(refusal.diagnostic, "connection_limit")
            return True
        return False

    def handshakeCompleted(self) -> None:
        """Twisted's TLS layer finished the handshake, before any application data: the
        coaps+tcp transport (:mod:`coaptcp.transport.tls.transport`) checks ALPN and records the
        peer's
        identity for ``request.tls`` (RFC 8323 sections 8.2 and 9)."""
        self._reading_pausable = True  # the handshake is read: backpressure may apply
        completed = getattr(self.transport, "coap_handshake_completed", None)
        if completed is not None:
            completed(self)

    def readConnectionLost(self) -> None:
        """The peer sent a FIN: answer what it sent, then close (``IHalfCloseableProtocol``)."""
        self.channel.input_ended()

    def writeConnectionLost(self) -> None:
        """Our sending side is closed (we never half-close it ourselves): drop the link."""
        transport = self.transport
        if transport is not None:
            transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self.factory.discharge(self)
        if hasattr(self, "channel"):
            self.channel.connection_lost(reason)



class CoapFactory(ConnectionAdmission, Factory):
    """Builds :class:`CoapProtocol` instances for one role and one resource tree.

    :param site: the resource tree to serve, a bare :class:`Resource` (wrapped in a
        :class:`Site`), or ``None`` to serve nothing (peers get 5.01).
    :param role: :attr:`Role.ACCEPTOR` for listening factories (the default),
        :attr:`Role.INITIATOR` for connecting ones.
    :param max_message_size: our Max-Message-Size (RFC 8323 section 5.3.1).
    :param require_csm: abort peers whose first message is not a CSM (the default); set
        false to accept peers that send none, as Californium (RFC 8323 section 5.3).
    :param reactor: the reactor for timers; the global one when ``None``.
    :param max_body_size: the largest Block1 upload reassembled for a resource; more is
        answered 4.13 with Size1 (RFC 7959 section 2.9.3).
    :param upload_budget: the bytes partial Block1 uploads may hold, shared with the
        server's other factories (:func:`~coaptcp.channel.limits.make_upload_budget`); by
        default one of ``limits.max_upload_bytes`` for this factory alone.
    :param gate: counts the connections against ``limits`` (shared with the server's other
        listeners); by default the factory counts its own.
    """

    protocol = CoapProtocol  # type: ignore[assignment]
    log = Logger()

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        role: Role = Role.ACCEPTOR,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_csm: bool = True,
        reactor: IReactorTime | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        upload_budget: UploadBudget | None = None,
        gate: ConnectionGate | None = None,
    ) -> None:
        if isinstance(site, Resource):
            site = Site(site)
        self.limits = limits
        self._init_admission(gate)
        self.site = site
        self.role = role
        # A connecting factory serves one connection: Twisted's "Starting factory" and
        # "Stopping factory" lines would come for each (a proxy's every upstream one).
        self.noisy = role is Role.ACCEPTOR
        self.max_message_size = max_message_size
        self.require_csm = require_csm
        self.max_body_size = max_body_size
        if upload_budget is None:
            upload_budget = make_upload_budget(limits)
        self.upload_budget = upload_budget
        self.reactor = default_reactor(reactor)


def connect_tcp(
    reactor: Any,
    host: str,
    port: int = COAP_TCP_PORT,
    *,
    site: Site | Resource | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    endpoint: IStreamClientEndpoint | None = None,
    require_csm: bool = True,
) -> Deferred[CoapProtocol]:
    """Open a CoAP-over-TCP connection (RFC 8323 sections 3 and 8.1); fire with its protocol.

    :param reactor: the reactor (``None``: the global one).
    :param host: the server's name or IP address (an IPv6 literal with or without
        brackets); a name resolves to IPv4 and IPv6 addresses, the first to connect wins.
    :param port: the TCP port, 5683 by default.
    :param site: resources this side serves to the server (section 3.3 lets either side
        send requests); ``None`` answers 5.01.
    :param limits: timeouts and bounds of the connection (:mod:`coaptcp.channel.limits`).
    :param max_message_size: our Max-Message-Size, sent in our CSM (section 5.3.1).
    :param timeout: seconds to wait for the TCP connection.
    :param endpoint: connect through this stream client endpoint instead of one to
        ``host``:``port`` (``clientFromString(reactor, "unix:...")``, say).
    :param require_csm: abort a server whose first message is not a CSM (section 3.3).

    The returned protocol has already sent its CSM; requests may be sent at once
    (RFC 8323 section 3.3 lets the initiator go ahead without the acceptor's CSM).
    """
    from twisted.internet.endpoints import HostnameEndpoint

    reactor = default_reactor(reactor)
    factory = CoapFactory(
        site,
        role=Role.INITIATOR,
        max_message_size=max_message_size,
        require_csm=require_csm,
        reactor=reactor,
        limits=limits,
    )
    if endpoint is None:
        endpoint = HostnameEndpoint(reactor, host.strip("[]"), port, timeout=timeout)
    connected: Deferred[CoapProtocol] = endpoint.connect(factory)  # type: ignore[assignment]
    return connected
