"""How many connections a server holds, counted from accept, in all and per client address.

A :class:`ConnectionGate` counts every connection a server has accepted and not yet
closed against :attr:`Limits.max_connections` and :attr:`Limits.max_connections_per_address`,
from the moment it is accepted: a half-sent WebSocket handshake or a TLS handshake that
never finishes holds a descriptor as surely as an open CoAP connection does.
``twistd coaptcp`` shares one gate between all its listeners (TCP, TLS, WebSockets with or
without TLS, and the HTTP connections of a ``--ws`` port).

A connection over a limit is refused, and how depends on where it is: over CoAP (TCP,
TLS) it gets our CSM, then an Abort naming the limit (RFC 8323 section 5.6); before a
WebSocket is open it gets HTTP 503 Service Unavailable; either way it is then closed.  A
refused connection still holds its descriptor until it is closed, so beyond
:data:`REFUSAL_MARGIN` connections over the limit new ones are closed at once, unanswered.

:func:`fit_descriptor_limit` keeps ``max_connections`` within the process's descriptor
limit (``RLIMIT_NOFILE``), so the limit answers before descriptors run out.

The factories (:class:`~coaptcp.transport.tcp.CoapFactory`,
:class:`~coaptcp.transport.websocket.server.CoapWebSocketServerFactory`) mix in
:class:`ConnectionAdmission`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from coaptcp.channel.limits import Limits
    from coaptcp.server.counts import EventCounts

__all__ = [
    "DESCRIPTOR_RESERVE",
    "REFUSAL_MARGIN",
    "ConnectionAdmission",
    "ConnectionGate",
    "Refusal",
    "fit_descriptor_limit",
    "host_of",
]

#: Descriptors kept for everything but connections: the listening sockets, stdio and the
#: log file, the reactor's own (epoll, its waker pipe), worker pipes, files a resource opens.
DESCRIPTOR_RESERVE = 64

#: How many connections over the limit are still answered (CSM and Abort, or HTTP 503)
#: before they are closed; beyond that, a new connection is closed at once, unanswered.
REFUSAL_MARGIN = 64

#: A select()-based reactor cannot watch descriptors from this number on (FD_SETSIZE).
_SELECT_FD_LIMIT = 1024

#: Seconds between two log lines about handshakes that timed out (the rest are counted).
_HANDSHAKE_LOG_INTERVAL = 60.0


def host_of(address: IAddress | None) -> str | None:
    """The IP address (``host``) of a Twisted address, or ``None`` if it has none."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


@dataclass(frozen=True)
class Refusal:
    """Why a connection is refused, and whether it still gets an answer.

    :ivar diagnostic: for the Abort's payload (RFC 8323 section 5.6) or the HTTP 503.
    :ivar answer: false once so many refused connections are open that the new one is
        closed at once, unanswered (:data:`REFUSAL_MARGIN`).
    """

    diagnostic: str
    answer: bool = True


