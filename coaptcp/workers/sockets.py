"""The listening sockets of ``twistd coaptcp --workers N`` (see :mod:`coaptcp.workers.pool`).

The parent process binds every listener once per worker slot and hands each worker its
sockets; the workers never bind anything.  For TCP listeners the N sockets of a listener
share one address with ``SO_REUSEPORT``, so the kernel spreads new connections evenly over
the workers (a single shared socket would let whichever worker wakes first take a whole
burst of connections).  Only ``tcp:`` and ``tcp6:`` listeners, optionally behind
``haproxy:``, can be shared; ``ssl:`` (its TLS layer is built by the endpoint), ``unix:``
(a worker's port removes the socket file when it stops) and the others are refused.

The sockets stay open in the parent for its whole life: a worker that crashes is
replaced by one that adopts the same sockets, so connections waiting in its accept queue
are not reset, and binding needs no privilege after ``twistd`` has dropped it.

A worker receives its sockets as file descriptors 3, 4, ... with ``LISTEN_FDS`` and
``LISTEN_FDNAMES`` set, the socket-activation protocol of systemd, and its listener
descriptions are rewritten to Twisted's ``systemd:`` endpoint (``haproxy:`` wrappers are
kept), so ``tcp:5683`` becomes ``systemd:domain=INET:index=0`` in worker 0.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coaptcp.core.errors import CoapTcpError

__all__ = [
    "BoundListener",
    "ListenerSpec",
    "UnsupportedListener",
    "bind_listener",
    "child_fds",
    "listen_fds_environment",
    "parse_listener",
    "worker_description",
]

#: The wrapper endpoint types a worker can rebuild around an inherited socket.
_WRAPPERS = ("haproxy",)


class UnsupportedListener(CoapTcpError, ValueError):
    """A listener description ``--workers`` cannot share (``ssl:``, ``unix:``, ...)."""


@dataclass(frozen=True)
class ListenerSpec:
    """What one listener description binds, as Twisted's endpoint parser reads it.

    :ivar description: the description as given (``haproxy:tcp:5683:interface=::1``).
    :ivar wrappers: the wrapper prefixes in front of the TCP endpoint (``haproxy``).
    :ivar interface: the address to bind (``""``: all IPv4 addresses).
    :ivar port: the TCP port (0: any free port, the same for every worker).
    :ivar backlog: the listen backlog.
    """

    description: str
    wrappers: tuple[str, ...]
    interface: str
    port: int
    backlog: int


class _Recorder:
    """A stand-in reactor that records the listen call a server endpoint makes."""

    def __init__(self) -> None:
        self.call: tuple[str, tuple[Any, ...], dict[str, Any]] | None = None

    def listenTCP(self, *args: Any, **kwargs: Any) -> None:
        self.call = ("tcp", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        # Any other way of listening (listenSSL, listenUNIX, adoptStreamPort, a plugin's) is one
        # a worker could not rebuild from an inherited socket.
        def unsupported(*args: Any, **kwargs: Any) -> None:
            raise UnsupportedListener(name)

        return unsupported


def _split_wrappers(description: str) -> tuple[tuple[str, ...], str]:
    wrappers: list[str] = []
    rest = description
    while True:
        prefix, sep, inner = rest.partition(":")
        if not sep or prefix.lower() not in _WRAPPERS:
            return tuple(wrappers), rest
        wrappers.append(prefix.lower())
        rest = inner


def parse_listener(description: str) -> ListenerSpec:
    """Read a listener description with Twisted's own parser, without binding anything.

    Raises :class:`UnsupportedListener` for endpoints other than ``tcp:`` and ``tcp6:``
    (optionally behind ``haproxy:``), and ``ValueError`` for a bad description.
    """
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Factory

    wrappers, inner = _split_wrappers(description)
    recorder = _Recorder()
    try:
        endpoint = serverFromString(recorder, inner)
        listening = endpoint.listen(Factory())
    except UnsupportedListener:
        raise
    except Exception as error:
        raise ValueError(str(error)) from error
    failure: list[Any] = []
    listening.addErrback(failure.append)
    if failure:
        if failure[0].check(UnsupportedListener):
            raise UnsupportedListener(description)
        raise ValueError(failure[0].getErrorMessage())
    if recorder.call is None:
        raise UnsupportedListener(description)
    _, args, kwargs = recorder.call
    port = args[0]
    backlog = kwargs.get("backlog", args[2] if len(args) > 2 else 50)
    interface = kwargs.get("interface", args[3] if len(args) > 3 else "")
    return ListenerSpec(description, wrappers, str(interface), int(port), int(backlog))


@dataclass
class BoundListener:
    """The sockets bound for one listener, one per worker slot."""

    spec: ListenerSpec
    family: int
    sockets: list[socket.socket] = field(default_factory=list)

    def socket_for(self, worker: int) -> socket.socket:
        """The socket worker number ``worker`` listens on."""
        return self.sockets[worker]

    @property
    def domain(self) -> str:
        """The address family as the ``systemd:`` endpoint names it (INET or INET6)."""
        return "INET6" if self.family == socket.AF_INET6 else "INET"

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (useful with ``tcp:0``)."""
        if not self.sockets:
            return None
        port: int = self.sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        """Close the parent's copies of the sockets."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def _is_ipv6(interface: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, interface.split("%", 1)[0])
    except (OSError, ValueError):
        return False
    return True


def bind_listener(spec: ListenerSpec, workers: int) -> BoundListener:
    """Bind ``workers`` listening sockets for ``spec`` on one address with SO_REUSEPORT.

    Raises ``OSError`` when the address cannot be bound (in use, no permission).
    """
    family = socket.AF_INET6 if _is_ipv6(spec.interface) else socket.AF_INET
    if family == socket.AF_INET6:
        address = socket.getaddrinfo(spec.interface or "::", spec.port, family)[0][4]
    else:
        address = (spec.interface or "0.0.0.0", spec.port)
    bound = BoundListener(spec, family)
    try:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            bound.sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            # With port 0 the first socket gets a free port; the others join it.
            address = (address[0], sock.getsockname()[1], *address[2:])
            sock.listen(spec.backlog)
            sock.setblocking(False)
    except BaseException:
        bound.close()
        raise
    return bound


def worker_description(spec: ListenerSpec, index: int, family_domain: str) -> str:
    """The description a worker listens on: its ``index``-th inherited socket, inside the
    same wrappers (``haproxy:systemd:domain=INET:index=0``)."""
    inner = f"systemd:domain={family_domain}:index={index}"
    return ":".join([*spec.wrappers, inner])


def listen_fds_environment(count: int) -> dict[str, str]:
    """``LISTEN_FDS`` and ``LISTEN_FDNAMES`` for ``count`` sockets at fds 3, 4, ...

    ``LISTEN_PID`` is set by the worker itself (:mod:`coaptcp.workers.child`): only the
    process whose pid it names may adopt the sockets.
    """
    return {
        "LISTEN_FDS": str(count),
        "LISTEN_FDNAMES": ":".join(f"coaptcp{i}" for i in range(count)),
    }


def child_fds(listeners: Sequence[BoundListener], worker: int) -> dict[int, int]:
    """The fd map for a worker's spawn: its socket of every listener at 3, 4, ..."""
    return {3 + i: bound.socket_for(worker).fileno() for i, bound in enumerate(listeners)}
