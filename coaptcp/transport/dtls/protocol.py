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
* A ClientHello from a peer with an established session (the client restarted, or a
  replay) starts a new handshake beside the session, which keeps serving until the new
  one completes (RFC 6347 section 4.2.8: the association is not destroyed before the
  client has shown reachability by a complete handshake).  Cookies expire
  (:mod:`~coaptcp.transport.dtls.cookies`), so a captured ClientHello cannot be replayed
  for long at all.
* Handshake flights are retransmitted on the reactor's clock at the time
  ``DTLSv1_get_timeout`` gives (RFC 6347 section 4.2.4); records are made to fit ``mtu``
  bytes and packed whole into datagrams of at most that size
  (:mod:`~coaptcp.transport.dtls.records`).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any
from weakref import WeakKeyDictionary

from OpenSSL import SSL
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.reactor import default_reactor
from coaptcp.server import Resource, Site
from coaptcp.transport.dtls.contexts import dtls_client_context, dtls_server_context
from coaptcp.transport.dtls.cookies import CookieJar
from coaptcp.transport.dtls.limits import DEFAULT_MTU, DtlsLimits
from coaptcp.transport.dtls.names import is_address, wrong_server_name
from coaptcp.transport.dtls.records import check_mtu, datagrams, is_client_hello, is_one_record
from coaptcp.transport.membio import output_waiting
from coaptcp.transport.tls.settings import ClientTLSSettings, ServerTLSSettings, describe_ssl_error
from coaptcp.transport.udp import CoapDatagramProtocol

__all__ = ["DtlsDatagramProtocol"]

#: Plaintext datagrams kept for a peer whose handshake is still running.
MAX_PENDING = 16
_READ_SIZE = 65536