class ConnectionGate:
    """The connections one server holds, counted from accept across all its listeners.

    :meth:`admit` each connection when it is accepted, :meth:`discharge` it when it is
    closed; :meth:`transfer` moves the count from one protocol to another on the same
    connection (an HTTP channel that becomes a WebSocket).
    """

    log = Logger()
    #: Counts the connections refused, by limit, when the server exports metrics
    #: (:mod:`coaptcp.server.counts`); ``None`` otherwise.
    counts: EventCounts | None = None

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._hosts: dict[object, str] = {}
        #: Open connections per peer IP address ("" for addresses without one).
        self.per_address: Counter[str] = Counter()
        self._state: str | None = None  # None, "refusing" or "dropping"
        self._handshake_summary: IDelayedCall | None = None
        self._handshakes_unlogged = 0
        self._handshake_peer: IAddress | None = None

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, key: object) -> bool:
        return key in self._hosts

    def admit(self, key: object, peer: IAddress | None) -> Refusal | None:
        """Count a connection just accepted; a :class:`Refusal` if it exceeds a limit.

        A refused connection is counted too, until it is discharged: it holds a
        descriptor until then.
        """
        address = host_of(peer) or ""
        hosts = self._hosts
        hosts[key] = address
        per_address = self.per_address
        per_address[address] += 1
        limits = self.limits
        total = len(hosts)
        if total > limits.max_connections:
            limit = "max_connections"
            diagnostic = f"server busy: more than {limits.max_connections} connections"
        elif per_address[address] > limits.max_connections_per_address:
            limit = "max_connections_per_address"
            diagnostic = (
                f"more than {limits.max_connections_per_address} connections from {address}"
            )
        else:
            self._state = None
            return None
        if self.counts is not None:
            self.counts.limit_reached(limit)
        if total > limits.max_connections + REFUSAL_MARGIN:
            self._dropping(total - 1)
            return Refusal(diagnostic, answer=False)
        if self._state is None:
            self._state = "refusing"
            self.log.warn("Refusing connections: {reason}", reason=diagnostic)
        return Refusal(diagnostic)

    def turn_away(self) -> bool:
        """Whether a connection being accepted must be closed at once, unanswered.

        True once :data:`REFUSAL_MARGIN` connections over the limit are open (the refused
        ones until they have closed).  The listeners of ``twistd coaptcp`` ask before they
        build a protocol (:class:`coaptcp.transport.listeners.GatedFactory`), so that the socket is
        closed at once and its descriptor reused: refusals piling up in one burst of
        accepts cannot exhaust the descriptors.
        """
        open_now = len(self._hosts)
        if open_now < self.limits.max_connections + REFUSAL_MARGIN:
            return False
        if self.counts is not None:
            self.counts.limit_reached("max_connections")
        self._dropping(open_now)
        return True

    def _dropping(self, open_now: int) -> None:
        if self._state != "dropping":
            self._state = "dropping"
            self.log.warn(
                "Closing new connections unanswered: {open} are open, {margin} more than "
                "the limit of {limit}",
                open=open_now,
                margin=open_now - self.limits.max_connections,
                limit=self.limits.max_connections,
            )

    def transfer(self, old: object, new: object) -> bool:
        """Count ``old``'s connection as ``new``'s; false if ``old`` was not counted.

        ``new`` takes ``old``'s listener too (``coap_listener``, set by
        :class:`~coaptcp.transport.listeners.GatedFactory`)."""
        address = self._hosts.pop(old, None)
        if address is None:
            return False
        self._hosts[new] = address
        listener = getattr(old, "coap_listener", None)
        if listener is not None:
            new.coap_listener = listener  # type: ignore[attr-defined]
        return True

    def readdress(self, key: object, peer: IAddress | None) -> Refusal | None:
        """Count a connection under the address it turns out to come from.

        Behind a PROXY-protocol endpoint (``haproxy:``) the client's address is known
        only from the header before its first data; until then the connection counts
        under the balancer's.  A :class:`Refusal` if that address is over its limit.
        """
        address = host_of(peer) or ""
        previous = self._hosts.get(key)
        if previous is None or previous == address:
            return None
        per_address = self.per_address
        per_address[previous] -= 1
        if per_address[previous] <= 0:
            del per_address[previous]
        self._hosts[key] = address
        per_address[address] += 1
        limit = self.limits.max_connections_per_address
        if per_address[address] > limit:
            if self.counts is not None:
                self.counts.limit_reached("max_connections_per_address")
            return Refusal(f"more than {limit} connections from {address}")
        return None

    def discharge(self, key: object) -> None:
        """Forget a closed connection (nothing happens for one never admitted)."""
        address = self._hosts.pop(key, None)
        if address is not None:
            per_address = self.per_address
            per_address[address] -= 1
            if per_address[address] <= 0:
                del per_address[address]

    def handshake_timed_out(
        self, clock: IReactorTime, peer: IAddress | None, timeout: float
    ) -> None:
        """Log a connection dropped for a slow handshake: the first at once, then the
        ones that follow summed up in one line a minute (a flood logs a line a minute)."""
        if self.counts is not None:
            self.counts.limit_reached("ws_handshake_timeout")
        self._handshake_peer = peer
        if self._handshake_summary is not None:
            self._handshakes_unlogged += 1
            return
        self.log.warn(
            "Dropped a connection whose handshake did not finish within {timeout:g} s of "
            "being accepted ({peer}); more are counted in one line a minute",
            timeout=timeout,
            peer=peer,
        )
        self._handshake_summary = clock.callLater(
            _HANDSHAKE_LOG_INTERVAL, self._summarize_handshakes, clock, timeout
        )

    def _summarize_handshakes(self, clock: IReactorTime, timeout: float) -> None:
        self._handshake_summary = None
        count, self._handshakes_unlogged = self._handshakes_unlogged, 0
        if not count:
            return
        self.log.warn(
            "Dropped {count} more connections whose handshake did not finish within "
            "{timeout:g} s of being accepted in the last minute (the last from {peer})",
            count=count,
            timeout=timeout,
            peer=self._handshake_peer,
        )
        self._handshake_summary = clock.callLater(
            _HANDSHAKE_LOG_INTERVAL, self._summarize_handshakes, clock, timeout
        )


