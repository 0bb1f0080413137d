"""A CoAP client by URI, with one pooled connection per endpoint (RFC 8323 sections 3, 8).

::

    from coaptcp.client.client import Client

    async def main(reactor):
        client = Client(reactor)
        response = await client.request("GET", "coap+tcp://127.0.0.1/hello", timeout=5)
        print(response.code, response.payload)
        print("round trip", await client.ping("coap+tcp://127.0.0.1"), "s")
        await client.close()

Requests to the same ``(scheme, host, port)`` share one connection and are pipelined on
it (many in flight, matched by token).  The connection is opened by the first request,
which goes out right behind our CSM (section 3.3); it is released (Release, then close,
section 5.5) after ``idle_timeout`` seconds without requests.  When nothing has been heard
from the peer for ``keepalive`` seconds, a Ping checks it (section 5.4); without a Pong
within ``ping_timeout`` the connection is dropped, the requests in flight on it fail with
:class:`~coaptcp.channel.channel.ConnectionClosedError`, and the next request opens a new one.
Each scheme is opened by a connector (:mod:`coaptcp.client.connectors`).

Large bodies move block-wise without the caller noticing (RFC 7959, BERT: RFC 8323
section 6; :mod:`coaptcp.client.transfer`), and :meth:`Client.observe` follows a resource's
state (RFC 7641, RFC 8323 section 7; :mod:`coaptcp.client.observe`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

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

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.observing import ChannelObservation
from coaptcp.channel.reactor import default_reactor
from coaptcp.client.connectors import (
    ClientConnection,
    ClientError,
    ConnectFailed,
    ConnectOptions,
    Connector,
    SchemeNotAvailable,
    TlsOptions,
    default_connectors,
)
from coaptcp.client.observe import Observation
from coaptcp.client.transfer import (
    DEFAULT_MAX_BODY_SIZE,
    Progress,
    TransferSettings,
    download_rest,
    exchange,
)
from coaptcp.core.blockwise import TransferError
from coaptcp.core.codes import Code
from coaptcp.core.connection import State
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options, OptionValue
from coaptcp.core.uri import SCHEMES, CoapUri, UriError, parse_uri
from coaptcp.server.resource import Response

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_PING_TIMEOUT",
    "METHODS",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ConnectOptions",
    "ConnectionClosedError",
    "ConnectionTimings",
    "Observation",
    "RequestNotSent",
    "RequestTimeout",
    "SchemeNotAvailable",
    "TlsOptions",
    "TransferError",
    "UriError",
    "parse_method",
]

#: Seconds without requests after which a pooled connection is released.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Seconds of silence from the peer after which a Ping checks that it is alive.
DEFAULT_KEEPALIVE = 15.0
#: Seconds to wait for a Pong (keepalive checks, and :meth:`Client.ping` by default).
DEFAULT_PING_TIMEOUT = 5.0

#: Request method names (RFC 7252 section 12.1.1, RFC 8132), as the CLI spells them.
METHODS: Mapping[str, Code] = {
    "GET": Code.GET,
    "POST": Code.POST,
    "PUT": Code.PUT,
    "DELETE": Code.DELETE,
    "FETCH": Code.FETCH,
    "PATCH": Code.PATCH,
    "IPATCH": Code.IPATCH,
}

#: The options a URI stands for (RFC 7252 section 6.4).
_URI_OPTIONS = frozenset(
    {OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH, OptionNumber.URI_QUERY}
)

_DEFAULT: Any = object()


class RequestTimeout(ClientError, TimeoutError):
    """No response (or Pong) came within the time given.  Also a Twisted ``TimeoutError``."""


class ClientClosed(ClientError):
    """The client was closed; it opens no more connections."""


def parse_method(method: str | int) -> Code:
    """A request method from a name (any case) or a code (RFC 7252 section 5.8)."""
    if isinstance(method, str):
        code = METHODS.get(method.upper())
        if code is None:
            names = ", ".join(METHODS)
            raise ValueError(f"unknown method {method!r}; expected one of {names}")
        return code
    code = Code(method)
    if not code.is_request:
        raise ValueError(f"{code} is not a request method")
    return code


def _merge_options(derived: Options, given: Options) -> Options:
    """The URI's options, with any of the same numbers given explicitly replacing them."""
    if not given:
        return derived
    replaced = {number for number, _ in given if number in _URI_OPTIONS}
    kept = [(n, v) for n, v in derived if n not in replaced]
    return Options([*kept, *given])


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


