"""Helpers for the in-memory coaps+tcp tests: throwaway PKI, connected pairs over iosim.

Nothing here opens a socket or sleeps: both ends run on one MemoryReactorClock and bytes
move with an iosim pump.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.options import Options
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.testing.certs import CertificateAuthority, Issued
from coaptcp.transport.tcp import CoapFactory, CoapProtocol
from coaptcp.transport.tls.settings import ClientTLSSettings, ServerTLSSettings
from coaptcp.transport.tls.transport import (
    CoapTLSTransport,
    tls_client_factory,
    tls_server_factory,
)

SERVER_PORT = 5684
OTHER_PORT = 15684
CLIENT_PORT = 40000


class WhoAmI(Resource):
    """Answers with what the resource sees of the connection (as JSON)."""

    def render_GET(self, request: Request) -> Response:
        return Response.json(
            {
                "secure": request.secure,
                "host": request.host,
                "tls": request.tls.as_dict() if request.tls is not None else None,
            }
        )


def demo_root() -> Resource:
    root = Resource()
    root.putChild("whoami", WhoAmI())
    return root


@dataclass
class PKI:
    """PEM files of a throwaway PKI, written once per test module."""

    directory: Path
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    expired: Path
    expired_key: Path
    other_host: Path
    other_host_key: Path
    rogue_ca: Path
    rogue_server: Path
    rogue_server_key: Path
    rogue_client: Path
    rogue_client_key: Path


def make_pki(directory: Path) -> PKI:
    """A CA with server (localhost, 127.0.0.1), client, expired and wrongly named
    certificates, and a second, untrusted CA with a server and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca = CertificateAuthority("coaptcp test CA")
    rogue = CertificateAuthority("rogue CA")

    def write(name: str, issued: Issued) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        issued.write(cert, key)
        return cert, key

    (directory / "ca.pem").write_bytes(ca.certificate_pem)
    (directory / "rogue-ca.pem").write_bytes(rogue.certificate_pem)
    server = write("server", ca.issue("localhost", "127.0.0.1"))
    client = write("client", ca.issue("sensor-17", common_name="sensor-17", client=True))
    expired = write(
        "expired",
        ca.issue(
            "localhost",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
    )
    other = write("other-host", ca.issue("coap.example.org"))
    rogue_server = write("rogue-server", rogue.issue("localhost", "127.0.0.1"))
    rogue_client = write("rogue-client", rogue.issue("intruder", client=True))
    return PKI(
        directory,
        directory / "ca.pem",
        *server,
        *client,
        *expired,
        *other,
        directory / "rogue-ca.pem",
        *rogue_server,
        *rogue_client,
    )


@dataclass
class Pair:
    """A server and a client end joined by an iosim pump."""

    clock: MemoryReactorClock
    pump: iosim.IOPump
    server_transport: iosim.FakeTransport
    client_transport: iosim.FakeTransport
    server_tls: Any
    client_tls: Any
    server_factory: CoapFactory
    server_coap: CoapProtocol
    server_coap_received: list[bytes] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)

    def handshake(self) -> Any:
        """Pump until quiet; the client's handshake outcome (a protocol or a Failure)."""
        self.pump.flush()
        assert len(self.results) == 1, f"handshake still pending: {self.results!r}"
        return self.results[0]

    @property
    def client(self) -> CoapProtocol:
        outcome = self.results[0]
        assert isinstance(outcome, CoapProtocol), outcome
        return outcome

    def get(self, *path: str, options: Options | None = None) -> Any:
        """GET ``path`` from the client; the Response (or Failure) after pumping."""
        options = options if options is not None else Options.build(uri_path=path)
        out: list[Any] = []
        self.client.request(Code.GET, options).addBoth(out.append)
        self.pump.flush()
        assert len(out) == 1, "no response"
        return out[0]

    def whoami(self) -> dict[str, Any]:
        response = self.get("whoami")
        assert not isinstance(response, Failure), response
        assert response.code == Code.CONTENT
        parsed: dict[str, Any] = json.loads(response.payload)
        return parsed

    def served_nothing(self) -> bool:
        """Nothing decrypted ever reached the server's CoAP protocol."""
        return self.server_coap_received == []

    @property
    def server_lost(self) -> bool:
        return bool(self.server_transport.disconnected or self.server_transport.disconnecting)


def _addresses(port: int) -> tuple[IPv4Address, IPv4Address]:
    return IPv4Address("TCP", "127.0.0.1", port), IPv4Address("TCP", "127.0.0.1", CLIENT_PORT)


