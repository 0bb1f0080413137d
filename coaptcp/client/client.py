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
it (many in flight, matched by token).  The pool (:mod:`coaptcp.client.pool`) opens it
with the first request, releases it when idle (RFC 8323 section 5.5) and checks a silent
peer with a Ping (section 5.4); a connection dropped for want of a Pong fails the requests
in flight on it with :class:`~coaptcp.channel.errors.ConnectionClosedError`, and the next
request opens a new one.  Each scheme is opened by a connector
(:mod:`coaptcp.client.connectors`).

Every request method takes the method, then the URI, then the payload; the rest
(``options``, ``timeout``, ``progress``) are keyword-only.

Large bodies move block-wise without the caller noticing (RFC 7959, BERT: RFC 8323
section 6; :mod:`coaptcp.client.transfer`), and :meth:`Client.observe` follows a resource's
state (RFC 7641, RFC 8323 section 7; :mod:`coaptcp.client.observe`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.channel.observing import ChannelObservation
from coaptcp.channel.reactor import default_reactor
from coaptcp.client.connectors import (
    ClientConnection,
    ConnectOptions,
    Connector,
    TlsOptions,
    default_connectors,
)
from coaptcp.client.errors import ClientClosed, RequestTimeout
from coaptcp.client.observe import Observation
from coaptcp.client.pool import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEPALIVE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PING_TIMEOUT,
    ConnectionPool,
    ConnectionTimings,
    PooledConnection,
    PoolState,
)
from coaptcp.client.targets import parse_method, resolve_target
from coaptcp.client.timeouts import check_seconds, with_idle_timeout, with_timeout
from coaptcp.client.transfer import (
    DEFAULT_MAX_BODY_SIZE,
    Progress,
    TransferSettings,
    download_rest,
    exchange,
)
from coaptcp.core.codes import Code
from coaptcp.core.options import EMPTY_OPTIONS, Options, OptionValue
from coaptcp.core.uri import SCHEMES, CoapUri, parse_uri
from coaptcp.server.request import Response

__all__ = ["Client"]

_DEFAULT: Any = object()


