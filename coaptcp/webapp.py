"""The web side of ``twistd coaptcp --ws``: the browser client and the CoAP endpoint on one port.

One ``twisted.web`` site per ``--ws`` listener serves the browser client (``coaptcp/web/``:
plain HTML and a JavaScript module) at ``/`` and CoAP over WebSockets at
``/.well-known/coap`` (RFC 8323 sections 4 and 8.3).  :class:`WebSocketService` owns the
listeners; when it stops, it stops listening and then releases every open CoAP connection
(RFC 8323 section 5.5), as :class:`~coaptcp.tap.CoapService` does for TCP.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Site as WebSite
from twisted.web.static import File

from .core.blockwise import DEFAULT_MAX_BODY_SIZE, UploadBudget
from .core.connection import DEFAULT_MAX_MESSAGE_SIZE
from .limits import DEFAULT_LIMITS, Limits
from .resource import Site
from .websocket import CoapWebSocketServerFactory, webSocketResource

__all__ = [
    "WEB_CLIENT_DIR",
    "WebSocketService",
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


def make_web_site(
    coap_site: Site,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    require_csm: bool = True,
    reactor: IReactorTime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    upload_budget: UploadBudget | None = None,
) -> tuple[WebSite, CoapWebSocketServerFactory]:
    """The browser client at ``/`` and CoAP over WebSockets at ``/.well-known/coap``."""
    root = web_client_root()
    mounted = webSocketResource(
        root,
        coap_site,
        max_message_size=max_message_size,
        require_csm=require_csm,
        reactor=reactor,
        limits=limits,
        max_body_size=max_body_size,
        upload_budget=upload_budget,
    )
    web_site = WebSite(root)
    return web_site, mounted.factory


class WebSocketService(MultiService):
    """The ``--ws`` listeners; on stop, stops listening, then sends Release on every open
    CoAP-over-WebSockets connection and waits for them to close (RFC 8323 section 5.5).
    """

    def __init__(self, factory: CoapWebSocketServerFactory) -> None:
        super().__init__()
        self.factory = factory

    def stopService(self) -> Deferred[Any]:
        stopped = maybeDeferred(super().stopService)
        stopped.addCallback(lambda _: self.factory.releaseAll())
        return stopped


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
) -> WebSocketService:
    """Listen on each endpoint description (``tcp:`` for coap+ws, ``ssl:`` for coaps+ws).

    Give ``upload_budget`` the TCP/TLS factory's: partial Block1 uploads on every
    listener then share one server-wide budget.
    """
    import txaio
    from twisted.internet import endpoints, reactor

    # autobahn logs every handshake's options at debug level; twistd logs every level.
    txaio.set_global_log_level("info")  # type: ignore[attr-defined]
    web_site, factory = make_web_site(
        coap_site,
        max_message_size=max_message_size,
        require_csm=require_csm,
        limits=limits,
        max_body_size=max_body_size,
        upload_budget=upload_budget,
    )
    service = WebSocketService(factory)
    for description in descriptions:
        endpoint = endpoints.serverFromString(reactor, description)
        listener = StreamServerEndpointService(endpoint, web_site)
        listener._raiseSynchronously = True
        listener.setServiceParent(service)
    service.setServiceParent(parent)
    return service
