"""Supervision of the worker processes of ``twistd coaptcp --workers N``.

Twisted runs one reactor per process; to use several cores, N worker processes serve the
same listening sockets (:mod:`coaptcp.workers.sockets` binds them, :mod:`coaptcp.tap.workers`
builds the workers' command lines).  :class:`WorkerPool` keeps N of them running:

* a worker that exits while the pool runs (a crash, a signal, any status) is replaced
  after a delay that doubles with every exit in a row of a worker that ran less than
  ``stable_after`` seconds (``initial_delay``, twice that, four times that ... at most
  ``max_delay``); one that ran longer is replaced after ``initial_delay``;
* on stop, every worker gets SIGTERM, on which it stops listening and releases its
  connections (RFC 8323 section 5.5) as a single ``twistd coaptcp`` does; a worker still
  running after ``stop_timeout`` seconds gets SIGKILL; the stop's Deferred fires once
  all have exited.

Each worker's log (JSON lines from ``twist --log-format=json``) is relayed into this
process's log with ``coaptcp_worker`` and ``coaptcp_worker_pid`` fields, keeping each
event's level and namespace.

The pool only needs a spawn callable and a reactor for time, so the supervision logic is
tested with a fake spawner and :class:`~twisted.internet.task.Clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

__all__ = [
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_STABLE_AFTER",
    "DEFAULT_STOP_TIMEOUT",
    "Spawner",
    "WorkerPool",
    "WorkerProcessProtocol",
]

#: Seconds before a worker that exited is replaced (the first time in a row).
DEFAULT_INITIAL_DELAY = 0.5
#: The longest delay before a replacement, however often a worker keeps failing.  While a
#: worker is down, connections the kernel hashes to its sockets wait in their queue.
DEFAULT_MAX_DELAY = 10.0
#: A worker that ran this many seconds ends a run of failures (the delay starts over).
DEFAULT_STABLE_AFTER = 10.0
#: Seconds a stopping worker gets to release its connections before SIGKILL (a worker
#: waits up to 10 s for its peers after Release, then 5 s for the close).
DEFAULT_STOP_TIMEOUT = 20.0

_LEVELS = frozenset(LogLevel.iterconstants())

#: The longest log line kept from a worker; the rest of a longer line is dropped.
MAX_LOG_LINE = 1 << 20


class Spawner(Protocol):
    """Starts worker number ``index`` with ``protocol`` as its process protocol and
    returns the process transport (``pid``, ``signalProcess``)."""

    def __call__(self, index: int, protocol: WorkerProcessProtocol) -> Any: ...


def describe_exit(reason: Failure) -> str:
    """``exit status 1``, ``signal 9`` or ``exit status 0`` for a process's end."""
    value = reason.value
    signal = getattr(value, "signal", None)
    if signal is not None:
        return f"ended by signal {signal}"
    return f"exit status {getattr(value, 'exitCode', None)}"