class _Session:
    __slots__ = ("connection", "deadline", "established", "name", "peer", "pending", "renews",
                 "retransmit", "successor")

    def __init__(self, connection: SSL.Connection, peer: tuple[str, int]) -> None:
        self.connection = connection
        self.peer = peer
        self.established = False
        self.pending: list[bytes] = []
        self.retransmit: Any = None
        self.deadline: Any = None
        self.name: str | None = None
        #: A new handshake from the same address, running beside this established session.
        self.successor: _Session | None = None
        #: For such a handshake: the established session it replaces once complete.
        self.renews: _Session | None = None


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
    :param mtu: the largest datagram sent, in bytes (RFC 6347 section 4.1.1.1;
        :data:`DEFAULT_MTU` unless the path is known to take more).
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
        self.mtu = check_mtu(mtu)
        self.coap = CoapDatagramProtocol(site, reactor=self.reactor, **udp_options)
        self._server_context = None if server is None else dtls_server_context(server)
        self._client_context = None if client is None else dtls_client_context(client)
        self._client_settings = client
        self._cookies = CookieJar(self.reactor.seconds)
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
        """Handshakes in progress (after a valid cookie), those beside an established
        session included."""
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
            if not is_address(name):
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
        if session is None:
            if self._server_context is not None:
                self._listen(datagram, peer, None)
            return
        successor = session.successor
        if successor is not None:
            # A new handshake runs beside the session: it takes every datagram (records
            # of the other are dropped by their MAC check), the session all but ClientHellos.
            successor.connection.bio_write(datagram)
            self._advance(successor)
            if is_client_hello(datagram) or self._sessions.get(peer) is not session:
                return
        elif session.established and self._server_context is not None \
                and is_client_hello(datagram):
            self._listen(datagram, peer, session)
            return
        session.connection.bio_write(datagram)
        self._advance(session, is_one_record(datagram))

    # -- the server side: cookies, then a session ------------------------------------------

    def _cookie(self, connection: SSL.Connection) -> bytes:
        return self._cookies.cookie(self._cookie_peers.get(connection))

    def _cookie_ok(self, connection: SSL.Connection, cookie: bytes) -> bool:
        return self._cookies.valid(self._cookie_peers.get(connection), cookie)

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
        if not self._admit(peer[0], renewal=old is not None):
            return
        session = self._add(connection, peer, renews=old)
        self._advance(session)

    def _admit(self, host: str, *, client: bool = False, renewal: bool = False) -> bool:
        limits = self.limits
        counts = self._per_host.get(host, [0, 0])
        for exceeded, limit in (
            (not renewal and len(self._sessions) >= limits.max_sessions, "max_sessions"),
            (not renewal and counts[0] >= limits.max_sessions_per_host,
             "max_sessions_per_host"),
            (not client and self._handshakes >= limits.max_handshakes, "max_handshakes"),
            (not client and counts[1] >= limits.max_handshakes_per_host,
             "max_handshakes_per_host"),
        ):
            if exceeded:
                events = self.coap.counts
                if events is not None:
                    events.limit_reached("dtls_" + limit)
                if limit not in self._logged:
                    self._logged.add(limit)
                    self.log.warn("coaps://: {limit} reached; new DTLS handshakes refused",
                                  limit=limit)
                return False
        return True

    def _add(self, connection: SSL.Connection, peer: tuple[str, int],
             renews: _Session | None = None) -> _Session:
        session = _Session(connection, peer)
        counts = self._per_host.setdefault(peer[0], [0, 0])
        if renews is None:
            self._sessions[peer] = session
            counts[0] += 1
        else:  # beside the established session, counted as a handshake only
            session.renews = renews
            renews.successor = session
        self._handshakes += 1
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
        return self._add(connection, peer)

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

    def _advance(self, session: _Session, one_record: bool = False) -> None:
        # one_record: the datagram held one record (as application data does): one recv
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
                self._count_failure("error")
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
            if one_record:
                break
        self._write_out(connection, session.peer)

    def _handshake_done(self, session: _Session) -> bool:
        session.established = True
        self._handshakes -= 1
        self._per_host[session.peer[0]][1] -= 1
        self._cancel(session, "retransmit")
        self._write_out(session.connection, session.peer)
        old = session.renews
        if old is not None:  # the client proved itself with a whole handshake: swap
            session.renews = old.successor = None
            self._drop(old, "the client completed a new handshake")
            self._sessions[session.peer] = session
            self._per_host.setdefault(session.peer[0], [0, 0])[0] += 1
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
        assert self._client_settings is not None and session.name is not None
        wrong = wrong_server_name(session.connection, self._client_settings, session.name)
        if wrong is not None:
            self._count_failure("wrong_name")
            self._drop(session, wrong)
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
        if not self._live(session) or session.established:
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
        if not session.established:
            self._count_failure("timeout")
        what = "the session was idle" if session.established else "the handshake timed out"
        self._drop(session, what)

    def _count_failure(self, kind: str) -> None:
        counts = self.coap.counts
        if counts is not None:
            counts.dtls_failed(kind)

    def _write_out(self, connection: SSL.Connection, peer: tuple[str, int]) -> None:
        if not output_waiting(connection):  # (reading an empty BIO raises)
            return
        chunks = []  # a read gives all the BIO holds, up to the size asked
        while True:
            try:
                chunk = connection.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _READ_SIZE:
                break
        transport = self.transport
        if not chunks or transport is None:
            return
        for datagram in datagrams(chunks[0] if len(chunks) == 1 else b"".join(chunks),
                                  self.mtu):
            try:
                transport.write(datagram, peer)  # type: ignore[arg-type]
            except OSError as error:
                self.log.debug("Sending to {peer} failed: {error}", peer=peer,
                               error=str(error))

    def _live(self, session: _Session) -> bool:
        current = self._sessions.get(session.peer)
        return current is session or (current is not None and current.successor is session)

    @staticmethod
    def _cancel(session: _Session, slot: str) -> None:
        call = getattr(session, slot)
        if call is not None and call.active():
            call.cancel()
        setattr(session, slot, None)

    def _drop(self, session: _Session, reason: str) -> None:
        old = session.renews
        if old is not None:  # a new handshake beside a session failed: the session stays
            if old.successor is session:
                old.successor = session.renews = None
                self._handshakes -= 1
                self._per_host[session.peer[0]][1] -= 1
                self._cancel(session, "retransmit")
                self._cancel(session, "deadline")
                self.log.debug("New DTLS handshake from {peer} dropped ({reason}); the "
                               "established session stays", peer=session.peer, reason=reason)
            return
        if self._sessions.get(session.peer) is not session:
            return
        if session.successor is not None:
            self._drop(session.successor, reason)
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

