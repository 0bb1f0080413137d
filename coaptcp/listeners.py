"""The listeners ``twistd coaptcp`` makes: one service per endpoint description.

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
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceCollection

__all__ = ["DEFAULT_LISTEN_BACKLOG", "add_listener", "with_backlog"]

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


def add_listener(
    parent: IServiceCollection,
    description: str,
    factory: Any,
    reactor: Any,
    backlog: int = DEFAULT_LISTEN_BACKLOG,
) -> StreamServerEndpointService:
    """Listen on ``description`` (with :func:`with_backlog`) as a child service of
    ``parent``; a failure to listen is raised when the service starts."""
    from twisted.internet import endpoints

    endpoint = endpoints.serverFromString(reactor, with_backlog(description, backlog))
    listener = StreamServerEndpointService(endpoint, factory)
    listener._raiseSynchronously = True
    listener.setServiceParent(parent)
    return listener