class WorkerProcessProtocol(ProcessProtocol):
    """One worker process: relays its log lines and tells the pool when it ends."""

    def __init__(
        self,
        pool: WorkerPool,
        index: int,
        publish: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.pool = pool
        self.index = index
        self.pid: int | None = None
        self._publish = publish
        self._buffers = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def outReceived(self, data: bytes) -> None:
        self._lines(1, data)

    def errReceived(self, data: bytes) -> None:
        self._lines(2, data)

    def _lines(self, fd: int, data: bytes) -> None:
        buffered = self._buffers[fd] + data
        *lines, rest = buffered.split(b"\n")
        self._buffers[fd] = rest[-MAX_LOG_LINE:]
        for line in lines:
            self.relay(line, from_stderr=fd == 2)

    def relay(self, line: bytes, *, from_stderr: bool = False) -> None:
        """Publish one line of the worker's output as a log event of this process."""
        text = line.lstrip(b"\x1e").rstrip().decode("utf-8", "replace")
        if not text.strip():
            return
        event: dict[str, Any] | None = None
        if text.startswith("{") and not from_stderr:
            try:
                decoded = eventFromJSON(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict) and isinstance(decoded.get("log_format"), str):
                event = decoded
        if event is None:
            event = {
                "log_format": "{coaptcp_worker_line}",
                "coaptcp_worker_line": text,
                "log_level": LogLevel.warn if from_stderr else LogLevel.info,
                "log_namespace": "coaptcp.worker",
                "log_time": self.pool.reactor.seconds(),
            }
        level: LogLevel = event.get("log_level")  # type: ignore[assignment]
        if level not in _LEVELS:
            event["log_level"] = level = LogLevel.info
        # Text log files show log_system in brackets; the worker's event keeps its format
        # (and its flattened fields) untouched.
        system = event.get("log_system")
        if not system or system == "-":
            system = f"{event.get('log_namespace', '-')}#{level.name}"
        event["log_system"] = f"worker {self.index} pid {self.pid} {system}"
        event["coaptcp_worker"] = self.index
        event["coaptcp_worker_pid"] = self.pid
        event.pop("log_logger", None)
        event.pop("log_source", None)
        (self._publish or globalLogPublisher)(event)

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        for fd in (1, 2):
            if self._buffers[fd]:
                self.relay(self._buffers[fd], from_stderr=fd == 2)
                self._buffers[fd] = b""
        self.pool.worker_ended(self.index, self, reason)


@dataclass
class _Slot:
    """The state of one worker slot."""

    index: int
    process: Any = None
    protocol: WorkerProcessProtocol | None = None
    started: float = 0.0
    failures: int = 0
    restart_call: Any = None
    waiters: list[Deferred[None]] = field(default_factory=list)


class WorkerPool(Service):
    """Keeps ``count`` worker processes running; stops them all when it stops.

    :param count: the number of workers (at least 1).
    :param spawn: starts one worker (see :class:`Spawner`).
    :param reactor: the reactor for restart delays and the stop timeout.
    :param publish: where relayed worker log events go (the global log by default).
    """

    log = Logger()

    def __init__(
        self,
        count: int,
        spawn: Spawner,
        reactor: IReactorTime,
        *,
        initial_delay: float = DEFAULT_INITIAL_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        stable_after: float = DEFAULT_STABLE_AFTER,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        publish: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {count}")
        self.count = count
        self.spawn = spawn
        self.reactor = reactor
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.publish = publish
        self.slots = [_Slot(i) for i in range(count)]
        self.stopping = False
        #: How many workers were started in all (replacements included).
        self.spawned = 0

    # -- what is running ------------------------------------------------------------------

    @property
    def pids(self) -> list[int | None]:
        """The pid of each slot's worker (``None`` while a slot waits for its restart)."""
        return [
            getattr(slot.process, "pid", None) if slot.process is not None else None
            for slot in self.slots
        ]

    @property
    def alive(self) -> int:
        """How many workers are running now."""
        return sum(1 for slot in self.slots if slot.process is not None)

    # -- starting and restarting ----------------------------------------------------------

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        self.stopping = False
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.restart_call = None
        protocol = WorkerProcessProtocol(self, slot.index, self.publish)
        slot.protocol = protocol
        slot.started = self.reactor.seconds()
        try:
            slot.process = self.spawn(slot.index, protocol)
        except Exception:
            self.log.failure("Could not start worker {worker}", worker=slot.index)
            slot.process = None
            slot.protocol = None
            self._schedule_restart(slot, "could not be started")
            return
        self.spawned += 1
        protocol.pid = getattr(slot.process, "pid", None)
        self.log.info("Started worker {worker} (pid {pid})", worker=slot.index, pid=protocol.pid)

    def worker_ended(self, index: int, protocol: WorkerProcessProtocol, reason: Failure) -> None:
        """Worker ``index`` exited: replace it unless the pool is stopping."""
        slot = self.slots[index]
        if slot.protocol is not protocol:
            return  # an old process of this slot; already replaced
        slot.process = None
        slot.protocol = None
        how = describe_exit(reason)
        waiters, slot.waiters = slot.waiters, []
        if self.stopping:
            self.log.info(
                "Worker {worker} (pid {pid}) stopped: {how}",
                worker=index,
                pid=protocol.pid,
                how=how,
            )
            for waiter in waiters:
                waiter.callback(None)
            return
        if self.reactor.seconds() - slot.started >= self.stable_after:
            slot.failures = 0
        self._schedule_restart(slot, f"pid {protocol.pid} exited: {how}")

    def _schedule_restart(self, slot: _Slot, why: str) -> None:
        slot.failures += 1
        delay = min(self.max_delay, self.initial_delay * 2 ** (slot.failures - 1))
        level = LogLevel.warn if slot.failures == 1 else LogLevel.error
        self.log.emit(
            level,
            "Worker {worker} {why}; starting a new one in {delay:g} s",
            worker=slot.index,
            why=why,
            delay=delay,
        )
        slot.restart_call = self.reactor.callLater(delay, self._start, slot)

    # -- stopping -------------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """SIGTERM every worker; SIGKILL those left after ``stop_timeout`` seconds.

        Fires once every worker has exited.
        """
        super().stopService()
        self.stopping = True
        waiting: list[Deferred[None]] = []
        for slot in self.slots:
            if slot.restart_call is not None and slot.restart_call.active():
                slot.restart_call.cancel()
            slot.restart_call = None
            if slot.process is not None:
                ended: Deferred[None] = Deferred()
                slot.waiters.append(ended)
                waiting.append(ended)
                self._signal(slot, "TERM")
        if not waiting:
            return succeed(None)
        self.log.info("Stopping {count} workers", count=len(waiting))
        killer = self.reactor.callLater(self.stop_timeout, self._kill_remaining)
        done = DeferredList(waiting)

        def finished(_: object) -> None:
            if killer.active():
                killer.cancel()

        done.addCallback(finished)
        return done  # type: ignore[return-value]

    def _kill_remaining(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                self.log.warn(
                    "Worker {worker} (pid {pid}) still running after {timeout:g} s: killing it",
                    worker=slot.index,
                    pid=getattr(slot.process, "pid", None),
                    timeout=self.stop_timeout,
                )
                self._signal(slot, "KILL")

    def _signal(self, slot: _Slot, name: str) -> None:
        try:
            slot.process.signalProcess(name)
        except ProcessExitedAlready:
            pass  # its processEnded is on its way
