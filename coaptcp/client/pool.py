"""The client's connection pool: one connection per endpoint, with its timers (RFC 8323).

The pool keeps one :class:`PooledConnection` per ``(scheme, host, port)``.  The first
request to an endpoint opens it through the scheme's connector
(:mod:`coaptcp.client.connectors`) and goes out right behind our CSM (section 3.3).  Each
pooled connection is released (Release, then close, section 5.5) after ``idle_timeout``
seconds without requests; when nothing has been heard from the peer for ``keepalive``
seconds a Ping checks it (section 5.4), and without a Pong within ``ping_timeout`` the
connection is aborted and taken out of the pool, so that the next request opens a new one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.watchdog import Watchdog
from coaptcp.client.connectors import (
    ClientConnection,
    ClientError,
    ConnectFailed,
    ConnectOptions,
    Connector,
    SchemeNotAvailable,
)
from coaptcp.client.errors import ClientClosed, PoolFull
from coaptcp.core.connection import State
from coaptcp.core.uri import CoapUri

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PING_TIMEOUT",
    "ConnectionPool",
    "ConnectionTimings",
    "PoolSettings",
    "PoolState",
    "PooledConnection",
]

#: Seconds without requests after which a pooled connection is released.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Seconds of silence from the peer after which a Ping checks that it is alive.
DEFAULT_KEEPALIVE = 15.0
#: Seconds to wait for a Pong (keepalive checks, and ``Client.ping`` by default).
DEFAULT_PING_TIMEOUT = 5.0
#: Connections one pool holds at once, every state counted (each holds a descriptor).
DEFAULT_MAX_CONNECTIONS = 1024


class PoolSettings(Protocol):
    """What the pool reads from its owner (the ``Client``) each time it needs it."""

    @property
    def reactor(self) -> Any:
        """The reactor for connecting and for every timer."""

    @property
    def connectors(self) -> Mapping[str, Connector]:
        """The connector of each URI scheme (RFC 8323 section 8)."""

    @property
    def connect_options(self) -> ConnectOptions:
        """What every connector is given."""

    @property
    def idle_timeout(self) -> float | None:
        """Seconds without requests before a Release (section 5.5); ``None``: never."""

    @property
    def keepalive(self) -> float | None:
        """Seconds of silence before a Ping (section 5.4); ``None``: no check."""

    @property
    def ping_timeout(self) -> float:
        """Seconds to wait for the keepalive Pong."""

    @property
    def max_connections(self) -> int | None:
        """Connections the pool may hold at once; ``None``: no bound."""


@dataclasses.dataclass(frozen=True)
class ConnectionTimings:
    """When a pooled connection was set up, in reactor seconds (for ``coaptcp-client -v``).

    :ivar started: the connection attempt began.
    :ivar ready: the connector fired: CoAP messages can be sent (RFC 8323 section 3.3).
    :ivar tcp_connected: the TCP connection was made, when a TLS layer recorded it.
    :ivar tls_completed: the TLS handshake finished (coaps+tcp only, RFC 8323 section 9).
    """

    started: float
    ready: float
    tcp_connected: float | None = None
    tls_completed: float | None = None


class PoolState(enum.Enum):
    """Where a pooled connection is in its life (RFC 8323 sections 3.3, 5.4, 5.5)."""

    CONNECTING = "connecting"
    OPEN = "open"
    DEAD = "dead"  # dropped by us (no Pong), closing
    CLOSED = "closed"  # the connection attempt failed, or the transport is gone


def _describe(failure: Failure) -> str:
    """One line saying why a connection attempt failed."""
    from twisted.internet import error

    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.TimeoutError, TimeoutError):
        return "timed out"
    if failure.check(error.DNSLookupError):
        return f"cannot resolve the host name ({failure.getErrorMessage().rstrip('.')})"
    message = failure.getErrorMessage().rstrip(".")
    return message or getattr(failure.type, "__name__", "unknown error")


class PooledConnection:
    """One connection of the pool and its timers: idle release (RFC 8323 section 5.5),
    keepalive Ping (section 5.4)."""

    log = Logger()

    def __init__(self, pool: ConnectionPool, target: CoapUri) -> None:
        self.pool = pool
        self.settings = pool.settings
        self.key = target.origin
        self.endpoint = target.origin_uri
        self.state = PoolState.CONNECTING
        self.connection: ClientConnection | None = None
        self.in_flight = 0
        self.started_at = self.settings.reactor.seconds()
        self.ready_at: float | None = None
        self._waiters: list[Deferred[PooledConnection]] = []
        self._attempt: Deferred[Any] | None = None
        self._error: BaseException | None = None
        # The same watchdog as a server's connections: idle release and keepalive Ping.
        self.watchdog = Watchdog(
            self,
            self.settings.reactor,
            idle_timeout=self.settings.idle_timeout,
            keepalive_interval=self.settings.keepalive,
            pong_timeout=self.settings.ping_timeout,
        )

    @property
    def last_heard(self) -> float:
        """When the peer last answered, or the connection was last used."""
        return self.watchdog.last_activity

    # -- connecting -----------------------------------------------------------------------

    def start(self, connector: Connector, host: str, port: int) -> None:
        """Open the connection with ``connector`` (RFC 8323 section 3.3)."""
        attempt = maybeDeferred(
            connector, self.settings.reactor, host, port, self.settings.connect_options
        )
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self.connect_failed)

    def _connected(self, connection: ClientConnection) -> None:
        self._attempt = None
        self.connection = connection
        self.state = PoolState.OPEN
        self.watchdog.last_activity = self.ready_at = self.settings.reactor.seconds()
        self.pool.connections_made += 1
        self.log.debug("Connected to {endpoint}", endpoint=self.endpoint)
        connection.channel.when_closed().addCallback(self._closed)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)
        self.watchdog.start()

    def connect_failed(self, failure: Failure) -> None:
        """The connection could not be made: fail everyone waiting for it."""
        self._attempt = None
        self.state = PoolState.CLOSED
        self.pool.forget(self)
        error: BaseException
        if failure.check(ClientError) and failure.value is not None:
            error = failure.value
        elif failure.check(CancelledError):
            error = ClientClosed(f"connection to {self.endpoint} abandoned: the client closed")
        else:
            error = ConnectFailed(self.endpoint, _describe(failure))
        self._error = error
        self.log.debug("Connecting to {endpoint} failed: {error}", endpoint=self.endpoint,
                       error=str(error))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(Failure(error))

    def ready(self) -> Deferred[PooledConnection]:
        """Fires with this entry once connected (at once if it is)."""
        if self.state is PoolState.OPEN:
            return succeed(self)
        if self.state is not PoolState.CONNECTING:
            error = self._error or ConnectionClosedError(f"{self.endpoint}: {self.close_reason()}")
            return fail(error)
        waiter: Deferred[PooledConnection] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def timings(self) -> ConnectionTimings | None:
        """When the connection was set up, once it is (TLS times from the TLS layer)."""
        if self.ready_at is None or self.connection is None:
            return None
        transport = getattr(self.connection, "transport", None)
        return ConnectionTimings(
            started=self.started_at,
            ready=self.ready_at,
            tcp_connected=getattr(transport, "tcp_connected_at", None),
            tls_completed=getattr(transport, "handshake_completed_at", None),
        )

    # -- health ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether new requests may go to this connection (not releasing, section 5.5)."""
        if self.state is PoolState.CONNECTING:
            return True
        if self.state is not PoolState.OPEN or self.connection is None:
            return False
        connection = self.connection.channel.connection
        return not (
            connection.state is State.CLOSED
            or connection.release_sent
            or connection.release_received
        )

    def heard(self) -> None:
        """Note that the peer just answered (a response or a Pong)."""
        self.watchdog.last_activity = self.settings.reactor.seconds()

    def begin(self) -> None:
        """A request (or observation) starts using the connection: no idle release."""
        self.in_flight += 1

    def end(self) -> None:
        """A request (or observation) is done with the connection: idle from now."""
        self.in_flight -= 1
        self.watchdog.last_activity = self.settings.reactor.seconds()

    # -- what the watchdog asks (coaptcp.channel.watchdog.Watched) -------------------------

    def watchdog_busy(self) -> bool:
        """Requests or observations are using the connection."""
        return self.in_flight > 0

    def watchdog_may_ping(self) -> bool:
        """A keepalive Ping may go while the connection is open and not releasing."""
        return self.state is PoolState.OPEN and self.usable

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """The keepalive Ping (RFC 8323 section 5.4); a Pong counts as hearing the peer."""
        assert self.connection is not None
        return self.connection.ping(timeout=timeout).addCallback(self._pong)

    def _pong(self, rtt: float) -> float:
        self.heard()
        return rtt

    def watchdog_idle(self, idle: float) -> None:
        """Unused for ``idle_timeout``: release it (RFC 8323 section 5.5)."""
        if self.state is not PoolState.OPEN or self.connection is None:
            return
        self.log.debug("Releasing idle connection to {endpoint}", endpoint=self.endpoint)
        self.pool.forget(self)
        self.connection.release("idle")

    def release_for_room(self, limit: int) -> None:
        """The pool is full and this is its least recently used idle connection."""
        assert self.connection is not None
        self.log.debug("Releasing {endpoint}: the pool holds {limit} connections",
                       endpoint=self.endpoint, limit=limit)
        self.pool.forget(self)
        self.connection.release(f"the client holds {limit} connections")

    def watchdog_no_pong(self, timeout: float) -> None:
        """The keepalive Ping went unanswered: the peer is gone."""
        if self.state is PoolState.OPEN:
            self._dead(f"the peer is unresponsive: no Pong within {timeout:g} s")

    def _dead(self, reason: str) -> None:
        self.watchdog.stop()
        self.log.info("Dropping connection to {endpoint}: {reason}", endpoint=self.endpoint,
                      reason=reason)
        self.state = PoolState.DEAD
        self.pool.forget(self)
        if self.connection is not None:
            self.connection.abort(reason)

    def _closed(self, _: object) -> None:
        self.state = PoolState.CLOSED
        self.watchdog.stop()
        self.pool.forget(self)
        self.log.debug("Connection to {endpoint} closed", endpoint=self.endpoint)

    def close_reason(self) -> str:
        """Why the connection closed, as the Channel recorded it."""
        if self.connection is not None and self.connection.channel.close_reason:
            return self.connection.channel.close_reason
        return "connection closed"

    # -- shutting down --------------------------------------------------------------------

    def shutdown(self) -> Deferred[None]:
        """Release the connection (or abandon the attempt); fires when it is gone."""
        if self.state is PoolState.CONNECTING and self._attempt is not None:
            self._attempt.cancel()
            return succeed(None)
        if self.connection is None or self.state is PoolState.CLOSED:
            return succeed(None)
        return self.connection.release("client closing")