class _PoolState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    DEAD = "dead"  # dropped by us (no Pong), closing
    CLOSED = "closed"  # the connection attempt failed, or the transport is gone


class _Pooled:
    """One connection of the pool and its timers: idle release, keepalive Ping."""

    log = Logger()

    def __init__(self, client: Client, target: CoapUri) -> None:
        self.client = client
        self.key = target.origin
        self.endpoint = target.origin_uri
        self.state = _PoolState.CONNECTING
        self.connection: ClientConnection | None = None
        self.in_flight = 0
        self.last_heard = client.reactor.seconds()
        self.started_at = self.last_heard
        self.ready_at: float | None = None
        self._waiters: list[Deferred[_Pooled]] = []
        self._attempt: Deferred[Any] | None = None
        self._idle_call: Any = None
        self._keepalive_call: Any = None
        self._error: BaseException | None = None

    # -- connecting -----------------------------------------------------------------------

    def start(self, connector: Connector, host: str, port: int) -> None:
        attempt = maybeDeferred(
            connector, self.client.reactor, host, port, self.client.connect_options
        )
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: ClientConnection) -> None:
        self._attempt = None
        self.connection = connection
        self.state = _PoolState.OPEN
        self.last_heard = self.ready_at = self.client.reactor.seconds()
        self.client.connections_made += 1
        self.log.debug("Connected to {endpoint}", endpoint=self.endpoint)
        connection.channel.when_closed().addCallback(self._closed)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)
        self._schedule_keepalive()
        if self.in_flight == 0:
            self._schedule_idle()

    def _connect_failed(self, failure: Failure) -> None:
        self._attempt = None
        self.state = _PoolState.CLOSED
        self.client._forget(self)
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

    def ready(self) -> Deferred[_Pooled]:
        """Fires with this entry once connected (at once if it is)."""
        if self.state is _PoolState.OPEN:
            return succeed(self)
        if self.state is not _PoolState.CONNECTING:
            error = self._error or ConnectionClosedError(f"{self.endpoint}: {self.close_reason()}")
            return fail(error)
        waiter: Deferred[_Pooled] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    # -- health ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether new requests may go to this connection."""
        if self.state is _PoolState.CONNECTING:
            return True
        if self.state is not _PoolState.OPEN or self.connection is None:
            return False
        connection = self.connection.channel.connection
        return not (
            connection.state is State.CLOSED
            or connection.release_sent
            or connection.release_received
        )

    def heard(self) -> None:
        """Note that the peer just answered (a response or a Pong)."""
        self.last_heard = self.client.reactor.seconds()

    def begin(self) -> None:
        self.in_flight += 1
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.state is _PoolState.OPEN:
            self._schedule_idle()

    def _schedule_idle(self) -> None:
        timeout = self.client.idle_timeout
        if timeout is None:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = self.client.reactor.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._idle_call = None
        if self.state is not _PoolState.OPEN or self.in_flight or self.connection is None:
            return
        self.log.debug("Releasing idle connection to {endpoint}", endpoint=self.endpoint)
        self.client._forget(self)
        self.connection.release("idle")

    def _schedule_keepalive(self, delay: float | None = None) -> None:
        interval = self.client.keepalive
        if interval is None or self.state is not _PoolState.OPEN:
            return
        self._keepalive_call = self.client.reactor.callLater(
            interval if delay is None else delay, self._keepalive
        )

    def _keepalive(self) -> None:
        self._keepalive_call = None
        interval = self.client.keepalive
        if self.state is not _PoolState.OPEN or self.connection is None or interval is None:
            return
        silence = self.client.reactor.seconds() - self.last_heard
        if silence < interval:
            self._schedule_keepalive(interval - silence)
            return
        timeout = self.client.ping_timeout
        ping = self.connection.ping(timeout=timeout)

        def answered(rtt: float) -> None:
            self.heard()
            self._schedule_keepalive()

        def unanswered(failure: Failure) -> None:
            if failure.check(TimeoutError):
                self._dead(f"the peer is unresponsive: no Pong within {timeout:g} s")
            # Any other failure is the connection closing: _closed handles it.

        ping.addCallbacks(answered, unanswered)

    def _dead(self, reason: str) -> None:
        self.log.info("Dropping connection to {endpoint}: {reason}", endpoint=self.endpoint,
                      reason=reason)
        self.state = _PoolState.DEAD
        self.client._forget(self)
        if self.connection is not None:
            self.connection.abort(reason)

    def _closed(self, _: object) -> None:
        self.state = _PoolState.CLOSED
        for call in (self._idle_call, self._keepalive_call):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._keepalive_call = None
        self.client._forget(self)
        self.client._closed_entry(self)
        self.log.debug("Connection to {endpoint} closed", endpoint=self.endpoint)

    def close_reason(self) -> str:
        if self.connection is not None and self.connection.channel.close_reason:
            return self.connection.channel.close_reason
        return "connection closed"

    # -- shutting down --------------------------------------------------------------------

    def shutdown(self) -> Deferred[None]:
        """Release the connection (or abandon the attempt); fires when it is gone."""
        if self.state is _PoolState.CONNECTING and self._attempt is not None:
            self._attempt.cancel()
            return succeed(None)
        if self.connection is None or self.state is _PoolState.CLOSED:
            return succeed(None)
        return self.connection.release("client closing")


