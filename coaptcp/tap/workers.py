"""``twistd coaptcp --workers N``: the option and the parent's service.

Twisted runs one reactor, so one core, per process.  With ``--workers N`` the ``twistd``
process serves nothing itself: it binds every listener (``--tcp``, ``--ws``, ``--tls``)
once per worker with ``SO_REUSEPORT`` (:mod:`coaptcp.workers.sockets`), starts N worker
processes (:mod:`coaptcp.workers.child`) that adopt those sockets and serve exactly what a
single ``twistd coaptcp`` with the same options would, and supervises them
(:class:`~coaptcp.workers.pool.WorkerPool`: a worker that exits is replaced, with backoff).
SIGTERM to the parent stops every worker gracefully: each stops listening and releases
its connections (RFC 8323 section 5.5).

Only ``tcp:`` and ``tcp6:`` listeners, optionally behind ``haproxy:``, can be shared
(see :mod:`coaptcp.workers.sockets`); state in resources (``/store`` of the demo, observed
resources) is per worker.
"""

from __future__ import annotations

import getopt
import os
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from coaptcp.channel.reactor import default_reactor
from coaptcp.transport.listeners import DEFAULT_LISTEN_BACKLOG, with_backlog
from coaptcp.workers.pool import WorkerPool, WorkerProcessProtocol
from coaptcp.workers.sockets import (
    BoundListener,
    ListenerSpec,
    UnsupportedListener,
    bind_listener,
    child_fds,
    listen_fds_environment,
    parse_listener,
    worker_description,
)

__all__ = [
    "LISTENER_OPTIONS",
    "MAX_WORKERS",
    "WORKER_OPT_PARAMETERS",
    "WorkerPoolService",
    "check_worker_options",
    "make_worker_pool",
    "worker_arguments",
]

#: The worker's first lines.  ``LISTEN_PID`` must name the worker before Twisted's endpoints
#: module is imported (it reads the systemd variables once, at import), and importing any
#: part of ``coaptcp`` imports it; so the variable is set before ``coaptcp`` is touched.
WORKER_BOOTSTRAP = (
    "import os\n"
    "if 'LISTEN_FDS' in os.environ:\n"
    "    os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "from coaptcp.workers.child import main\n"
    "main()\n"
)

#: The most workers one ``twistd coaptcp`` starts.
MAX_WORKERS = 256

#: The options that name listeners, in the order their sockets are passed to workers.
LISTENER_OPTIONS = ("tcp", "ws", "tls")

WORKER_OPT_PARAMETERS = [
    [
        "workers",
        None,
        None,
        "Serve with N worker processes sharing the listening sockets (SO_REUSEPORT; "
        "tcp: and tcp6: listeners, optionally behind haproxy:); this process supervises "
        "them. Default: serve in this process.",
    ],
]


def check_worker_options(options: usage.Options) -> None:
    """Validate ``--workers`` and the listeners it must share (a :class:`usage.UsageError`
    for anything wrong); sets ``options["workers"]`` to an int (or leaves ``None``) and
    ``options["worker-listeners"]`` to ``[(option, ListenerSpec), ...]``."""
    value = options.get("workers")
    if value is None:
        return
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--workers must be a whole number, not {value!r}")
    if not 1 <= count <= MAX_WORKERS:
        raise usage.UsageError(f"--workers must be between 1 and {MAX_WORKERS}, not {value!r}")
    options["workers"] = count
    if count > 1 and options.get("metrics"):
        # Each worker counts its own requests and would bind the metrics endpoint itself:
        # the second could not, and one scrape would see one worker.
        raise usage.UsageError(
            "--metrics cannot be combined with --workers above 1: every worker would "
            "listen on the metrics endpoint; run one process per port to scrape each"
        )
    listeners: list[tuple[str, ListenerSpec]] = []
    for option in LISTENER_OPTIONS:
        for description in options[option]:
            try:
                backlog = int(options.get("listen-backlog", DEFAULT_LISTEN_BACKLOG))
                spec = parse_listener(with_backlog(description, backlog))
                listeners.append((option, spec))
            except UnsupportedListener:
                raise usage.UsageError(
                    f"--{option} {description}: with --workers, listeners must be tcp: or "
                    "tcp6: endpoints (optionally behind haproxy:), which the workers share"
                )
            except ValueError as error:
                raise usage.UsageError(f"bad endpoint description {description!r}: {error}")
    options["worker-listeners"] = listeners


