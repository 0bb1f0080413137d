"""coaps:// for Twisted: DTLS 1.2 sessions under the CoAP-over-UDP message layer (RFC 7252
section 9).

:class:`DtlsDatagramProtocol` owns the UDP socket.  Each peer address has at most one DTLS
session, a pyOpenSSL :class:`~OpenSSL.SSL.Connection` on memory BIOs: datagrams read go
into its BIO, and the records it produces go out to that address.  Decrypted datagrams go
to an inner :class:`~coaptcp.transport.udp.CoapDatagramProtocol` (:attr:`coap`) exactly as
plain UDP datagrams do, so retransmission, deduplication, block-wise and Observe are the
ones of ``coap://``; what that layer writes is encrypted for its address.

Defences (RFC 6347 section 4.2.1, RFC 7925 section 11):

* A ClientHello from an address without a session goes through ``DTLSv1_listen`` on a
  throw-away connection: it is answered with a HelloVerifyRequest carrying a cookie (an
  HMAC of the address under a per-process secret) and nothing is kept.  Only a ClientHello
  returning a valid cookie, proof that the address is real, creates a session.
* Handshakes in progress are bounded in total and per host, sessions in total and per
  host; a handshake not finished within ``handshake_timeout`` and a session idle for
  ``idle_timeout`` are dropped.  Datagrams that are not DTLS, or fail its record
  protection, are dropped by OpenSSL without an answer.
* Handshake flights are retransmitted on the reactor's clock at the time
  ``DTLSv1_get_timeout`` gives (RFC 6347 section 4.2.4); records are cut to
  :data:`DEFAULT_MTU` bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from OpenSSL import SSL
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.reactor import default_reactor
from coaptcp.server import Resource, Site
from coaptcp.transport.dtls.contexts import dtls_client_context, dtls_server_context
from coaptcp.transport.tls.settings import (
    ClientTLSSettings,
    ServerTLSSettings,
    describe_ssl_error,
)
from coaptcp.transport.udp import CoapDatagramProtocol

__all__ = ["DEFAULT_MTU", "DtlsDatagramProtocol", "DtlsLimits"]

#: The largest DTLS datagram we send: IPv6's minimum MTU, 1280 bytes, less the IPv6 and
#: UDP headers (RFC 7252 section 4.6, RFC 6347 section 4.1.1.1).
DEFAULT_MTU = 1280 - 48
#: Plaintext datagrams kept for a peer whose handshake is still running.
MAX_PENDING = 16
_READ_SIZE = 65536


@dataclass(frozen=True)
class DtlsLimits:
    """Bounds of one coaps:// socket (RFC 7925 section 11: a server must limit the state
    that unauthenticated peers cost it).

    :param max_handshakes: handshakes in progress at once, in total.
    :param max_handshakes_per_host: handshakes in progress from one IP address.
    :param max_sessions: sessions (handshaking or established) in total.
    :param max_sessions_per_host: sessions from one IP address (one per port).
    :param handshake_timeout: seconds a handshake may take before it is dropped.
    :param idle_timeout: seconds without a datagram before a session is dropped.
    """

    max_handshakes: int = 64
    max_handshakes_per_host: int = 8
    max_sessions: int = 1024
    max_sessions_per_host: int = 64
    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_handshakes", "max_handshakes_per_host", "max_sessions",
                     "max_sessions_per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not (self.handshake_timeout > 0 and self.idle_timeout > 0):
            raise ValueError("the DTLS timeouts must be positive")


def _is_client_hello(datagram: bytes) -> bool:
    """Whether ``datagram`` starts with a DTLS handshake record of epoch 0 carrying a
    ClientHello (RFC 6347 sections 4.1 and 4.2.2)."""
    return len(datagram) > 25 and datagram[0] == 22 and datagram[3:5] == b"\0\0" \
        and datagram[13] == 1


class _Session:
    __slots__ = ("connection", "deadline", "established", "name", "peer", "pending", "retransmit")

    def __init__(self, connection: SSL.Connection, peer: tuple[str, int]) -> None:
        self.connection = connection
        self.peer = peer
        self.established = False
        self.pending: list[bytes] = []
        self.retransmit: Any = None
        self.deadline: Any = None
        self.name: str | None = None


class _PlainSide:
    """The transport the inner CoAP-over-UDP protocol writes to: plaintext by address."""

    def __init__(self, outer: DtlsDatagramProtocol) -> None:
        self.outer = outer

    def write(self, datagram: bytes, addr: Any = None) -> None:
        self.outer.send_plaintext(datagram, addr)

    def getHost(self) -> Any:
        transport = self.outer.transport
        return transport.getHost() if transport is not None else None


class DtlsDatagramProtocol(DatagramProtocol):
    """CoAP over DTLS on one socket (RFC 7252 section 9): serves ``site`` to DTLS clients
    when ``server`` settings are given, and sends requests through :attr:`coap` (its
    :meth:`~coaptcp.transport.udp.CoapDatagramProtocol.request`) when ``client``
    settings are given.

    :param site: the resources to serve (``None``: requests are answered 5.01).
    :param server: the server's certificate and/or PSK keys.
    :param client: how to authenticate the servers this socket sends requests to.
    :param limits: bounds on handshakes and sessions.
    :param reactor: the reactor for the clock (``None``: the global one).
    :param udp_options: passed on to the inner
        :class:`~coaptcp.transport.udp.CoapDatagramProtocol`.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        site: Site | Resource | None = None,
        *,
        server: ServerTLSSettings | None = None,
        client: ClientTLSSettings | None = None,
        limits: DtlsLimits | None = None,
        reactor: Any = None,
        mtu: int = DEFAULT_MTU,
        **udp_options: Any,
    ) -> None:
        self.reactor = default_reactor(reactor)
        self.limits = limits or DtlsLimits()
        self.mtu = mtu
        self.coap = CoapDatagramProtocol(site, reactor=self.reactor, **udp_options)
        self._server_context = None if server is None else dtls_server_context(server)
        self._client_context = None if client is None else dtls_client_context(client)
        self._client_settings = client
        self._secret = os.urandom(32)
        self._cookie_peers: WeakKeyDictionary[SSL.Connection, tuple[str, int]] = (
            WeakKeyDictionary()
        )
        self._sessions: dict[Hashable, _Session] = {}
        self._handshakes = 0
        self._per_host: dict[str, list[int]] = {}  # host -> [sessions, handshakes]
        self._logged: set[str] = set()
        if self._server_context is not None:
            self._server_context.set_cookie_generate_callback(self._cookie)
            self._server_context.set_cookie_verify_callback(self._cookie_ok)

    # -- what tests and the twistd plugin read ---------------------------------------------

    @property
    def sessions(self) -> int:
        """Sessions kept, established or handshaking."""
        return len(self._sessions)

    @property
    def handshakes(self) -> int:
        """Handshakes in progress (after a valid cookie)."""
        return self._handshakes

    def established(self, peer: tuple[str, int]) -> bool:
        """Whether a DTLS session with ``peer`` has finished its handshake."""
        session = self._sessions.get(peer)
        return session is not None and session.established

    def expect_name(self, peer: tuple[str, int], name: str) -> None:
        """Check the certificate of ``peer`` (when we are its client) against ``name``,
        and send ``name`` in SNI when it is not an IP address (RFC 6066 section 3)."""
        session = self._sessions.get(peer)
        if session is None:
            session = self._open_client(peer)
        if session is not None and not session.established:
            session.name = name
            if not _is_address(name):
                session.connection.set_tlsext_host_name(name.encode("idna"))

    # -- Twisted's DatagramProtocol ------------------------------------------------------

    def startProtocol(self) -> None:
        self.coap.makeConnection(_PlainSide(self))  # type: ignore[arg-type]

    def doStop(self) -> None:
        """Send close_notify on every established session (RFC 5246 section 7.2.1) while
        the socket can still write, so that peers free theirs; then stop."""
        for session in list(self._sessions.values()):
            if session.established:
                try:
                    session.connection.shutdown()
                except SSL.Error:
                    pass
                self._write_out(session.connection, session.peer)
        super().doStop()

    def stopProtocol(self) -> None:
        for session in list(self._sessions.values()):
            self._drop(session, "the socket closed")
        self.coap.doStop()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = (addr[0], addr[1])
        session = self._sessions.get(peer)
        if session is None or (session.established and self._server_context is not None
                               and _is_client_hello(datagram)):
            if self._server_context is not None:
                self._listen(datagram, peer, session)
            return
        session.connection.bio_write(datagram)
        self._advance(session)

    # -- the server side: cookies, then a session ------------------------------------------

    def _cookie(self, connection: SSL.Connection) -> bytes:
        peer = self._cookie_peers.get(connection)
        return hmac.new(self._secret, repr(peer).encode(), hashlib.sha256).digest()[:16]

    def _cookie_ok(self, connection: SSL.Connection, cookie: bytes) -> bool:
        return hmac.compare_digest(cookie, self._cookie(connection))

    def _listen(self, datagram: bytes, peer: tuple[str, int], old: _Session | None) -> None:
        assert self._server_context is not None
        connection = SSL.Connection(self._server_context, None)
        connection.set_accept_state()
        connection.set_ciphertext_mtu(self.mtu)
        self._cookie_peers[connection] = peer
        try:
            connection.bio_write(datagram)
            connection.DTLSv1_listen()
        except SSL.WantReadError:  # answered with a HelloVerifyRequest, or ignored
            self._write_out(connection, peer)
            return
        except SSL.Error as error:
            self.log.debug("DTLS datagram from {peer} dropped: {error}", peer=peer,
                           error=describe_ssl_error(error))
            return
        if old is not None:  # the client started over (RFC 6347 section 4.2.8)
            self._drop(old, "the client started a new handshake")
        if not self._admit(peer[0]):
            return
        session = self._add(connection, peer)
        self._advance(session)

    def _admit(self, host: str, *, client: bool = False) -> bool:
        limits = self.limits
        counts = self._per_host.get(host, [0, 0])
        for exceeded, limit in (
            (len(self._sessions) >= limits.max_sessions, "max_sessions"),
            (counts[0] >= limits.max_sessions_per_host, "max_sessions_per_host"),
            (not client and self._handshakes >= limits.max_handshakes, "max_handshakes"),
            (not client and counts[1] >= limits.max_handshakes_per_host,
             "max_handshakes_per_host"),
        ):
            if exceeded:
                if limit not in self._logged:
                    self._logged.add(limit)
                    self.log.warn("coaps://: {limit} reached; new DTLS handshakes refused",
                                  limit=limit)
                return False
        return True

    def _add(self, connection: SSL.Connection, peer: tuple[str, int]) -> _Session:
        session = _Session(connection, peer)
        self._sessions[peer] = session
        self._handshakes += 1
        counts = self._per_host.setdefault(peer[0], [0, 0])
        counts[0] += 1
        counts[1] += 1
        session.deadline = self.reactor.callLater(
            self.limits.handshake_timeout, self._expired, session
        )
        return session

    # -- the client side -------------------------------------------------------------------

    def _open_client(self, peer: tuple[str, int]) -> _Session | None:
        if self._client_context is None:
            return None
        if not self._admit(peer[0], client=True):
            return None
        connection = SSL.Connection(self._client_context, None)
        connection.set_connect_state()
        connection.set_ciphertext_mtu(self.mtu)
        session = self._add(connection, peer)
        return session

    def send_plaintext(self, datagram: bytes, peer: Any) -> None:
        """Encrypt ``datagram`` (from the CoAP layer) for ``peer``, starting a handshake
        with it first when we are a client without a session there."""
        key = (peer[0], peer[1])
        session = self._sessions.get(key)
        if session is None:
            session = self._open_client(key)
            if session is None:
                self.log.debug("No DTLS session with {peer}: datagram dropped", peer=key)
                return
        if not session.established:
            if len(session.pending) < MAX_PENDING:
                session.pending.append(datagram)
            self._advance(session)
            return
        try:
            session.connection.send(datagram)
        except SSL.Error as error:
            self._drop(session, describe_ssl_error(error))
            return
        self._write_out(session.connection, session.peer)

    # -- both sides ------------------------------------------------------------------------

    def _advance(self, session: _Session) -> None:
        connection = session.connection
        if not session.established:
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                self._write_out(connection, session.peer)
                self._arm_retransmit(session)
                return
            except SSL.Error as error:
                self._write_out(connection, session.peer)
                self._drop(session, describe_ssl_error(error))
                return
            if not self._handshake_done(session):
                return
        else:
            session.deadline.reset(self.limits.idle_timeout)
        while True:
            try:
                plaintext = connection.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._drop(session, "the peer closed the session")
                return
            except SSL.Error as error:
                self._drop(session, describe_ssl_error(error))
                return
            self.coap.datagramReceived(plaintext, session.peer)
            if self._sessions.get(session.peer) is not session:
                return
        self._write_out(connection, session.peer)

    def _handshake_done(self, session: _Session) -> bool:
        session.established = True
        self._handshakes -= 1
        self._per_host[session.peer[0]][1] -= 1
        self._cancel(session, "retransmit")
        self._write_out(session.connection, session.peer)
        if session.name is not None and not self._name_ok(session):
            return False
        session.deadline.cancel()
        session.deadline = self.reactor.callLater(self.limits.idle_timeout, self._expired,
                                                  session)
        self.log.debug("DTLS session with {peer} established ({cipher})", peer=session.peer,
                       cipher=session.connection.get_cipher_name())
        pending, session.pending = session.pending, []
        for datagram in pending:
            try:
                session.connection.send(datagram)
            except SSL.Error as error:
                self._drop(session, describe_ssl_error(error))
                return False
        return True

    def _name_ok(self, session: _Session) -> bool:
        """Check the server certificate's name (RFC 7252 section 9.1.3.3, RFC 6125)."""
        settings = self._client_settings
        assert settings is not None and session.name is not None
        if settings.insecure or session.connection.get_peer_certificate() is None:
            return True
        from service_identity import VerificationError
        from service_identity.pyopenssl import verify_hostname, verify_ip_address

        name = settings.server_name or session.name
        try:
            if _is_address(name):
                verify_ip_address(session.connection, name)
            else:
                verify_hostname(session.connection, name)
        except VerificationError as error:
            self._drop(session, f"the server's certificate is not for {name}: {error}")
            return False
        return True

    def _arm_retransmit(self, session: _Session) -> None:
        self._cancel(session, "retransmit")
        delay = session.connection.DTLSv1_get_timeout()
        if delay is not None:
            session.retransmit = self.reactor.callLater(max(delay, 0.0), self._retransmit,
                                                        session)

    def _retransmit(self, session: _Session) -> None:
        session.retransmit = None
        if self._sessions.get(session.peer) is not session or session.established:
            return
        try:
            session.connection.DTLSv1_handle_timeout()
        except SSL.Error as error:
            self._drop(session, describe_ssl_error(error))
            return
        self._write_out(session.connection, session.peer)
        self._arm_retransmit(session)

    def _expired(self, session: _Session) -> None:
        session.deadline = None
        what = "the session was idle" if session.established else "the handshake timed out"
        self._drop(session, what)

    def _write_out(self, connection: SSL.Connection, peer: tuple[str, int]) -> None:
        transport = self.transport
        while True:
            try:
                data = connection.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                return
            if transport is not None:
                try:
                    transport.write(data, peer)  # type: ignore[arg-type]
                except OSError as error:
                    self.log.debug("Sending to {peer} failed: {error}", peer=peer,
                                   error=str(error))

    @staticmethod
    def _cancel(session: _Session, slot: str) -> None:
        call = getattr(session, slot)
        if call is not None and call.active():
            call.cancel()
        setattr(session, slot, None)

    def _drop(self, session: _Session, reason: str) -> None:
        if self._sessions.get(session.peer) is not session:
            return
        del self._sessions[session.peer]
        counts = self._per_host[session.peer[0]]
        counts[0] -= 1
        if not session.established:
            self._handshakes -= 1
            counts[1] -= 1
        if counts == [0, 0]:
            del self._per_host[session.peer[0]]
        self._cancel(session, "retransmit")
        self._cancel(session, "deadline")
        # requests waiting on the peer cannot be answered without a session
        self.coap.fail_peer(session.peer, ConnectionClosedError(
            f"DTLS with {session.name or session.peer[0]} ({session.peer[0]}:"
            f"{session.peer[1]}): {reason}"))
        self.log.info("DTLS session with {peer} dropped: {reason}", peer=session.peer,
                      reason=reason)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True
