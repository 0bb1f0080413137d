"""How the :class:`~coaptcp.client.client.Client` opens connections: one connector per URI scheme.

A *connector* is a callable ``connector(reactor, host, port, options)`` returning a
:class:`~twisted.internet.defer.Deferred` that fires with a connected
:class:`ClientConnection` (RFC 8323 section 8 names the scheme; each scheme has its own
transport: TCP, TLS, WebSockets, WebSockets over TLS).  The client keeps a mapping from
scheme name to connector, so a transport plugs in by adding one entry, and tests plug in
in-memory connections the same way.

The contract a connector must satisfy:

- ``host`` is a registered name (lowercase, percent-decoded, possibly non-ASCII) or an IP
  address as text (IPv6 without brackets, maybe with a ``%zone``); ``port`` is an int.
  ``options`` is a :class:`ConnectOptions`; TLS connectors read ``options.tls``, and
  stream connectors serve ``options.site`` to the peer's requests (RFC 8323 section 3.3).
- The Deferred fires once the connection can carry CoAP messages (for WebSockets: after
  the opening handshake), with an object that has already queued its CSM: requests may be
  sent at once (RFC 8323 section 3.3: the initiator need not wait for the peer's CSM).
- It fails with the reason the connection could not be made (any exception; Twisted's
  ``ConnectError`` family, a TLS error, a handshake refusal).  The client turns it into
  :class:`ConnectFailed` naming the endpoint.
- Cancelling the Deferred abandons the attempt.
- TLS connectors offer ALPN ``coap``, send SNI when ``host`` is a name, and check the
  server certificate against ``host`` unless ``options.tls.insecure`` (RFC 8323 section 9).
- WebSocket connectors connect to :func:`coaptcp.core.uri.websocket_url` with subprotocol
  ``coap`` and a Host header naming ``host`` and ``port``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, fail

from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.options import EMPTY_OPTIONS, Options

if TYPE_CHECKING:
    from coaptcp.channel.observing import ChannelObservation
    from coaptcp.core.connection import State
    from coaptcp.core.events import PeerSettings
    from coaptcp.core.message import Message
    from coaptcp.server.resource import Response, Site

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "ClientChannel",
    "ClientConnection",
    "ClientError",
    "ConnectFailed",
    "ConnectOptions",
    "ConnectionView",
    "Connector",
    "SchemeNotAvailable",
    "TlsOptions",
    "default_connectors",
    "scheme_not_available",
    "tcp_connector",
]

#: Seconds to wait for a TCP connection (or a TLS/WebSocket handshake) to be made.
DEFAULT_CONNECT_TIMEOUT = 10.0


class ClientError(CoapTcpError):
    """Base class of the errors the client raises itself."""


class SchemeNotAvailable(ClientError):
    """The URI's scheme has no connector in this build (not yet, or not configured)."""

    def __init__(self, scheme: str, reason: str = "") -> None:
        message = f"{scheme}:// is not available yet in coaptcp's client"
        super().__init__(f"{message}: {reason}" if reason else message)
        self.scheme = scheme


class ConnectFailed(ClientError):
    """The connection to an endpoint could not be made.

    :ivar endpoint: the endpoint as a URI (``coap+tcp://127.0.0.1:5683``).
    :ivar reason: what went wrong, one line.
    """

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"cannot connect to {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings for ``coaps+tcp`` and ``coaps+ws`` (RFC 8323 section 9).

    Certificates and keys are PEM files.  With none of the fields set, the server is
    verified against the platform's trust store and no client credentials are offered.

    :ivar cafile: trust anchors to verify the server with, instead of the platform's.
    :ivar certfile: our client certificate (chain) for mutual authentication.
    :ivar keyfile: the private key of ``certfile``; ``None`` when ``certfile`` holds it.
    :ivar psk_identity: the pre-shared-key identity (RFC 4279), bytes.
    :ivar psk_key: the pre-shared key, bytes.
    :ivar insecure: do not verify the server's certificate (testing only).
    """

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    psk_identity: bytes | None = None
    psk_key: bytes | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.psk_identity is None) != (self.psk_key is None):
            raise ValueError("a pre-shared key needs both an identity and a key")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("a client key needs its certificate (certfile)")

    @property
    def configured(self) -> bool:
        """Whether anything differs from the defaults."""
        return self != TlsOptions()


@dataclass(frozen=True)
class ConnectOptions:
    """What every connector is given besides the host and port.

    :ivar tls: TLS settings (used by the ``coaps+`` schemes only).
    :ivar max_message_size: our Max-Message-Size, sent in our CSM (RFC 8323 5.3.1).
    :ivar connect_timeout: seconds to wait for the connection (and any handshake).
    :ivar require_csm: abort a peer whose first message is not a CSM (section 5.3);
        false accepts peers that send none (see the lenient mode in docs/protocol.md).
    :ivar site: resources this side serves to the peer's requests on the connection
        (RFC 8323 section 3.3 lets either end send requests; a device that calls home
        serves its tree this way, :mod:`coaptcp.callhome`); ``None`` answers 5.01.
        Stream connectors only: ``coap://`` (UDP) ignores it.
    """

    tls: TlsOptions = field(default_factory=TlsOptions)
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    require_csm: bool = True
    site: Site | None = None


class ConnectionView(Protocol):
    """What the client reads of a connection's state (a stream's
    :class:`~coaptcp.core.connection.Connection`, or a UDP peer's stand-in)."""

    @property
    def state(self) -> State:
        """OPEN until the connection closes (RFC 8323 section 5.5)."""
        ...

    @property
    def release_sent(self) -> bool:
        """Whether we sent Release (no new requests then)."""
        ...

    @property
    def release_received(self) -> bool:
        """Whether the peer sent Release."""
        ...

    @property
    def peer(self) -> PeerSettings:
        """The peer's Max-Message-Size and BERT capability (RFC 8323 section 5.3)."""
        ...

    def encoded_size(self, message: Message) -> int:
        """The size of ``message`` on the wire."""
        ...


