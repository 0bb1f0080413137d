"""The observations of one CoAP-over-UDP client address (RFC 7641 over RFC 7252).

Over TCP a connection holds its observations; over UDP there is no connection, so each
client address (IP and port) gets a :class:`UdpPeerObservations` the first time it
registers.  It plays the part the Channel plays on a stream: the resources call
:meth:`~UdpPeerObservations.notify`, which renders the registering GET again and hands the
notification to the message layer (NON by default, CON at least once a day, RFC 7641
section 4.5).  An observation ends when the client deregisters (GET with Observe=1, or a
Reset to a notification, section 3.6), when a CON notification is not acknowledged, or
when a notification is an error (section 3.2).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from twisted.python.failure import Failure

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.udp.messaging import UdpEndpoint
from coaptcp.server import Request, Response, Site
from coaptcp.server.observe import (
    ObservableResource,
    ObservationRegistry,
    Observer,
    mark_notification,
)

__all__ = ["DEFAULT_MAX_OBSERVATIONS_PER_PEER", "ObservationOwner", "UdpPeerObservations"]

#: Observations one client address may hold (RFC 7641 section 4.1 lets a server decline).
DEFAULT_MAX_OBSERVATIONS_PER_PEER = 64


class ObservationOwner(Protocol):
    """What :class:`UdpPeerObservations` needs of the socket's protocol
    (:class:`~coaptcp.transport.udp.CoapDatagramProtocol` provides it)."""

    site: Site | None
    stopped: bool
    endpoint: UdpEndpoint
    log: Any

    def make_request(
        self, message: Message, peer: Hashable, registry: UdpPeerObservations | None
    ) -> Request: ...

    def log_limit(self, limit: str, diagnostic: str) -> None: ...

    def keep_peer(self, peer: Hashable, registry: UdpPeerObservations) -> None: ...

    def forget_peer(self, peer: Hashable, registry: UdpPeerObservations) -> None: ...

    def send_notification(
        self, peer: Hashable, registration: Message, response: Response
    ) -> None: ...


class UdpPeerObservations(ObservationRegistry):
    """The observations registered from one client address.

    :param owner: the socket's protocol, which renders, sends and forgets.
    :param peer: the client's ``(host, port)``.
    """

    __slots__ = ("_observers", "limit", "owner", "peer")

    def __init__(
        self,
        owner: ObservationOwner,
        peer: Hashable,
        limit: int = DEFAULT_MAX_OBSERVATIONS_PER_PEER,
    ) -> None:
        self.owner = owner
        self.peer = peer
        self.limit = limit
        self._observers: dict[bytes, Observer] = {}

    def __len__(self) -> int:
        return len(self._observers)

    # -- what observe_request and Observer ask of a connection -----------------------------

    def make_request(self, message: Message) -> Request:
        """A :class:`Request` for ``message`` as received from this address."""
        return self.owner.make_request(message, self.peer, self)

    def add_observation(self, resource: ObservableResource, request: Request) -> bool:
        """Register ``request`` as an observer of ``resource``; false when declined."""
        if self.owner.stopped:
            return False  # an async render finished after the socket closed
        token = request.token
        existing = self._observers.get(token)
        if existing is not None:
            existing.resource.remove_observer(self, token)
        elif len(self._observers) >= self.limit:
            self.owner.log_limit(
                "observations per address",
                f"{self.peer} holds {len(self._observers)} observations already",
            )
            return False
        observer = resource.add_observer(self, request.message)
        if observer is None:
            self._observers.pop(token, None)
            return False
        self._observers[token] = observer
        self.owner.keep_peer(self.peer, self)
        return True

    def remove_observation(self, resource: ObservableResource, token: bytes) -> None:
        """Deregister the observation with ``token`` (RFC 7641 section 3.6)."""
        self.forget(token)
        self.owner.endpoint.end_observation(self.peer, token)

    def forget(self, token: bytes) -> None:
        """Drop the observation with ``token`` here and at its resource (the message layer
        knows already: it reported the Reset or the failed CON)."""
        observer = self._observers.pop(token, None)
        if observer is not None:
            observer.resource.remove_observer(self, token)
        if not self._observers:
            self.owner.forget_peer(self.peer, self)

    def forget_all(self) -> None:
        """Drop every observation of this address (the socket is closing)."""
        observers, self._observers = self._observers, {}
        for token, observer in observers.items():
            observer.resource.remove_observer(self, token)

    def notify(self, observer: Observer) -> None:
        """Render the registering GET again and send the result (RFC 7641 section 4.2)."""
        if self._observers.get(observer.token) is not observer:
            return
        if observer.rendering:
            observer.stale = True  # sent once the render under way is out
            return
        observer.stale = False
        observer.rendering = True
        site = self.owner.site
        assert site is not None  # nothing registers on a socket without a Site
        result = site.render_resource(observer.resource, observer.new_request())
        if isinstance(result, Response):
            self._send(result, observer)
        else:
            result.addCallbacks(self._send, self._failed, callbackArgs=(observer,),
                                errbackArgs=(observer,))

    def _failed(self, failure: Failure, observer: Observer) -> None:
        self.owner.log.failure("Rendering a notification failed", failure)
        self._send(Response(Code.INTERNAL_SERVER_ERROR), observer)

    def _send(self, response: Response, observer: Observer) -> None:
        observer.rendering = False
        if self._observers.get(observer.token) is not observer:
            return
        ending = not response.code.is_successful
        if ending:
            self.forget(observer.token)  # an error ends it (RFC 7641 section 3.2)
        else:
            mark_notification(response, observer.resource)
        # The message layer ends its side once an error notification is delivered.
        self.owner.send_notification(self.peer, observer.message, response)
        if not ending and observer.stale:
            self.notify(observer)
