"""The application's side of a connection: what the protocols that own a
:class:`~coaptcp.channel.Channel` (over TCP, TLS and WebSockets) offer and delegate to it.

Requests (RFC 7252 section 5.3), Ping (RFC 8323 section 5.4), Release (section 5.5) and
Abort (section 5.6), and the flow control of Twisted's streaming producers: the owner is
its transport's producer, and turns reading from it on and off for the channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from coaptcp.core.options import EMPTY_OPTIONS, Options

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.core.codes import Code
    from coaptcp.server.request import Response

__all__ = ["ChannelOwner", "OwnedChannel"]


class OwnedChannel(Protocol):
    """What a :class:`ChannelOwner` delegates to: a :class:`~coaptcp.channel.Channel`."""

    def request(
        self,
        method: Code,
        options: Options = ...,
        payload: bytes = ...,
        *,
        timeout: float | None = ...,
    ) -> Deferred[Response]:
        """Send a request (RFC 7252 section 5.3)."""

    def ping(self, *, timeout: float | None = ...) -> Deferred[float]:
        """Send a Ping (RFC 8323 section 5.4)."""

    def release(self, diagnostic: str = ...) -> Deferred[None]:
        """Release the connection (RFC 8323 section 5.5)."""

    def abort(self, diagnostic: str) -> None:
        """Abort the connection (RFC 8323 section 5.6)."""

    def pause(self) -> None:
        """The transport's buffer is full."""

    def resume(self) -> None:
        """The transport drained."""


class ChannelOwner:
    """The application's side of a connection, for protocols that own a
    :class:`~coaptcp.channel.Channel`
    (``CoapProtocol`` over TCP and TLS, the WebSocket protocols): requests, Ping,
    Release and Abort, each delegated to the channel."""

    #: The channel (the protocols narrow its type to the class they make).
    channel: OwnedChannel

    def request(
        self,
        method: Code,
        options: Options = EMPTY_OPTIONS,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a request on this connection; see :meth:`~coaptcp.channel.Channel.request`."""
        return self.channel.request(method, options, payload, timeout=timeout)

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """Send a CoAP Ping; fires with the round-trip time (RFC 8323 section 5.4)."""
        return self.channel.ping(timeout=timeout)

    def release(self, diagnostic: str = "") -> Deferred[None]:
        """Release the connection in an orderly way (RFC 8323 section 5.5)."""
        return self.channel.release(diagnostic)

    def abort(self, diagnostic: str) -> None:
        """Abort the connection (RFC 8323 section 5.6)."""
        self.channel.abort(diagnostic)

    # -- flow control: the owner is its transport's streaming producer ------------------

    transport: Any
    #: Whether pausing may stop reading from the transport now (not during a TLS
    #: handshake: Twisted's TLS layer pauses its producer while writes wait for it).
    _reading_pausable = True
    _reading_paused = False

    def pauseProducing(self) -> None:
        """The transport's write buffer is over its high-water mark (Twisted's
        ``bufferSize``): the peer reads too slowly.  The channel stops processing its
        requests and reading from it, and holds notifications."""
        self.channel.pause()

    def resumeProducing(self) -> None:
        """The peer caught up: process and read again, send the latest notifications."""
        self.channel.resume()

    def _set_reading(self, reading: bool) -> None:
        """The channel turns reading from the transport on and off (flow control)."""
        transport = self.transport
        if transport is None:
            return
        if reading:
            if self._reading_paused:
                self._reading_paused = False
                transport.resumeProducing()
        elif self._reading_pausable and not self._reading_paused:
            self._reading_paused = True
            transport.pauseProducing()

    def stopProducing(self) -> None:
        """The transport is going away; the protocol's connection-lost path cleans up."""
