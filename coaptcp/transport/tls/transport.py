"""The TLS layer under a coaps+tcp connection (RFC 8323 sections 8.2 and 9).

TLS is an endpoint concern: the same :class:`~coaptcp.transport.tcp.CoapProtocol` runs inside
Twisted's TLS layer (:class:`~twisted.protocols.tls.TLSMemoryBIOProtocol`), over any stream
endpoint (``tcp:``, ``tcp6:``, ``unix:``, ``systemd:``).  :class:`CoapTLSTransport` adds what
CoAP needs around it:

- the handshake must finish within a timeout, or the connection is dropped (a peer that
  sends garbage or stalls costs nothing lasting);
- the ALPN rules of RFC 8323 section 8.2 (settings in :mod:`coaptcp.transport.tls.settings`);
- the client checks the server's certificate chain and name with ``service_identity``;
- once the handshake is done, requests see who the peer is as ``request.tls``
  (:class:`~coaptcp.server.tlsinfo.TLSInfo`), and the SNI name becomes their default Uri-Host
  (RFC 8323 section 8.5).

:func:`tls_server_factory` and :func:`tls_client_factory` wrap a
:class:`~coaptcp.transport.tcp.CoapFactory` in it; :mod:`coaptcp.transport.tls.connect` has
``listen_tls`` and ``connect_tls`` on top, and :mod:`coaptcp.transport.tls.errors` the
failures.
"""

from __future__ import annotations

