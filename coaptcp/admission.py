"""How many connections a listening factory holds, in all and per client address.

Both the coap+tcp/coaps+tcp factory (:class:`~coaptcp.protocol.CoapFactory`) and the
coap+ws/coaps+ws one (:class:`~coaptcp.websocket.CoapWebSocketServerFactory`) count
their connections here against :attr:`Limits.max_connections` and
:attr:`Limits.max_connections_per_address`; a connection over a limit is answered
with an Abort (RFC 8323 section 5.6) naming the limit, then closed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

    from .limits import Limits

__all__ = ["ConnectionAdmission", "host_of"]


def host_of(address: IAddress | None) -> str | None:
    """The IP address (``host``) of a Twisted address, or ``None`` if it has none."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


class ConnectionAdmission:
    """A mixin for factories: :meth:`admit` and :meth:`discharge` their protocols.

    The factory provides ``limits`` and calls :meth:`_init_admission` in its
    ``__init__``; each protocol has a ``channel`` whose ``peer`` is the client's
    address.  :attr:`connections` holds the protocols admitted and not yet discharged
    (for ``releaseAll``).
    """

    admission_log = Logger()
    limits: Limits
    connections: set[Any]

    def _init_admission(self) -> None:
        self.connections = set()
        self._per_address: Counter[str] = Counter()
        self._refusing = False

    def admit(self, protocol: Any) -> str | None:
        """Count a new connection; a diagnostic if it exceeds a limit (it is then aborted)."""
        self.connections.add(protocol)
        address = host_of(protocol.channel.peer) or ""
        self._per_address[address] += 1
        limits = self.limits
        refusal = None
        if len(self.connections) > limits.max_connections:
            refusal = f"server busy: more than {limits.max_connections} connections"
        elif self._per_address[address] > limits.max_connections_per_address:
            refusal = f"more than {limits.max_connections_per_address} connections from {address}"
        if refusal is not None and not self._refusing:
            self.admission_log.warn("Refusing connections: {reason}", reason=refusal)
        self._refusing = refusal is not None
        return refusal

    def discharge(self, protocol: Any) -> None:
        """Forget a closed connection (nothing happens for one never admitted)."""
        if protocol in self.connections:
            self.connections.discard(protocol)
            address = host_of(protocol.channel.peer) or ""
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