class ConnectionAdmission:
    """A mixin for factories: :meth:`admit` and :meth:`discharge` their protocols.

    The factory provides ``limits`` and calls :meth:`_init_admission` in its ``__init__``
    (with the server's shared :class:`ConnectionGate`, or none to count alone).
    :attr:`connections` holds this factory's protocols whose CoAP connection has begun
    (:meth:`release_all` releases them); :attr:`gate` counts the connections.
    """

    limits: Limits
    connections: set[Any]
    gate: ConnectionGate
    #: Connections admitted since start (closed ones: this less ``len(connections)``),
    #: read by :mod:`coaptcp.metrics` at scrape time.
    accepted: int = 0
    #: The same by listener (the endpoint description of the listener that accepted
    #: them, a protocol's ``coap_listener``; ``""`` for connections made otherwise).
    accepted_by_listener: dict[str, int]

    def _init_admission(self, gate: ConnectionGate | None = None) -> None:
        self.connections = set()
        self.accepted_by_listener = {}
        self.gate = gate if gate is not None else ConnectionGate(self.limits)

    def admit(self, protocol: Any) -> Refusal | None:
        """Count a new CoAP connection (its ``channel.peer`` is the client's address)."""
        self.connections.add(protocol)
        self.count_accepted(protocol)
        return self.gate.admit(protocol, protocol.channel.peer)

    def count_accepted(self, protocol: Any) -> None:
        """Count ``protocol``'s connection in :attr:`accepted` and by its listener."""
        self.accepted += 1
        listener = getattr(protocol, "coap_listener", "")
        by_listener = self.accepted_by_listener
        by_listener[listener] = by_listener.get(listener, 0) + 1

    def discharge(self, protocol: Any) -> None:
        """Forget a closed connection (nothing happens for one never admitted)."""
        self.connections.discard(protocol)
        self.gate.discharge(protocol)

    def release_all(self, diagnostic: str = "server shutting down") -> Deferred[Any]:
        """Release every open connection; fires when all have closed (RFC 8323 section 5.5)."""
        closing = [protocol.release(diagnostic) for protocol in list(self.connections)]
        return DeferredList(closing, consumeErrors=True)


def _raise_soft_limit(resource: Any, soft: int, hard: int) -> int:
    """Raise ``RLIMIT_NOFILE``'s soft limit as far as the hard limit lets it; the new one."""
    if soft == resource.RLIM_INFINITY:
        return soft
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit (it must stay within fs.nr_open).
        candidates = [_nr_open(), 1 << 20, 10240]
    else:
        candidates = [hard]
    for target in candidates:
        if target <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def fit_descriptor_limit(
    limits: Limits,
    *,
    reactor: Any = None,
    reserve: int = DESCRIPTOR_RESERVE,
    log: Logger = ConnectionGate.log,
) -> Limits:
    """Raise the descriptor limit, and keep ``max_connections`` within it.

    The soft ``RLIMIT_NOFILE`` is raised to the hard one where the system lets us (no
    privilege is needed for that).  Each connection holds one descriptor from the moment
    it is accepted; ``reserve`` more are kept for everything else and
    :data:`REFUSAL_MARGIN` for the connections being refused.  If ``max_connections``
    does not fit in what is left, it is lowered to fit, and the log says so.  A
    ``select()`` reactor cannot use more than 1,024 descriptors, whatever the limit.
    Returns the limits to use (``limits`` itself when nothing changes).
    """
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to read or raise
        return limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = _raise_soft_limit(resource, soft, hard)
    if raised != soft:
        log.info(
            "Raised the descriptor limit (RLIMIT_NOFILE) from {soft} to {raised}",
            soft=soft,
            raised=raised,
        )
    usable = raised if raised != resource.RLIM_INFINITY else 1 << 30
    if reactor is not None and type(reactor).__name__ == "SelectReactor":
        usable = min(usable, _SELECT_FD_LIMIT)
    room = max(1, usable - reserve - REFUSAL_MARGIN)
    if limits.max_connections <= room:
        return limits
    log.warn(
        "Serving at most {room} connections, not {configured} (--max-connections): the "
        "descriptor limit is {usable}, of which {reserve} are kept for listeners, log "
        "files and worker pipes and {margin} for refusing connections over the limit",
        room=room,
        configured=limits.max_connections,
        usable=usable,
        reserve=reserve,
        margin=REFUSAL_MARGIN,
    )
    return replace(limits, max_connections=room)
