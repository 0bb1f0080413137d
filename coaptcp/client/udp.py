"""``coap://`` for the :class:`~coaptcp.client.Client`: CoAP over UDP (RFC 7252).

UDP has no connections, so a ``coap://host:port`` endpoint of the client's pool is a
:class:`UdpPeer`: one server address reached through one of the client's UDP sockets (an
IPv4 and an IPv6 one, opened on first use and closed when no peer is left).  It offers
what the pool and the block-wise and Observe code use of a stream connection, with the
answers right for UDP: nothing to wait for before sending (no CSM), messages of at most
1152 bytes and blocks of at most 1024 without BERT (RFC 7252 section 4.6, RFC 7959),
retransmission of CON requests by the message layer (section 4.2), and observations
registered and cancelled with GET Observe 0 and 1 under one token (RFC 7641 3.1, 3.6).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.observing import ChannelObservation
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.codes import Code
from coaptcp.core.connection import State
from coaptcp.core.events import PeerSettings
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.core.udp.blockwise import UDP_MAX_MESSAGE_SIZE
from coaptcp.core.udp.framing import datagram_size
from coaptcp.core.udp.state import OutgoingRequest
from coaptcp.server import Response
from coaptcp.transport.udp import CoapDatagramProtocol
from coaptcp.transport.udp.address import resolve_host

__all__ = ["UdpConnector", "UdpPeer", "UdpSockets"]


class _PeerState:
    """What the pool and the transfer code read as ``channel.connection``."""

    __slots__ = ("release_received", "release_sent", "state")

    #: A UDP peer's limits: one datagram (RFC 7252 section 4.6), no BERT (RFC 7959 2.2).
    peer = PeerSettings(max_message_size=UDP_MAX_MESSAGE_SIZE, block_wise_transfer=False)

    def __init__(self) -> None:
        self.state = State.OPEN
        self.release_sent = False
        self.release_received = False

    @staticmethod
    def encoded_size(message: Message) -> int:
        """The size of ``message`` in one datagram (RFC 7252 section 3)."""
        return datagram_size(message)


class UdpSockets:
    """The UDP sockets one client sends from: one per address family, opened on first use
    and closed when the last :class:`UdpPeer` is released."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._open: dict[bool, tuple[Any, CoapDatagramProtocol]] = {}
        self._peers: set[UdpPeer] = set()

    def protocol_for(self, address: str) -> CoapDatagramProtocol:
        """The socket's protocol for ``address`` (IPv6 when it has a colon)."""
        ipv6 = ":" in address
        entry = self._open.get(ipv6)
        if entry is None:
            protocol = CoapDatagramProtocol(None, reactor=self.reactor)
            port = self.reactor.listenUDP(0, protocol, interface="::" if ipv6 else "0.0.0.0")
            entry = self._open[ipv6] = (port, protocol)
        return entry[1]

    def joined(self, peer: UdpPeer) -> None:
        """``peer`` uses the sockets."""
        self._peers.add(peer)

    def left(self, peer: UdpPeer) -> None:
        """``peer`` is released; close the sockets when no peer is left."""
        self._peers.discard(peer)
        if not self._peers:
            opened, self._open = self._open, {}
            for port, _ in opened.values():
                port.stopListening()