class ClientChannel(Protocol):
    """What the client uses of a connection's driver: a stream's
    :class:`~coaptcp.channel.Channel`, or :class:`~coaptcp.client.udp.UdpPeer` itself."""

    @property
    def connection(self) -> ConnectionView:
        """The connection's state and the peer's limits."""
        ...

    @property
    def close_reason(self) -> str | None:
        """Why it closed, once it has."""
        ...

    def when_closed(self) -> Deferred[None]:
        """Fires when the connection has closed."""
        ...

    def when_csm_received(self) -> Deferred[None]:
        """Fires once the peer's limits are known (RFC 8323 section 5.3)."""
        ...

    def observe(
        self,
        options: Options,
        *,
        on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
    ) -> ChannelObservation:
        """Register an observation (RFC 7641 section 3.1)."""
        ...


class ClientConnection(Protocol):
    """What a connector's Deferred fires with: one connected CoAP peer.

    :class:`coaptcp.transport.tcp.CoapProtocol` is one; a WebSocket protocol is another.  The
    client uses exactly these members.  ``channel`` is the connection's
    :class:`~coaptcp.channel.channel.Channel`; the client reads ``channel.when_closed()``,
    ``channel.close_reason`` and ``channel.connection`` (its state, Release flags and
    ``peer.max_message_size``).
    """

    @property
    def channel(self) -> ClientChannel:
        """The Channel driving this connection."""
        ...

    def request(
        self,
        method: Code,
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a request; fires with the response (RFC 8323 section 3.3)."""
        ...

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """Send a Ping; fires with the round-trip time in seconds (section 5.4)."""
        ...

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Release and close (section 5.5); fires when closed."""
        ...

    def abort(self, diagnostic: str) -> None:
        """Abort and close (section 5.6)."""
        ...


#: ``connector(reactor, host, port, options) -> Deferred[ClientConnection]``.
Connector = Callable[[Any, str, int, ConnectOptions], "Deferred[Any]"]


def _shared(options: ConnectOptions) -> dict[str, Any]:
    """The keyword arguments every ``connect_*`` function takes, from ``options``: the
    client's limits (its pool keeps connections alive, not the Channel), the message size
    it announces, the connect timeout, whether the peer must send its CSM first and the
    site it serves to the peer."""
    from coaptcp.channel.limits import CLIENT_LIMITS

    return {
        "limits": CLIENT_LIMITS,
        "max_message_size": options.max_message_size,
        "timeout": options.connect_timeout,
        "require_csm": options.require_csm,
        "site": options.site,
    }


def tcp_connector(reactor: Any, host: str, port: int, options: ConnectOptions) -> Deferred[Any]:
    """The ``coap+tcp`` connector: CoAP over plain TCP (RFC 8323 section 3).

    Uses :class:`~twisted.internet.endpoints.HostnameEndpoint`, so names resolve to IPv4
    and IPv6 addresses and the first to connect wins.
    """
    from coaptcp.transport.tcp import connect_tcp

    connected: Deferred[Any] = connect_tcp(reactor, host, port, **_shared(options))
    return connected


def ws_connector(reactor: Any, host: str, port: int, options: ConnectOptions) -> Deferred[Any]:
    """The ``coap+ws`` connector: CoAP over WebSockets (RFC 8323 section 4).

    Opens ``ws://host:port/.well-known/coap`` offering the subprotocol ``coap``; the Host
    header names ``host``, which is the default Uri-Host (section 8.3).
    """
    from coaptcp.transport.websocket.client import connect_websocket

    connected: Deferred[Any] = connect_websocket(reactor, host, port, **_shared(options))
    return connected


@functools.lru_cache(maxsize=32)
def _tls_settings(tls: TlsOptions) -> Any:
    """One :class:`~coaptcp.transport.tls.settings.ClientTLSSettings` per TLS configuration: its
    OpenSSL context is built once and reused by every connection."""
    from coaptcp.transport.tls.settings import ClientTLSSettings

    psk = (tls.psk_identity, tls.psk_key) if tls.psk_identity is not None else None
    return ClientTLSSettings(
        ca_file=tls.cafile,
        certificate=tls.certfile,
        private_key=tls.keyfile,
        psk=psk,  # type: ignore[arg-type]
        insecure=tls.insecure,
    )


def tls_connector(reactor: Any, host: str, port: int, options: ConnectOptions) -> Deferred[Any]:
    """The ``coaps+tcp`` connector: CoAP over TLS (RFC 8323 sections 8.2 and 9).

    Verifies the server's certificate and name (or uses the PSK), sends SNI, offers ALPN
    "coap" and insists on it on ports other than 5684; see :mod:`coaptcp.transport.tls`.
    """
    from coaptcp.transport.tls.connect import connect_tls

    try:
        settings = _tls_settings(options.tls)
    except Exception as error:  # a bad file or combination: fail this attempt clearly
        return fail(error)
    connected: Deferred[Any] = connect_tls(
        reactor, host, port, settings=settings, **_shared(options)
    )
    return connected


def _websocket_tls_options(host: str, tls: TlsOptions) -> Any:
    """Client TLS options for coaps+ws: certificate and name checks, a client
    certificate if given.  PSK has no place here (browsers and WebSocket servers use
    certificates), so asking for it is an error."""
    from twisted.internet import ssl

    if tls.psk_identity is not None:
        raise ValueError("pre-shared keys are not supported for coaps+ws; use coaps+tcp")
    if tls.insecure:
        from coaptcp.transport.tls.errors import InsecureTLSWarning

        warnings.warn(
            f"coaps+ws to {host}: the server's certificate is NOT verified (insecure)",
            InsecureTLSWarning,
            stacklevel=2,
        )
        return ssl.CertificateOptions()
    trust_root = None
    if tls.cafile is not None:
        with open(tls.cafile, "rb") as pem:
            trust_root = ssl.Certificate.loadPEM(pem.read())
    client_certificate = None
    if tls.certfile is not None:
        with open(tls.certfile, "rb") as pem:
            chain = pem.read()
        key = chain
        if tls.keyfile is not None:
            with open(tls.keyfile, "rb") as pem:
                key = pem.read()
        client_certificate = ssl.PrivateCertificate.loadPEM(chain + b"\n" + key)
    return ssl.optionsForClientTLS(host, trustRoot=trust_root, clientCertificate=client_certificate)


def wss_connector(reactor: Any, host: str, port: int, options: ConnectOptions) -> Deferred[Any]:
    """The ``coaps+ws`` connector: CoAP over WebSockets over TLS (RFC 8323 section 4)."""
    from coaptcp.transport.websocket.client import connect_websocket

    try:
        tls_options = _websocket_tls_options(host, options.tls)
    except Exception as error:
        return fail(error)
    connected: Deferred[Any] = connect_websocket(
        reactor, host, port, secure=True, tls_options=tls_options, **_shared(options)
    )
    return connected


def scheme_not_available(scheme: str, reason: str) -> Connector:
    """A placeholder connector for a scheme whose transport is not wired in yet."""

    def connector(reactor: Any, host: str, port: int, options: ConnectOptions) -> Deferred[Any]:
        return fail(SchemeNotAvailable(scheme, reason))

    return connector


def default_connectors() -> Mapping[str, Connector]:
    """The connector for each scheme in this build.

    ``coap`` (UDP, RFC 7252), ``coaps`` (DTLS, RFC 7252 section 9) and the four schemes
    of RFC 8323 section 8.
    """
    from coaptcp.client.dtls import DtlsConnector
    from coaptcp.client.udp import UdpConnector

    return {
        "coap": UdpConnector(),
        "coaps": DtlsConnector(),
        "coap+tcp": tcp_connector,
        "coaps+tcp": tls_connector,
        "coap+ws": ws_connector,
        "coaps+ws": wss_connector,
    }