def worker_arguments(
    options: usage.Options, listeners: Sequence[tuple[str, ListenerSpec, str]]
) -> list[str]:
    """The ``coaptcp`` plugin arguments of a worker: the parent's own arguments without
    ``--workers`` and the listener options, then one listener option per entry of
    ``listeners`` (option, spec, address family) on its inherited socket."""
    argv = list(options.get("argv") or [])
    takes_value = {name[:-1] for name in options.longOpt if name.endswith("=")}
    dropped = {f"--{name}" for name in (*LISTENER_OPTIONS, "workers")}
    parsed, rest = getopt.getopt(argv, options.shortOpt, options.longOpt)
    arguments: list[str] = []
    for flag, value in parsed:
        if flag in dropped:
            continue
        if flag.startswith("--"):
            arguments.append(f"{flag}={value}" if flag[2:] in takes_value else flag)
        elif f"{flag[1]}:" in options.shortOpt:
            arguments += [flag, value]
        else:
            arguments.append(flag)
    for index, (option, spec, domain) in enumerate(listeners):
        arguments += [f"--{option}", worker_description(spec, index, domain)]
    return arguments + list(rest)


class WorkerPoolService(MultiService):
    """The parent of ``--workers N``: binds the listeners, runs a :class:`WorkerPool`.

    The sockets are bound in :meth:`privilegedStartService` (before ``twistd`` drops
    privileges) and closed after the last worker has exited.
    """

    log = Logger()

    def __init__(self, options: usage.Options, reactor: Any = None) -> None:
        super().__init__()
        reactor = default_reactor(reactor)
        self.options = options
        self.reactor = reactor
        self.count: int = options["workers"]
        self.specs: list[tuple[str, ListenerSpec]] = options["worker-listeners"]
        self.bound: list[BoundListener] = []
        self.arguments: list[str] = []
        self.pool: WorkerPool | None = None

    def privilegedStartService(self) -> None:
        """Bind every listener once per worker."""
        if not self.bound:
            try:
                for _, spec in self.specs:
                    self.bound.append(bind_listener(spec, self.count))
            except OSError:
                self._close_sockets()
                raise
            listeners = [
                (option, spec, bound.domain)
                for (option, spec), bound in zip(self.specs, self.bound, strict=True)
            ]
            self.arguments = worker_arguments(self.options, listeners)
            self.pool = WorkerPool(self.count, self.spawn, self.reactor)
            self.pool.setServiceParent(self)
            for bound in self.bound:
                self.log.info(
                    "Listening on {description} (port {port}) for {count} workers",
                    description=bound.spec.description,
                    port=bound.port,
                    count=self.count,
                )
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.bound:
            self.privilegedStartService()
        super().startService()

    def spawn(self, index: int, protocol: WorkerProcessProtocol) -> Any:
        """Start worker ``index`` with its sockets at file descriptors 3, 4, ..."""
        argv = [
            sys.executable,
            "-c",
            WORKER_BOOTSTRAP,
            "--log-format=json",
            "coaptcp",
            *self.arguments,
        ]
        env = {
            **os.environ,
            **listen_fds_environment(len(self.bound)),
            "COAPTCP_WORKER": str(index),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("LISTEN_PID", None)
        fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        fds.update(child_fds(self.bound, index))
        return self.reactor.spawnProcess(protocol, sys.executable, argv, env=env, childFDs=fds)

    def stopService(self) -> Deferred[Any]:
        """Stop the workers (gracefully), then close the sockets."""
        stopped = maybeDeferred(super().stopService)
        stopped.addBoth(self._closed)
        return stopped

    def _closed(self, result: Any) -> Any:
        self._close_sockets()
        return result

    def _close_sockets(self) -> None:
        for bound in self.bound:
            bound.close()
        self.bound = []

    @property
    def ports(self) -> list[int | None]:
        """The TCP port of each listener (``tcp:0`` resolved)."""
        return [bound.port for bound in self.bound]


def make_worker_pool(options: usage.Options) -> WorkerPoolService:
    """The service ``makeService`` returns for ``--workers N``."""
    return WorkerPoolService(options)