class UdpPeer:
    """One ``coap://`` endpoint: requests, Pings and observations to one server address.

    It is both the pool's connection and its ``channel`` (UDP has no channel beneath).
    """

    log = Logger()

    def __init__(
        self, sockets: UdpSockets, address: str, port: int, reactor: Any = None
    ) -> None:
        self.sockets = sockets
        self.address = (address, port)
        self.reactor = default_reactor(reactor)
        self.protocol = sockets.protocol_for(address)
        self.connection = _PeerState()
        self.close_reason: str | None = None
        self._closed_waiters: list[Deferred[None]] = []
        self._observing: dict[bytes, tuple[ChannelObservation, OutgoingRequest | None]] = {}
        sockets.joined(self)

    # -- what the pool uses ---------------------------------------------------------------

    @property
    def channel(self) -> UdpPeer:
        """Itself: what the pool reads of a stream connection's Channel, UDP offers here."""
        return self

    def when_closed(self) -> Deferred[None]:
        """Fires when the peer is released or aborted."""
        if self.connection.state is State.CLOSED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    def when_csm_received(self) -> Deferred[None]:
        """At once: UDP has no CSM; the limits are RFC 7252's (1152 bytes, no BERT)."""
        return succeed(None)

    def request(
        self,
        method: Code,
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a CON request; fires with its response (RFC 7252 section 5)."""
        if self.connection.state is State.CLOSED:
            return fail(ConnectionClosedError(self.close_reason or "released"))
        d = self.protocol.request(method, self.address, payload, options=options)
        if timeout is not None:
            d.addTimeout(timeout, self.reactor)
        return d

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """A CoAP ping: an Empty CON answered by a Reset (RFC 7252 section 4.3)."""
        if self.connection.state is State.CLOSED:
            return fail(ConnectionClosedError(self.close_reason or "released"))
        d = self.protocol.ping(self.address)
        if timeout is not None:
            d.addTimeout(timeout, self.reactor)
        return d

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Forget the peer (nothing to send over UDP); fires at once."""
        self._close(diagnostic or "released")
        return succeed(None)

    def abort(self, diagnostic: str) -> None:
        """Forget the peer at once."""
        self._close(diagnostic)

    # -- observations (what ChannelObservation asks of its channel) -----------------------

    def observe(
        self,
        options: Options,
        *,
        on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
    ) -> ChannelObservation:
        """Register a GET with Observe 0; each fresh notification goes to
        ``on_notification`` (the message layer drops stale ones, RFC 7641 section 3.4)."""
        if self.connection.state is State.CLOSED:
            raise ConnectionClosedError(self.close_reason or "released")
        observation = ChannelObservation(
            self, os.urandom(4), options, on_notification, on_end, self.reactor
        )
        self._observing[observation.token] = (observation, None)
        self.send_observe(observation, 0)
        return observation

    def send_observe(self, observation: ChannelObservation, value: int) -> None:
        """Send the observation's GET with Observe ``value`` (0 registers, 1 cancels)."""
        token = observation.token
        entry = self._observing.get(token)
        if entry is not None and entry[1] is not None:
            self.protocol.cancel(entry[1])  # the registration's exchange ends here
        message = Message(Code.GET, token, observation.options.replace(OptionNumber.OBSERVE,
                                                                        value))

        def failed(error: BaseException) -> None:
            observation.connection_lost(ConnectionClosedError(str(error)))

        sent = self.protocol.send(message, self.address, observation.response_received, failed)
        self._observing[token] = (observation, sent)

    def forget_observation(self, observation: ChannelObservation) -> None:
        """The observation ended: free its token, stop its exchange."""
        entry = self._observing.get(observation.token)
        if entry is not None and entry[0] is observation:
            del self._observing[observation.token]
            if entry[1] is not None:
                self.protocol.cancel(entry[1])

    # -- internals ------------------------------------------------------------------------

    def _close(self, reason: str) -> None:
        if self.connection.state is State.CLOSED:
            return
        self.connection.state = State.CLOSED
        self.close_reason = reason
        observing, self._observing = self._observing, {}
        for observation, sent in observing.values():
            if sent is not None:
                self.protocol.cancel(sent)
            observation.connection_lost(ConnectionClosedError(reason))
        self.sockets.left(self)
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)


class UdpConnector:
    """The ``coap`` connector of one client: resolves the host and gives a
    :class:`UdpPeer` on the client's sockets (``connector(reactor, host, port, options)``).
    """

    def __init__(self) -> None:
        self._sockets: dict[int, UdpSockets] = {}

    def __call__(self, reactor: Any, host: str, port: int, options: Any) -> Deferred[Any]:
        reactor = default_reactor(reactor)
        sockets = self._sockets.get(id(reactor))
        if sockets is None:
            sockets = self._sockets[id(reactor)] = UdpSockets(reactor)

        def resolved(addresses: Any) -> UdpPeer:
            if not addresses:
                raise OSError(f"{host} has no address")
            return UdpPeer(sockets, addresses[0], port, reactor)

        return resolve_host(reactor, host, port).addCallback(resolved)
