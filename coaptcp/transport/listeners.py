"""The listeners ``twistd coaptcp`` makes: one service per endpoint description.

Each listens through a :class:`GatedReactor`: whatever the endpoint (``tcp:``, ``ssl:``,
``systemd:``, behind ``haproxy:``...), the factory it listens with is a
:class:`GatedFactory`, which asks the server's
:class:`~coaptcp.transport.admission.ConnectionGate` before it builds a protocol.  Far over the
connection limit it builds none, and Twisted closes the socket at once: its descriptor
is free again for the next accept, even within one burst of accepts.

Twisted listens with a backlog of 50 unless the description says otherwise; a burst of a
few thousand connects then spends most of its time in dropped SYNs and their
retransmission (a second, then three, ...).  :func:`with_backlog` gives ``tcp:``,
``tcp6:`` and ``ssl:`` descriptions (also behind ``haproxy:``) that name no ``backlog=``
the one of ``--listen-backlog`` (:data:`DEFAULT_LISTEN_BACKLOG`; the kernel caps it at
``net.core.somaxconn``).  Other endpoints, and descriptions that give a backlog, are left
as they are.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceCollection

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress
    from twisted.internet.protocol import Protocol

    from coaptcp.transport.admission import ConnectionGate

__all__ = [
    "DEFAULT_LISTEN_BACKLOG",
    "GatedFactory",
    "GatedReactor",
    "add_listener",
    "with_backlog",
]

#: The listen backlog of the listeners whose description names none.
DEFAULT_LISTEN_BACKLOG = 1024

#: Endpoint types whose parser takes ``backlog=`` (Twisted's tcp, tcp6 and ssl).
_WITH_BACKLOG = frozenset({"tcp", "tcp6", "ssl"})
#: Wrappers in front of an endpoint description (``haproxy:tcp:5683``).
_WRAPPERS = frozenset({"haproxy"})
#: A ``backlog=`` parameter: after an unescaped colon.
_BACKLOG_GIVEN = re.compile(r"(?<!\\):\s*backlog\s*=", re.IGNORECASE)


def with_backlog(description: str, backlog: int) -> str:
    """``description`` with ``backlog=`` added if it is a TCP or TLS listener naming none."""
    inner = description
    while True:
        prefix, sep, rest = inner.partition(":")
        if not sep:
            return description
        kind = prefix.strip().lower()
        if kind not in _WRAPPERS:
            break
        inner = rest
    if kind not in _WITH_BACKLOG or _BACKLOG_GIVEN.search(inner):
        return description
    return f"{description}:backlog={backlog}"


class GatedFactory:
    """A listening factory that builds no protocol while ``gate`` turns connections away.

    Everything else is ``factory``'s (its start, stop and log prefix).  A factory that
    returns ``None`` makes Twisted's port close the accepted socket at once (RFC 8323
    gives no way to answer a connection that has no descriptor to spare).
    """

    def __init__(self, factory: Any, gate: ConnectionGate, listener: str = "") -> None:
        self.factory = factory
        self.gate = gate
        self.listener = listener

    def buildProtocol(self, addr: IAddress) -> Protocol | None:
        if self.gate.turn_away():
            return None
        protocol: Protocol | None = self.factory.buildProtocol(addr)
        if protocol is not None and self.listener:
            # Which listener accepted it, for the metrics' ``listener`` label: on the
            # protocol, and on the one a TLS layer wraps (the CoAP or HTTP protocol).
            protocol.coap_listener = self.listener  # type: ignore[attr-defined]
            inner = getattr(protocol, "wrappedProtocol", None)
            if inner is not None:
                inner.coap_listener = self.listener
        return protocol

    def doStart(self) -> None:
        self.factory.doStart()

    def doStop(self) -> None:
        self.factory.doStop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.factory, name)


class GatedReactor:
    """The reactor as endpoints see it: every factory they listen with is gated.

    TCP, UNIX and adopted (``systemd:``) ports get a :class:`GatedFactory`; ``ssl:``
    ports get Twisted's TLS wrapping inside the gate (as ``listenSSL`` does), so that a
    connection turned away costs no TLS state either.  Everything else is the reactor's.
    """

    def __init__(self, reactor: Any, gate: ConnectionGate, listener: str = "") -> None:
        self._reactor = reactor
        self._gate = gate
        self._listener = listener

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        gated = GatedFactory(factory, self._gate, self._listener)
        return self._reactor.listenTCP(port, gated, backlog, interface)

    def listenSSL(
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        tls = TLSMemoryBIOFactory(contextFactory, False, factory)
        return self.listenTCP(port, tls, backlog, interface)

    def listenUNIX(self, address: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
        gated = GatedFactory(factory, self._gate, self._listener)
        return self._reactor.listenUNIX(address, gated, *args, **kwargs)

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: Any, factory: Any) -> Any:
        gated = GatedFactory(factory, self._gate, self._listener)
        return self._reactor.adoptStreamPort(fileDescriptor, addressFamily, gated)


def add_listener(
    parent: IServiceCollection,
    description: str,
    factory: Any,
    reactor: Any,
    backlog: int = DEFAULT_LISTEN_BACKLOG,
    gate: ConnectionGate | None = None,
) -> StreamServerEndpointService:
    """Listen on ``description`` (with :func:`with_backlog`) as a child service of
    ``parent``, through a :class:`GatedReactor` when a ``gate`` is given; a failure to
    listen is raised when the service starts."""
    from twisted.internet import endpoints

    if gate is not None:
        reactor = GatedReactor(reactor, gate, description)
    endpoint = endpoints.serverFromString(reactor, with_backlog(description, backlog))
    listener = StreamServerEndpointService(endpoint, factory)
    listener._raiseSynchronously = True
    listener.setServiceParent(parent)
    return listener