class Client:
    """Sends CoAP requests by URI over pooled connections (RFC 8323).

    :param reactor: the reactor (for connections and every timer); the global one if
        ``None``.
    :param connectors: connectors to use instead of (or besides) the defaults, by scheme
        name (:mod:`coaptcp.client.connectors`): this is how tests use in-memory connections.
    :param connect_options: what every connector is given (TLS settings, our
        Max-Message-Size, the connect timeout);
        :class:`~coaptcp.client.connectors.ConnectOptions` defaults if ``None``.
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
        (RFC 7959); a larger one fails with :class:`~coaptcp.core.blocktransfer.TransferError`.
    :param block_size: ``None`` sends bodies whole when they fit the peer's
        Max-Message-Size and in the largest blocks that fit otherwise (BERT when the peer
        allows it, RFC 8323 section 6); 16 to 1024 uses blocks of that size (Block1 for
        larger bodies, Block2 asked for in GET and FETCH); above 1024, BERT messages of
        at most that many bytes.
    :param max_connections: connections held at once (connecting, open or closing); a
        request to a new endpoint beyond that fails with
        :class:`~coaptcp.client.errors.PoolFull` while the least recently used idle one
        is released; ``None``: no bound.
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
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        for name, seconds in (("timeout", timeout), ("idle_timeout", idle_timeout),
                              ("keepalive", keepalive), ("ping_timeout", ping_timeout)):
            check_seconds(name, seconds)
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
        self.max_connections = max_connections
        self.timeout = timeout
        self.transfer = TransferSettings(max_body_size=max_body_size, block_size=block_size)
        self._pool = ConnectionPool(self)
        self._observations: set[Observation] = set()
        self._closed = False

    # -- the API --------------------------------------------------------------------------

    def request(
        self,
        method: str | int,
        uri: str | CoapUri,
        payload: bytes = b"",
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        timeout: float | None = _DEFAULT,
        progress: Progress | None = None,
    ) -> Deferred[Response]:
        """Send a request to ``uri``; fires with its :class:`~coaptcp.server.request.Response`.

        The URI gives Uri-Host, Uri-Port, Uri-Path and Uri-Query (RFC 7252 section 6.4,
        RFC 8323 section 8.5); an option of one of those numbers in ``options`` replaces
        what the URI gives.  Error responses (4.xx, 5.xx) are responses, not failures.

        A payload too large for one message to the peer is sent in Block1 blocks, and a
        response sent in Block2 blocks is reassembled (RFC 7959; BERT, RFC 8323 section
        6): the Deferred fires with the whole body.  Errors the server answers during an
        upload (4.08, 4.13 with Size1, ...) are the response.

        Fails with :class:`~coaptcp.core.uri.UriError` (a bad URI), :class:`ValueError`
        (a bad method, option number or timeout), :class:`TypeError` (a payload not bytes),
        :class:`~coaptcp.client.connectors.SchemeNotAvailable`,
        :class:`~coaptcp.client.connectors.ConnectFailed`,
        :class:`~coaptcp.channel.errors.ConnectionClosedError` (the connection was lost,
        aborted or released before the response),
        :class:`~coaptcp.channel.errors.RequestNotSent` (too large for the peer),
        :class:`~coaptcp.client.errors.RequestTimeout`,
        :class:`~coaptcp.core.blocktransfer.TransferError` (blocks that do not make a body:
        see :class:`~coaptcp.core.blocktransfer.Download`), or
        ``CancelledError`` when cancelled (which frees the token; a late response is
        ignored).

        :param method: a :class:`~coaptcp.core.codes.Code` or a name such as ``"get"``.
        :param timeout: seconds until :class:`~coaptcp.client.errors.RequestTimeout`,
            counting the connection set-up; the client's default when not given, ``None``
            for no limit.  In a block-wise transfer each block's answer restarts it.
        :param progress: called as ``progress(done, total)`` after each block of a
            block-wise transfer: the bytes moved so far and the whole size (``None``
            when the server gave no Size2).
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        try:
            code = parse_method(method)
            target, request_options = resolve_target(uri, options)
            check_seconds("timeout", timeout)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(f"the payload is bytes, not {type(payload).__name__}")
        except (ValueError, TypeError) as error:
            return fail(error)
        return with_idle_timeout(
            self.reactor,
            lambda kick: self._request(target, code, request_options, payload, kick, progress),
            timeout,
            f"no response from {target.origin_uri}",
        )

    async def arequest(
        self,
        method: str | int,
        uri: str | CoapUri,
        payload: bytes = b"",
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
        timeout: float | None = _DEFAULT,
        progress: Progress | None = None,
    ) -> Response:
        """:meth:`request` as a coroutine, for ``async def`` code run by Twisted.

        (``await client.request(...)`` works as well; under asyncio, use
        ``client.request(...).asFuture(loop)``.)
        """
        return await self.request(method, uri, payload, options=options, timeout=timeout,
                                  progress=progress)

    def observe(
        self,
        uri: str | CoapUri,
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
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
        connection is lost (:class:`~coaptcp.channel.errors.ConnectionClosedError`); with
        ``reregister`` a lost connection is replaced and the GET registered again instead.

        Raises :class:`~coaptcp.core.uri.UriError` for a bad URI and :class:`ValueError`
        for a bad option number or timeout; other failures
        (connecting, :class:`~coaptcp.client.errors.RequestTimeout` when no first response
        comes within ``timeout``) end the observation with that error.
        """
        target, request_options = resolve_target(uri, options)
        if timeout is _DEFAULT:
            timeout = self.timeout
        check_seconds("timeout", timeout)

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

    def ping(self, uri: str | CoapUri, *, timeout: float | None = _DEFAULT) -> Deferred[float]:
        """Ping the endpoint of ``uri``; fires with the round-trip time in seconds.

        Uses (or opens) the pooled connection (RFC 8323 section 5.4).  ``timeout`` is the
        client's ``ping_timeout`` when not given.  Fails like :meth:`request`.
        """
        if timeout is _DEFAULT:
            timeout = self.ping_timeout
        try:
            target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
            check_seconds("timeout", timeout)
        except (ValueError, TypeError) as error:
            return fail(error)
        d = Deferred.fromCoroutine(self._ping(target))
        return with_timeout(self.reactor, d, timeout, f"no Pong from {target.origin_uri}")

    async def aping(self, uri: str | CoapUri, *, timeout: float | None = _DEFAULT) -> float:
        """:meth:`ping` as a coroutine."""
        return await self.ping(uri, timeout=timeout)

    def close(self) -> Deferred[None]:
        """Release every connection (section 5.5); fires once all have closed.

        Observations are cancelled first (deregistered, RFC 8323 section 7.4).  Requests
        in flight are still answered (up to the Channel's release timeout); new requests
        fail with :class:`~coaptcp.client.errors.ClientClosed`.
        """
        self._closed = True
        self._pool.clear()
        cancelled = [observation.cancel() for observation in list(self._observations)]
        done: Deferred[Any] = DeferredList(cancelled, consumeErrors=True)
        return done.addCallback(lambda _: self._pool.shutdown()).addCallback(lambda _: None)

    def request_options(
        self,
        uri: str | CoapUri,
        *,
        options: Options | Iterable[tuple[int, OptionValue]] = EMPTY_OPTIONS,
    ) -> Options:
        """The options :meth:`request` sends for ``uri`` and ``options`` (for display)."""
        return resolve_target(uri, options)[1]

    def connection_for(self, uri: str | CoapUri) -> ClientConnection | None:
        """The open pooled connection to ``uri``'s endpoint, if there is one."""
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        entry = self._pool.get(target)
        if entry is None or entry.state is not PoolState.OPEN:
            return None
        return entry.connection

    def connection_timings(self, uri: str | CoapUri) -> ConnectionTimings | None:
        """When the open pooled connection to ``uri``'s endpoint was set up, if there is one.

        ``tcp_connected`` and ``tls_completed`` are filled in for coaps+tcp, whose TLS
        layer (:class:`coaptcp.transport.tls.transport.CoapTLSTransport`) records them.
        """
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        entry = self._pool.get(target)
        return None if entry is None else entry.timings()

    @property
    def connections_made(self) -> int:
        """How many connections the client has opened (statistics)."""
        return self._pool.connections_made

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def open_endpoints(self) -> list[str]:
        """The endpoints (``scheme://host:port``) of the pooled connections."""
        return self._pool.endpoints

    # -- internals ------------------------------------------------------------------------

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

    async def _acquire(self, target: CoapUri) -> PooledConnection:
        if self._closed:
            raise ClientClosed("the client is closed")
        ready: PooledConnection = await self._pool.acquire(target)
        return ready