import ipaddress
import warnings
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from coaptcp.server.tlsinfo import TLSInfo
from coaptcp.transport.eager import EagerTLSTransport
from coaptcp.transport.tcp import CoapFactory, CoapProtocol
from coaptcp.transport.tls import psk
from coaptcp.transport.tls.errors import (
    ALPNNotNegotiated,
    CertificateRejected,
    HandshakeFailed,
    HandshakeTimeout,
    InsecureTLSWarning,
    TLSFailure,
    as_tls_failure,
    failure_kind,
    verify_error_text,
)
from coaptcp.transport.tls.settings import (
    ALPN_COAP,
    COAPS_TCP_PORT,
    ClientTLSSettings,
    ServerTLSSettings,
    describe_ssl_error,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = [
    "CoapTLSFactory",
    "CoapTLSTransport",
    "tls_client_factory",
    "tls_server_factory",
]

log = Logger()


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# -- connection creators --------------------------------------------------------------------


@implementer(IOpenSSLServerConnectionCreator)
class _ServerCreator:
    """Makes the server side's :class:`SSL.Connection` from one shared context."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """Makes the client side's :class:`SSL.Connection`: SNI, and a verify callback that
    checks the chain (OpenSSL's verdict) and the leaf's name (``service_identity``)."""

    def __init__(self, settings: ClientTLSSettings, host: str) -> None:
        self.settings = settings
        name = settings.server_name or host
        self.name = name.strip("[]")
        self.name_is_ip = _is_ip_address(self.name)
        self.sni: bytes | None = None
        if not self.name_is_ip:
            try:
                self.sni = self.name.encode("ascii")
            except UnicodeEncodeError:
                self.sni = self.name.encode("idna")
        self.context = settings.context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        if self.sni is not None:
            connection.set_tlsext_host_name(self.sni)
        if not self.settings.insecure:
            connection.set_verify(SSL.VERIFY_PEER, self._verifier(tlsProtocol))
        return connection

    def _verifier(self, transport: Any) -> Any:
        def verify(
            connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int
        ) -> bool:
            try:
                if not ok:
                    subject = certificate.to_cryptography().subject.rfc4514_string()
                    reason = verify_error_text(errno)
                    transport.failVerification(
                        Failure(CertificateRejected(f"certificate {subject!r}: {reason}"))
                    )
                    return False
                if depth == 0:
                    cert = certificate.to_cryptography()
                    try:
                        if self.name_is_ip:
                            verify_certificate_ip_address(cert, self.name)
                        else:
                            verify_certificate_hostname(cert, self.name)
                    except (VerificationError, CertificateError) as error:
                        transport.failVerification(
                            Failure(
                                CertificateRejected(
                                    f"the certificate is not valid for {self.name}: {error}"
                                )
                            )
                        )
                        return False
                return True
            except Exception:
                # An exception escaping an OpenSSL callback would be lost; log and refuse.
                log.failure("Unexpected error while verifying a server certificate")
                return False

        return verify


# -- policies: what a finished handshake must satisfy ---------------------------------------


def _negotiated(connection: SSL.Connection) -> str | None:
    alpn = connection.get_alpn_proto_negotiated()
    return alpn.decode("ascii", errors="replace") if alpn else None


def _peer_certificate(connection: SSL.Connection) -> Any:
    certificate = connection.get_peer_certificate()
    return certificate.to_cryptography() if certificate is not None else None


class _ServerPolicy:
    def __init__(self, settings: ServerTLSSettings) -> None:
        self.require_alpn = settings.require_alpn

    def check(self, transport: CoapTLSTransport, connection: SSL.Connection) -> TLSInfo:
        alpn = _negotiated(connection)
        if alpn is None and self.require_alpn:
            port = getattr(transport.getHost(), "port", None)
            if port != COAPS_TCP_PORT:
                raise ALPNNotNegotiated(
                    "the client offered no ALPN; this port requires 'coap' (RFC 8323 section 8.2)"
                )
        server_name = connection.get_servername()
        return TLSInfo(
            version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name() or "",
            alpn=alpn,
            server_name=server_name.decode("ascii", errors="replace") if server_name else None,
            peer_certificate=_peer_certificate(connection),
            psk_identity=psk.psk_identity(connection),
        )


class _ClientPolicy:
    def __init__(self, settings: ClientTLSSettings, creator: _ClientCreator, port: int) -> None:
        self.settings = settings
        self.creator = creator
        self.port = port

    def check(self, transport: CoapTLSTransport, connection: SSL.Connection) -> TLSInfo:
        alpn = _negotiated(connection)
        if alpn != ALPN_COAP.decode() and self.settings.alpn_required(self.port):
            raise ALPNNotNegotiated(
                f"the server on port {self.port} did not select ALPN 'coap' (it selected "
                f"{alpn!r}); RFC 8323 section 8.2 requires closing the connection"
            )
        certificate = _peer_certificate(connection)
        identity = psk.psk_identity(connection) if certificate is None else None
        if self.settings.insecure:
            log.warn(
                "INSECURE coaps+tcp connection to {name}:{port}: the server's certificate "
                "was NOT verified (insecure=True); anyone can impersonate this server",
                name=self.creator.name,
                port=self.port,
            )
        elif certificate is None and identity is None:
            raise HandshakeFailed("the server authenticated with neither a certificate nor PSK")
        return TLSInfo(
            version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name() or "",
            alpn=alpn,
            server_name=self.creator.sni.decode("ascii") if self.creator.sni else None,
            peer_certificate=certificate,
            psk_identity=identity,
        )


# -- the TLS transport and its factory ------------------------------------------------------


@implementer(ISSLTransport)
class CoapTLSTransport(EagerTLSTransport):
    """Twisted's TLS layer for one coaps+tcp connection, with a handshake timeout and the
    checks of RFC 8323 section 8.2 once the handshake is done.

    What it writes goes to the socket at once when it can
    (:class:`~coaptcp.transport.eager.EagerTLSTransport`), not on the reactor's next turn.

    :ivar tls_info: the handshake's outcome once it succeeded (also ``request.tls``).
    :ivar handshake_result: client side only: fires with the
        :class:`~coaptcp.transport.tcp.CoapProtocol` once the handshake and the checks succeed,
        or fails with a :class:`TLSFailure`.
    """

    factory: CoapTLSFactory
    tls_info: TLSInfo | None = None
    handshake_result: Deferred[CoapProtocol] | None = None
    #: When the TCP connection below was made and when the handshake finished (the
    #: factory's clock), for ``coaptcp-client -v``.
    tcp_connected_at: float | None = None
    handshake_completed_at: float | None = None
    _handshake_timer: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        factory = self.factory
        self.tcp_connected_at = factory.clock.seconds()
        # TCP_NODELAY is set by CoapProtocol.connectionMade on the socket below us.
        if factory.is_client:
            self.handshake_result = Deferred(self._cancel_handshake)
        self._handshake_timer = factory.clock.callLater(
            factory.handshake_timeout, self._handshake_timed_out
        )
        super().makeConnection(transport)

    def _cancel_timer(self) -> None:
        timer, self._handshake_timer = self._handshake_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        timeout = self.factory.handshake_timeout
        log.info(
            "TLS handshake with {peer} did not finish within {timeout} s; dropping it",
            peer=self.getPeer(),
            timeout=timeout,
        )
        self.failVerification(
            Failure(HandshakeTimeout(f"TLS handshake did not finish within {timeout} s"))
        )

    def _cancel_handshake(self, _: Deferred[CoapProtocol]) -> None:
        self.abortConnection()

    def coap_handshake_completed(self, protocol: CoapProtocol) -> None:
        """Called by :meth:`CoapProtocol.handshakeCompleted`, before any application data
        is read or written: apply the factory's checks and record the peer's identity."""
        self._cancel_timer()
        self.handshake_completed_at = self.factory.clock.seconds()
        try:
            info = self.factory.policy.check(self, self.getHandle())
        except TLSFailure as error:
            log.info(
                "Closing TLS connection with {peer}: {error}", peer=self.getPeer(), error=str(error)
            )
            self.failVerification(Failure(error))
            return
        self.tls_info = info
        channel = protocol.channel
        channel.tls = info
        if not self.factory.is_client and info.server_name:
            channel.default_host = info.server_name
        if self.handshake_result is not None:
            # Twisted sends what was written during the handshake (our CSM) only after this
            # hook returns; fire on the next turn so that a request written from a callback
            # cannot overtake the CSM (RFC 8323 section 5.3: the CSM comes first).
            self.factory.clock.callLater(0, self._connected, protocol)

    def _connected(self, protocol: CoapProtocol) -> None:
        result = self.handshake_result
        if result is not None and not result.called:
            result.callback(protocol)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        # Twisted keeps the handshake's own error (or failVerification's) in _reason.
        failure: Failure = getattr(self, "_reason", None) or reason
        if self.tls_info is not None and failure.check(SSL.Error):
            # After the handshake (a TLS 1.3 client learns only now that the server
            # wanted its certificate): the protocol's reason, in words.
            assert failure.value is not None
            self._reason = Failure(TLSFailure(f"TLS error: {describe_ssl_error(failure.value)}"))
        if self.tls_info is None and not self.factory.is_client:
            counts = self.factory.counts
            if counts is not None:
                counts.tls_failed(failure_kind(failure))
            log.info(
                "TLS handshake with {peer} failed: {error}",
                peer=self.getPeer(),
                error=as_tls_failure(failure).getErrorMessage(),
            )
        super().connectionLost(reason)
        result = self.handshake_result
        if result is not None and not result.called:
            result.errback(as_tls_failure(failure))


class CoapTLSFactory(TLSMemoryBIOFactory):
    """Wraps a :class:`~coaptcp.transport.tcp.CoapFactory` in TLS; build one with
    :func:`tls_server_factory` or :func:`tls_client_factory`."""

    protocol = CoapTLSTransport

    def __init__(
        self,
        creator: _ServerCreator | _ClientCreator,
        is_client: bool,
        wrapped: CoapFactory,
        *,
        clock: IReactorTime,
        handshake_timeout: float,
        policy: _ServerPolicy | _ClientPolicy,
    ) -> None:
        super().__init__(creator, is_client, wrapped, clock)
        self.is_client = is_client
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.policy = policy
        #: Counts the failed handshakes by kind when the server exports metrics: its
        #: site's (:mod:`coaptcp.server.counts`); ``None`` otherwise.
        self.counts = None if is_client else getattr(wrapped.site, "counts", None)


def tls_server_factory(
    coap_factory: CoapFactory, settings: ServerTLSSettings, *, clock: IReactorTime | None = None
) -> CoapTLSFactory:
    """A factory serving coaps+tcp to listen with on any stream endpoint.

    Builds the TLS context now, so bad files raise
    :class:`~coaptcp.transport.tls.settings.TLSConfigurationError` here, not on the first
    connection.
    """
    return CoapTLSFactory(
        _ServerCreator(settings.context),
        False,
        coap_factory,
        clock=clock if clock is not None else coap_factory.reactor,
        handshake_timeout=settings.handshake_timeout,
        policy=_ServerPolicy(settings),
    )


def tls_client_factory(
    coap_factory: CoapFactory,
    settings: ClientTLSSettings,
    host: str,
    port: int = COAPS_TCP_PORT,
    *,
    clock: IReactorTime | None = None,
) -> CoapTLSFactory:
    """A factory for one coaps+tcp connection to ``host``:``port`` (the name checked and
    sent as SNI; the port decides whether ALPN is required)."""
    if settings.insecure:
        warnings.warn(
            f"coaps+tcp to {host}:{port} without verifying the server (insecure=True)",
            InsecureTLSWarning,
            stacklevel=3,
        )
    creator = _ClientCreator(settings, host)
    factory = CoapTLSFactory(
        creator,
        True,
        coap_factory,
        clock=clock if clock is not None else coap_factory.reactor,
        handshake_timeout=settings.handshake_timeout,
        policy=_ClientPolicy(settings, creator, port),
    )
    factory.noisy = False  # one factory per connection: no start and stop lines for each
    return factory