class Client:
    """Sends CoAP requests by URI over pooled connections (RFC 8323).

    :param reactor: the reactor (for connections and every timer); the global one if
        ``None``.
    :param connectors: connectors to use instead of (or besides) the defaults, by scheme
        name (:mod:`coaptcp.client.connectors`): this is how tests use in-memory connections.
    :param connect_options: what every connector is given (TLS settings, our
        Max-Message-Size, the connect timeout); :class:`ConnectOptions` defaults if ``None``.
    :param tls: shorthand for ``connect_options.tls``.
    :param idle_timeout: seconds without requests before a connection is released
        (RFC 8323 section 5.5); ``None`` keeps connections until :meth:`close`.
    :param keepalive: seconds of silence from the peer before a Ping checks it (section
        5.4); ``None`` disables the check.
    :param ping_timeout: seconds to wait for that Pong before dropping the connection.
    :param timeout: the default per-request timeout in seconds (``None``: no limit; a lost
        or unresponsive connection still fails the request).  For a block-wise transfer
        it bounds each exchange of a block, not the whole transfer.
    :param max_body_size: the largest response body reassembled from Block2 blocks
        (RFC 7959); a larger one fails with :class:`TransferError`.
    :param block_size: ``None`` sends bodies whole when they fit the peer's
        Max-Message-Size and in the largest blocks that fit otherwise (BERT when the peer
        allows it, RFC 8323 section 6); 16 to 1024 uses blocks of that size (Block1 for
        larger bodies, Block2 asked for in GET and FETCH); above 1024, BERT messages of
        at most that many bytes.

    :ivar connections_made: how many connections the client has opened (statistics).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any = None,
        *,
        connectors: Mapping[str, Connector] | None = None,
        connect_options: ConnectOptions | None = None,
        tls: TlsOptions | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        block_size: int | None = None,
    ) -> None:
        self.reactor = default_reactor(reactor)
        self.connectors: dict[str, Connector] = dict(default_connectors())
        if connectors:
            unknown = set(connectors) - set(SCHEMES)
            if unknown:
                raise ValueError(f"connectors for unknown schemes: {sorted(unknown)}")
            self.connectors.update(connectors)
        options = connect_options if connect_options is not None else ConnectOptions()
        if tls is not None:
            options = dataclasses.replace(options, tls=tls)
        self.connect_options = options
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self.ping_timeout = ping_timeout
        self.timeout = timeout
        self.transfer = TransferSettings(max_body_size=max_body_size, block_size=block_size)
        self.connections_made = 0
        self._pool: dict[tuple[str, str, int], _Pooled] = {}
        self._entries: set[_Pooled] = set()  # every connection not yet closed
        self._observations: set[Observation] = set()
        self._closed = False

    # -- the API --------------------------------------------------------------------------

    def request(
        self,
        method: str | int,
        uri: str | CoapUri,
        payload: bytes = b"",
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        timeout: float | None = _DEFAULT,
        *,
        progress: Progress | None = None,
    ) -> Deferred[Response]:
        """Send a request to ``uri``; fires with its :class:`~coaptcp.server.resource.Response`.

        The URI gives Uri-Host, Uri-Port, Uri-Path and Uri-Query (RFC 7252 section 6.4,
        RFC 8323 section 8.5); an option of one of those numbers in ``options`` replaces
        what the URI gives.  Error responses (4.xx, 5.xx) are responses, not failures.

        A payload too large for one message to the peer is sent in Block1 blocks, and a
        response sent in Block2 blocks is reassembled (RFC 7959; BERT, RFC 8323 section
        6): the Deferred fires with the whole body.  Errors the server answers during an
        upload (4.08, 4.13 with Size1, ...) are the response.

        Fails with :class:`~coaptcp.core.uri.UriError` (a bad URI), :class:`SchemeNotAvailable`,
        :class:`ConnectFailed`, :class:`ConnectionClosedError` (the connection was lost,
        aborted or released before the response), :class:`RequestNotSent` (too large for
        the peer), :class:`RequestTimeout`, :class:`TransferError` (blocks that do not
        make a body: see :class:`~coaptcp.core.blockwise.Download`), or
        ``CancelledError`` when cancelled (which frees the token; a late response is
        ignored).

        :param method: a :class:`~coaptcp.core.codes.Code` or a name such as ``"get"``.
        :param timeout: seconds until :class:`RequestTimeout`, counting the connection
            set-up; the client's default when not given, ``None`` for no limit.  In a
            block-wise transfer each block's answer restarts it.
        :param progress: called as ``progress(done, total)`` after each block of a
            block-wise transfer: the bytes moved so far and the whole size (``None``
            when the server gave no Size2).
        """
        try:
            code = parse_method(method)
            target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
            given = options if isinstance(options, Options) else Options(options)
            request_options = _merge_options(target.request_options(), given)
        except (ValueError, TypeError) as error:
            return fail(error)
        if timeout is _DEFAULT:
            timeout = self.timeout
        return self._with_idle_timeout(
            lambda kick: self._request(target, code, request_options, payload, kick, progress),
            timeout,
            f"no response from {target.origin_uri}",
        )

    async def arequest(
        self,
        method: str | int,
        uri: str | CoapUri,
        payload: bytes = b"",
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        timeout: float | None = _DEFAULT,
        *,
        progress: Progress | None = None,
    ) -> Response:
        """:meth:`request` as a coroutine, for ``async def`` code run by Twisted.

        (``await client.request(...)`` works as well; under asyncio, use
        ``client.request(...).asFuture(loop)``.)
        """
        return await self.request(method, uri, payload, options, timeout, progress=progress)

    def observe(
        self,
        uri: str | CoapUri,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        *,
        callback: Callable[[Response], object] | None = None,
        reregister: bool = False,
        timeout: float | None = _DEFAULT,
    ) -> Observation:
        """Observe the resource at ``uri`` (RFC 7641 over RFC 8323 section 7).

        Sends GET with Observe=0 on the pooled connection and returns an
        :class:`~coaptcp.client.observe.Observation`: ``async for response in observation``
        gives each notification (the first response included), or ``callback`` is called
        with each.  The Observe value of notifications is ignored (section 7.1).
        ``observation.cancel()`` deregisters with GET Observe=1 and the same token
        (section 7.4).  The observation ends when the server sends a response without
        Observe or an error (delivered, then the iteration stops), or when the
        connection is lost (:class:`ConnectionClosedError`); with ``reregister`` a lost
        connection is replaced and the GET registered again instead.

        Raises :class:`~coaptcp.core.uri.UriError` for a bad URI; other failures (connecting,
        :class:`RequestTimeout` when no first response comes within ``timeout``) end
        the observation with that error.
        """
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        given = options if isinstance(options, Options) else Options(options)
        request_options = _merge_options(target.request_options(), given)
        if timeout is _DEFAULT:
            timeout = self.timeout

        def register(observation: Observation) -> Deferred[ChannelObservation]:
            return Deferred.fromCoroutine(
                self._register_observation(target, request_options, observation)
            )

        def complete(first: Response) -> Deferred[Response]:
            return Deferred.fromCoroutine(
                self._complete_blocks(target, Code.GET, request_options, first)
            )

        def timed_out() -> BaseException:
            return RequestTimeout(
                f"no response from {target.origin_uri} within {timeout:g} s"
            )

        observation = Observation(
            self.reactor,
            register,
            complete=complete,
            callback=callback,
            reregister=reregister,
            timeout=timeout,
            timeout_error=timed_out,
        )
        if not observation.ended:
            self._observations.add(observation)
            observation.when_ended().addBoth(lambda _: self._observations.discard(observation))
        return observation

    def ping(self, uri: str | CoapUri, timeout: float | None = _DEFAULT) -> Deferred[float]:
        """Ping the endpoint of ``uri``; fires with the round-trip time in seconds.

        Uses (or opens) the pooled connection (RFC 8323 section 5.4).  ``timeout`` is the
        client's ``ping_timeout`` when not given.  Fails like :meth:`request`.
        """
        try:
            target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        except (ValueError, TypeError) as error:
            return fail(error)
        if timeout is _DEFAULT:
            timeout = self.ping_timeout
        d = Deferred.fromCoroutine(self._ping(target))
        return self._with_timeout(d, timeout, f"no Pong from {target.origin_uri}")

    async def aping(self, uri: str | CoapUri, timeout: float | None = _DEFAULT) -> float:
        """:meth:`ping` as a coroutine."""
        return await self.ping(uri, timeout)

    def close(self) -> Deferred[None]:
        """Release every connection (section 5.5); fires once all have closed.

        Observations are cancelled first (deregistered, RFC 8323 section 7.4).  Requests
        in flight are still answered (up to the Channel's release timeout); new requests
        fail with :class:`ClientClosed`.
        """
        self._closed = True
        self._pool.clear()
        cancelled = [observation.cancel() for observation in list(self._observations)]

        def release(_: object) -> Deferred[Any]:
            closing = [entry.shutdown() for entry in list(self._entries)]
            return DeferredList(closing, consumeErrors=True)

        done: Deferred[Any] = DeferredList(cancelled, consumeErrors=True)
        return done.addCallback(release).addCallback(lambda _: None)

    def request_options(
        self,
        uri: str | CoapUri,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
    ) -> Options:
        """The options :meth:`request` sends for ``uri`` and ``options`` (for display)."""
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        given = options if isinstance(options, Options) else Options(options)
        return _merge_options(target.request_options(), given)

    def connection_for(self, uri: str | CoapUri) -> ClientConnection | None:
        """The open pooled connection to ``uri``'s endpoint, if there is one."""
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        entry = self._pool.get(target.origin)
        if entry is None or entry.state is not _PoolState.OPEN:
            return None
        return entry.connection

    def connection_timings(self, uri: str | CoapUri) -> ConnectionTimings | None:
        """When the open pooled connection to ``uri``'s endpoint was set up, if there is one.

        ``tcp_connected`` and ``tls_completed`` are filled in for coaps+tcp, whose TLS
        layer (:class:`coaptcp.transport.tls.transport.CoapTLSTransport`) records them.
        """
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        entry = self._pool.get(target.origin)
        if entry is None or entry.ready_at is None or entry.connection is None:
            return None
        transport = getattr(entry.connection, "transport", None)
        return ConnectionTimings(
            started=entry.started_at,
            ready=entry.ready_at,
            tcp_connected=getattr(transport, "tcp_connected_at", None),
            tls_completed=getattr(transport, "handshake_completed_at", None),
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def open_endpoints(self) -> list[str]:
        """The endpoints (``scheme://host:port``) of the pooled connections."""
        return [entry.endpoint for entry in self._pool.values()]

    # -- internals ------------------------------------------------------------------------

    def _with_timeout(self, d: Deferred[Any], timeout: float | None, what: str) -> Deferred[Any]:
        if timeout is None:
            return d

        def on_timeout(result: Any, seconds: float) -> Any:
            if isinstance(result, Failure) and result.check(CancelledError):
                raise RequestTimeout(f"{what} within {seconds:g} s")
            return result

        return d.addTimeout(timeout, self.reactor, onTimeoutCancel=on_timeout)

    def _with_idle_timeout(
        self,
        start: Callable[[Callable[[], None]], Coroutine[Any, Any, Response]],
        timeout: float | None,
        what: str,
    ) -> Deferred[Response]:
        """Run ``start(kick)``; fail with :class:`RequestTimeout` when ``timeout`` seconds
        pass without a call to ``kick`` (each block of a transfer calls it)."""
        calls: list[Any] = []
        expired: list[bool] = []

        def kick() -> None:
            if calls and calls[0].active():
                calls[0].reset(timeout)

        d = Deferred.fromCoroutine(start(kick))
        if timeout is None:
            return d

        def expire() -> None:
            expired.append(True)
            d.cancel()

        def finished(result: Any) -> Any:
            if calls[0].active():
                calls[0].cancel()
            if expired and isinstance(result, Failure) and result.check(CancelledError):
                raise RequestTimeout(f"{what} within {timeout:g} s")
            return result

        calls.append(self.reactor.callLater(timeout, expire))
        return d.addBoth(finished)

    async def _request(
        self,
        target: CoapUri,
        code: Code,
        options: Options,
        payload: bytes,
        kick: Callable[[], None] | None = None,
        progress: Progress | None = None,
    ) -> Response:
        entry = await self._acquire(target)
        connection = entry.connection
        assert connection is not None

        def send(method: Code, message_options: Options, body: bytes) -> Deferred[Response]:
            def answered(response: Response) -> Response:
                entry.heard()
                if kick is not None:
                    kick()
                return response

            return connection.request(method, message_options, body).addCallback(answered)

        entry.begin()
        try:
            return await exchange(connection.channel, send, code, options, payload,
                                  self.transfer, progress)
        except ConnectionClosedError as error:
            raise ConnectionClosedError(f"{entry.endpoint}: {error.reason}") from None
        finally:
            entry.end()

    async def _complete_blocks(
        self, target: CoapUri, code: Code, options: Options, first: Response
    ) -> Response:
        """Fetch the remaining Block2 blocks of ``first`` (a notification's block 0)."""
        entry = await self._acquire(target)
        connection = entry.connection
        assert connection is not None
        entry.begin()
        try:
            return await download_rest(
                connection.request, code, options, b"", first,
                max_body_size=self.transfer.max_body_size,
            )
        finally:
            entry.end()

    async def _register_observation(
        self, target: CoapUri, options: Options, observation: Observation
    ) -> ChannelObservation:
        entry = await self._acquire(target)
        connection = entry.connection
        assert connection is not None

        def on_notification(response: Response) -> None:
            entry.heard()
            observation.notification(response)

        def on_end(error: BaseException | None) -> None:
            entry.end()
            if isinstance(error, ConnectionClosedError):
                error = ConnectionClosedError(f"{entry.endpoint}: {error.reason}")
            observation.channel_ended(error)

        entry.begin()
        try:
            return connection.channel.observe(
                options, on_notification=on_notification, on_end=on_end
            )
        except ConnectionClosedError as error:
            entry.end()
            raise ConnectionClosedError(f"{entry.endpoint}: {error.reason}") from None
        except BaseException:
            entry.end()
            raise

    async def _ping(self, target: CoapUri) -> float:
        entry = await self._acquire(target)
        assert entry.connection is not None
        entry.begin()
        try:
            rtt: float = await entry.connection.ping()
        except ConnectionClosedError as error:
            raise ConnectionClosedError(f"{entry.endpoint}: {error.reason}") from None
        finally:
            entry.end()
        entry.heard()
        return rtt

    async def _acquire(self, target: CoapUri) -> _Pooled:
        if self._closed:
            raise ClientClosed("the client is closed")
        entry = self._pool.get(target.origin)
        if entry is None or not entry.usable:
            entry = self._open(target)
        ready: _Pooled = await entry.ready()
        return ready

    def _open(self, target: CoapUri) -> _Pooled:
        connector = self.connectors.get(target.scheme)
        entry = _Pooled(self, target)
        self._pool[target.origin] = entry
        self._entries.add(entry)
        if connector is None:
            entry._connect_failed(Failure(SchemeNotAvailable(target.scheme)))
        else:
            entry.start(connector, target.host, target.port)
        return entry

    def _forget(self, entry: _Pooled) -> None:
        """Take ``entry`` out of the pool: new requests get a new connection."""
        if self._pool.get(entry.key) is entry:
            del self._pool[entry.key]
        if entry.state is _PoolState.CLOSED:
            self._entries.discard(entry)

    def _closed_entry(self, entry: _Pooled) -> None:
        self._entries.discard(entry)
