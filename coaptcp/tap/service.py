"""The service of ``twistd coaptcp``'s listeners: a listener that cannot bind ends the
start-up with one line; on stop, stop listening, then release every connection (RFC 8323
section 5.5).
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError

from coaptcp.tap.descriptions import listen_failure_exit

__all__ = ["CoapService", "ReleasingFactory"]


class ReleasingFactory(Protocol):
    """A factory that can release all its connections: ``CoapFactory`` (TCP and TLS) and
    ``CoapWebSocketServerFactory`` are."""

    def release_all(self, diagnostic: str = ...) -> Deferred[Any]:
        """Send Release on every open connection; fire when all are closed (section 5.5)."""
        ...


FactoryT = TypeVar("FactoryT", bound=ReleasingFactory)


class CoapService(MultiService, Generic[FactoryT]):
    """Listeners for one CoAP factory (TCP, TLS or WebSockets); on stop, stops listening,
    then sends Release on every open connection and waits for them to close (RFC 8323
    section 5.5).

    :ivar factory: the factory whose connections are released.
    """

    def __init__(self, factory: FactoryT) -> None:
        super().__init__()
        self.factory = factory

    def privilegedStartService(self) -> None:
        """Bind every listener; one that cannot (its port taken, say) ends ``twistd``
        with one line and exit status 1, not a traceback."""
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            raise listen_failure_exit(error) from None

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListenError as error:
            raise listen_failure_exit(error) from None

    def stopService(self) -> Deferred[Any]:
        stopped = maybeDeferred(super().stopService)
        stopped.addCallback(lambda _: self.factory.release_all())
        return stopped