class ConnectionPool:
    """The pooled connections of one client, by endpoint (RFC 8323 sections 3.3, 8).

    At most ``settings.max_connections`` are held, connecting, open or closing: a new
    endpoint beyond that fails with :class:`~coaptcp.client.errors.PoolFull`, and the
    least recently used idle connection is released (RFC 8323 section 5.5) to make room.

    :ivar connections_made: how many connections the pool has opened (statistics).
    """

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.connections_made = 0
        self._by_origin: dict[tuple[str, str, int], PooledConnection] = {}
        self._entries: set[PooledConnection] = set()  # every connection not yet closed

    def acquire(self, target: CoapUri) -> Deferred[PooledConnection]:
        """The connection to ``target``'s endpoint, once ready: the pooled one when it
        takes new requests, else a new one."""
        entry = self._by_origin.get(target.origin)
        if entry is None or not entry.usable:
            limit = self.settings.max_connections
            if limit is not None and len(self._entries) >= limit and not self._make_room(limit):
                return fail(PoolFull(limit))
            entry = self._open(target)
        return entry.ready()

    def _make_room(self, limit: int) -> bool:
        """Release the least recently used idle connection; whether room is there now (a
        UDP peer goes at once, a stream connection once its Release is done)."""
        idle = [
            entry for entry in self._by_origin.values()
            if entry.state is PoolState.OPEN and not entry.in_flight
        ]
        if idle:
            min(idle, key=lambda entry: entry.last_heard).release_for_room(limit)
        return len(self._entries) < limit

    def get(self, target: CoapUri) -> PooledConnection | None:
        """The pooled connection to ``target``'s endpoint (in any state), if there is one."""
        return self._by_origin.get(target.origin)

    @property
    def endpoints(self) -> list[str]:
        """The endpoints (``scheme://host:port``) of the pooled connections."""
        return [entry.endpoint for entry in self._by_origin.values()]

    def clear(self) -> None:
        """Take every connection out of the pool (they stay open until :meth:`shutdown`)."""
        self._by_origin.clear()

    def shutdown(self) -> Deferred[Any]:
        """Release every connection not yet closed (section 5.5); fires when all are gone."""
        closing = [entry.shutdown() for entry in list(self._entries)]
        return DeferredList(closing, consumeErrors=True)

    def forget(self, entry: PooledConnection) -> None:
        """Take ``entry`` out of the pool: new requests get a new connection."""
        if self._by_origin.get(entry.key) is entry:
            del self._by_origin[entry.key]
        if entry.state is PoolState.CLOSED:
            self._entries.discard(entry)

    def _open(self, target: CoapUri) -> PooledConnection:
        connector = self.settings.connectors.get(target.scheme)
        entry = PooledConnection(self, target)
        self._by_origin[target.origin] = entry
        self._entries.add(entry)
        if connector is None:
            entry.connect_failed(Failure(SchemeNotAvailable(target.scheme)))
        else:
            entry.start(connector, target.host, target.port)
        return entry
