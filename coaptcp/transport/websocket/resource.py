"""CoAP over WebSockets under a ``twisted.web`` site (RFC 8323 sections 4.1 and 8.3).

The WebSocket endpoint shares a port with the site's other pages::

    web_root = File("/srv/www")
    websocket_resource(web_root, Site(root))
    serverFromString(reactor, "tcp:8080").listen(twisted.web.server.Site(web_root))
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource as WebResource

from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE, UploadBudget
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE
from coaptcp.server.resource import Resource, Site
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

__all__ = ["CoapWebSocketResource", "websocket_resource"]


class CoapWebSocketResource(WebSocketResource):  # type: ignore[misc]
    """A ``twisted.web`` resource that upgrades requests to CoAP over WebSockets.

    :ivar factory: the :class:`CoapWebSocketServerFactory` behind it (for ``release_all``
        on shutdown).
    """

    def __init__(self, factory: CoapWebSocketServerFactory) -> None:
        super().__init__(factory)
        self.factory = factory

    def render(self, request: Any) -> Any:
        """Hand the request's connection to a new WebSocket protocol (autobahn's doing),
        which takes over the HTTP channel's place in the connection count."""
        # autobahn's WebSocketResource.render builds the protocol and connects it to the
        # request's transport before it returns, so connectionMade sees _handover.
        factory = self.factory
        factory._handover = request.channel
        try:
            return super().render(request)
        finally:
            factory._handover = None


def websocket_resource(
    web_root: WebResource,
    coap: Site | Resource | CoapWebSocketServerFactory | None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    require_csm: bool = True,
    allowed_origins: list[str] | None = None,
    reactor: IReactorTime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    upload_budget: UploadBudget | None = None,
) -> CoapWebSocketResource:
    """Mount CoAP over WebSockets at ``/.well-known/coap`` under a ``twisted.web`` root.

    ``web_root`` is the root resource of an existing ``twisted.web.server.Site`` (a
    ``File``, a ``Resource`` with children...); its other pages keep being served on the
    same port.  ``coap`` is what the WebSocket endpoint serves: a CoAP :class:`Site` or
    root :class:`Resource` (or a ready :class:`CoapWebSocketServerFactory`).  An existing
    ``.well-known`` child of ``web_root`` is reused.  Returns the mounted resource; its
    ``factory`` attribute is the :class:`CoapWebSocketServerFactory` (RFC 8323 sections
    4.1 and 8.3).
    """
    if isinstance(coap, CoapWebSocketServerFactory):
        factory = coap
    else:
        factory = CoapWebSocketServerFactory(
            coap,
            path=None,
            max_message_size=max_message_size,
            require_csm=require_csm,
            allowed_origins=allowed_origins,
            reactor=reactor,
            limits=limits,
            max_body_size=max_body_size,
            upload_budget=upload_budget,
        )
    well_known = web_root.children.get(b".well-known")
    if well_known is None:
        well_known = WebResource()
        web_root.putChild(b".well-known", well_known)
    resource = CoapWebSocketResource(factory)
    well_known.putChild(b"coap", resource)
    return resource
