"""The web side of ``twistd coaptcp --ws``: the browser client and the CoAP endpoint on one port.

One ``twisted.web`` site per ``--ws`` listener serves the browser client (``coaptcp/tap/web/``:
plain HTML and a JavaScript module) at ``/`` and CoAP over WebSockets at
``/.well-known/coap`` (RFC 8323 sections 4 and 8.3).  A
:class:`~coaptcp.tap.service.CoapService` owns the listeners; when it stops, it stops
listening and then releases every open CoAP connection (RFC 8323 section 5.5).

The HTTP side is bounded as the CoAP side is (:class:`CoapWebSite`): every connection is
counted against the connection limits from the moment it is accepted, and it has
:attr:`Limits.ws_handshake_timeout` seconds from then (and from the end of each response)
to send a whole request, WebSocket handshake or not.  twisted.web's own timeout cannot do
that: it is an idle timeout (12 hours by default), which every byte of a peer that
trickles its request one byte at a time starts again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site as WebSite
from twisted.web.static import File

from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, UploadBudget
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.server.resource import Site
from coaptcp.tap.service import CoapService
from coaptcp.transport.admission import ConnectionGate
from coaptcp.transport.listeners import DEFAULT_LISTEN_BACKLOG, add_listener
from coaptcp.transport.websocket.resource import websocket_resource
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

__all__ = [
    "WEB_CLIENT_DIR",
    "CoapHTTPChannel",
    "CoapWebSite",
    "add_websocket_listeners",
    "make_web_site",
    "web_client_root",
]

#: The browser client's files (package data).
WEB_CLIENT_DIR = Path(__file__).resolve().parent / "web"

#: Module scripts must be served with a JavaScript type (browsers check it strictly).
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def web_client_root(directory: Path = WEB_CLIENT_DIR) -> File:
    """A ``twisted.web`` resource serving the browser client's files, index at ``/``."""
    root = File(str(directory))
    root.contentTypes = {**root.contentTypes, **_CONTENT_TYPES}
    root.indexNames = ["index.html"]
    return root


def _service_unavailable(diagnostic: str, retry_after: int) -> bytes:
    """An HTTP 503 response that closes the connection (RFC 9110 section 15.6.4)."""
    body = f"{diagnostic}\n".encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class CoapHTTPChannel(HTTPChannel):
    """twisted.web's HTTP/1.1 channel, counted from accept and bounded in time.

    Counted by its site's :class:`~coaptcp.transport.admission.ConnectionGate` from
    ``connectionMade``: one over a limit gets HTTP 503 and is closed, without reading
    anything.  From accept, and again from the end of each response, the peer has the
    site's ``handshake_timeout`` to send a whole request (its head and body); otherwise
    the connection is dropped.  A request for ``/.well-known/coap`` hands the connection
    (and its place in the count) to a WebSocket protocol.
    """

    site: CoapWebSite
    _deadline: IDelayedCall | None = None
    _refused = False

    def connectionMade(self) -> None:
        site = self.site
        transport = self.transport
        assert transport is not None
        refusal = site.gate.admit(self, transport.getPeer())
        if refusal is not None:
            self._refused = True
            self._start_deadline()  # bounds a close that waits for a TLS handshake
            if refusal.answer:
                retry_after = site.gate.limits.retry_after
                transport.write(_service_unavailable(refusal.diagnostic, retry_after))
                transport.loseConnection()
            else:
                transport.abortConnection()  # type: ignore[attr-defined]
            return
        super().connectionMade()
        self._start_deadline()

    def _start_deadline(self) -> None:
        timeout = self.site.handshake_timeout
        if timeout is not None and self._deadline is None:
            self._deadline = self.callLater(timeout, self._deadline_passed)

    def _stop_deadline(self) -> None:
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()

    def _deadline_passed(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None:  # handed to a WebSocket protocol meanwhile
            return
        site = self.site
        timeout = site.handshake_timeout or 0
        site.gate.handshake_timed_out(site.reactor, transport.getPeer(), timeout)
        transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._stop_deadline()  # the request is in; rendering it is not the peer's time
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if self.persistent:
            self._start_deadline()  # the next request's time starts now
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        self.site.gate.discharge(self)
        super().connectionLost(reason)


class CoapWebSite(WebSite):
    """A ``twisted.web`` site whose connections are :class:`CoapHTTPChannel` instances.

    :param gate: counts its connections (shared with the CoAP listeners of the server).
    :param handshake_timeout: seconds a connection has for each request, from accept or
        from the end of the previous response (``None``: no limit).
    """

    protocol = CoapHTTPChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        *,
        gate: ConnectionGate,
        handshake_timeout: float | None,
        reactor: IReactorTime | None = None,
    ) -> None:
        super().__init__(resource, reactor=reactor)
        self.gate = gate
        self.handshake_timeout = handshake_timeout


def make_web_site(
    coap_site: Site,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    require_csm: bool = True,
    reactor: IReactorTime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    upload_budget: UploadBudget | None = None,
    gate: ConnectionGate | None = None,
) -> tuple[CoapWebSite, CoapWebSocketServerFactory]:
    """The browser client at ``/`` and CoAP over WebSockets at ``/.well-known/coap``.

    The site and the WebSocket factory count their connections with ``gate`` (a new one
    for ``limits`` by default).
    """
    root = web_client_root()
    if gate is None:
        gate = ConnectionGate(limits)
    factory = CoapWebSocketServerFactory(
        coap_site,
        path=None,
        max_message_size=max_message_size,
        require_csm=require_csm,
        reactor=reactor,
        limits=limits,
        max_body_size=max_body_size,
        upload_budget=upload_budget,
        gate=gate,
    )
    websocket_resource(root, factory)
    web_site = CoapWebSite(
        root, gate=gate, handshake_timeout=limits.ws_handshake_timeout, reactor=reactor
    )
    return web_site, factory


def add_websocket_listeners(
    parent: MultiService,
    descriptions: Iterable[str],
    coap_site: Site,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    require_csm: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    upload_budget: UploadBudget | None = None,
    gate: ConnectionGate | None = None,
    backlog: int = DEFAULT_LISTEN_BACKLOG,
) -> CoapService[CoapWebSocketServerFactory]:
    """Listen on each endpoint description (``tcp:`` for coap+ws, ``ssl:`` for coaps+ws);
    ``gate`` counts the connections (shared with the server's other listeners). Give
    ``upload_budget`` the TCP/TLS factory's: partial Block1 uploads on every listener then
    share one server-wide budget."""
    import txaio

    # autobahn logs every handshake's options at debug level; twistd logs every level.
    txaio.set_global_log_level("info")  # type: ignore[attr-defined]
    web_site, factory = make_web_site(
        coap_site,
        max_message_size=max_message_size,
        require_csm=require_csm,
        limits=limits,
        max_body_size=max_body_size,
        upload_budget=upload_budget,
        gate=gate,
    )
    service = CoapService(factory)
    for description in descriptions:
        add_listener(service, description, web_site, factory.reactor, backlog, factory.gate)
    service.setServiceParent(parent)
    return service