def connect_pair(
    server_side: Any,
    client_side: Any,
    *,
    port: int = SERVER_PORT,
    clock: MemoryReactorClock | None = None,
) -> Pair:
    """Join a server end and a client end.

    Each side is either settings (``ServerTLSSettings`` / ``ClientTLSSettings``: our
    coaps+tcp factories) or an already built wrapping factory (a raw TLS peer).
    """
    clock = clock if clock is not None else MemoryReactorClock()
    server_factory = CoapFactory(Site(demo_root()), reactor=clock)
    if isinstance(server_side, ServerTLSSettings):
        server_tls: Any = tls_server_factory(server_factory, server_side, clock=clock)
    else:
        server_tls = server_side
    if isinstance(client_side, ClientTLSSettings):
        client_tls: Any = tls_client_factory(
            CoapFactory(None, role=Role.INITIATOR, reactor=clock),
            client_side,
            "localhost" if client_side.server_name is None else client_side.server_name,
            port,
            clock=clock,
        )
    else:
        client_tls = client_side
    host, peer = _addresses(port)
    server_protocol = server_tls.buildProtocol(peer)
    client_protocol = client_tls.buildProtocol(host)
    server_transport = iosim.FakeTransport(server_protocol, True, host, peer)
    client_transport = iosim.FakeTransport(client_protocol, False, peer, host)
    pump = iosim.connect(
        server_protocol, server_transport, client_protocol, client_transport, clock=clock,
        greet=False,
    )
    pair = Pair(
        clock, pump, server_transport, client_transport, server_protocol, client_protocol,
        server_factory, server_protocol.wrappedProtocol,
    )
    deliver = pair.server_coap.dataReceived

    def record(data: bytes) -> None:
        pair.server_coap_received.append(data)
        deliver(data)

    pair.server_coap.dataReceived = record  # type: ignore[method-assign]
    if isinstance(client_protocol, CoapTLSTransport) and client_protocol.handshake_result:

        def record(outcome: Any) -> Any:
            pair.results.append(outcome)
            return None if isinstance(outcome, Failure) else outcome  # failures: consumed

        client_protocol.handshake_result.addBoth(record)
    return pair


# -- raw TLS peers, for the behaviour of other implementations -----------------------------


class Recorder(Protocol):
    """Records what a raw TLS peer receives and how its connection ended."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None
        self.handshake_done = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


@implementer(IOpenSSLClientConnectionCreator)
class RawClientCreator:
    def __init__(self, context: SSL.Context, sni: bytes | None = b"localhost") -> None:
        self.context = context
        self.sni = sni

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if self.sni:
            connection.set_tlsext_host_name(self.sni)
        return connection


@implementer(IOpenSSLServerConnectionCreator)
class RawServerCreator:
    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def raw_client_context(
    ca: Path, alpn: list[bytes] | None, *, max_version: int | None = None
) -> SSL.Context:
    """A plain pyOpenSSL client context: trusts ``ca``, offers ``alpn`` (or no ALPN)."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(str(ca).encode())
    context.set_verify(SSL.VERIFY_PEER)
    if alpn is not None:
        context.set_alpn_protos(alpn)
    if max_version is not None:
        context.set_max_proto_version(max_version)
    return context


def raw_tls_client(clock: MemoryReactorClock, context: SSL.Context, sni: bytes | None
                   = b"localhost") -> tuple[TLSMemoryBIOFactory, Recorder]:
    recorder = Recorder()
    factory = TLSMemoryBIOFactory(
        RawClientCreator(context, sni), True, Factory.forProtocol(lambda: recorder), clock
    )
    return factory, recorder


def raw_coap_server(clock: MemoryReactorClock, pki: PKI, *, alpn: bytes | None) -> Any:
    """A CoAP server over TLS that selects ``alpn`` whatever is offered (``None``: ignores
    ALPN), standing in for peers that do not implement RFC 8323's ALPN rules."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate_chain_file(str(pki.server).encode())
    context.use_privatekey_file(str(pki.server_key).encode())
    if alpn is not None:
        context.set_alpn_select_callback(lambda connection, offered: alpn)
    return TLSMemoryBIOFactory(
        RawServerCreator(context), False, CoapFactory(Site(demo_root()), reactor=clock), clock
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """CA, server, client, expired, wrongly named and untrusted certificates (PEM files)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
