"""``twistd coaptcp --workers N``: the option, the workers' command line, the listener
parsing and the supervision of worker processes, all in memory (a fake spawner and a
:class:`~twisted.internet.task.Clock`; no process, no socket, no real time)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, eventAsJSON, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure

from coaptcp.tap.plugin import CoapService, Options, makeService
from coaptcp.tap.workers import WorkerPoolService, worker_arguments
from coaptcp.workers import child as workerchild
from coaptcp.workers.pool import WorkerPool, WorkerProcessProtocol
from coaptcp.workers.sockets import (
    ListenerSpec,
    UnsupportedListener,
    listen_fds_environment,
    parse_listener,
    worker_description,
)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


# -- the option ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "2.5", "257"])
def test_bad_worker_counts_are_usage_errors(value):
    with pytest.raises(usage.UsageError, match="--workers must be"):
        parse("--workers", value, "--tcp", "tcp:5683")


def test_workers_is_parsed_with_its_listeners():
    options = parse("--workers", "3", "--tcp", "haproxy:tcp:0:interface=127.0.0.1:backlog=9")
    assert options["workers"] == 3
    ((option, spec),) = options["worker-listeners"]
    assert option == "tcp"
    assert spec == ListenerSpec(
        "haproxy:tcp:0:interface=127.0.0.1:backlog=9", ("haproxy",), "127.0.0.1", 0, 9
    )


def test_without_workers_the_service_serves_in_this_process():
    options = parse("--tcp", "tcp:0:interface=127.0.0.1")
    assert options["workers"] is None
    assert isinstance(makeService(options), CoapService)


def test_with_workers_the_service_is_the_pool_and_binds_nothing_yet():
    options = parse("--workers", "2", "--tcp", "tcp:0:interface=127.0.0.1")
    service = makeService(options)
    assert isinstance(service, WorkerPoolService)
    assert service.count == 2 and service.bound == [] and service.pool is None


@pytest.mark.parametrize("description", ["unix:/tmp/coaptcp-test.sock", "unix:@abstract"])
def test_listeners_workers_cannot_share_are_usage_errors(description):
    with pytest.raises(usage.UsageError, match="with --workers, listeners must be tcp: or tcp6:"):
        parse("--workers", "2", "--tcp", description)


def test_a_websocket_listener_is_shared_too():
    options = parse("--workers", "2", "--tcp", "tcp:5683", "--ws", "tcp:8080:interface=\\:\\:1")
    assert [(o, s.interface, s.port) for o, s in options["worker-listeners"]] == [
        ("tcp", "", 5683),
        ("ws", "::1", 8080),
    ]


# -- the workers' command line ---------------------------------------------------------------


def test_worker_arguments_keep_every_option_but_workers_and_listeners():
    options = parse(
        "--workers=2",
        "--tcp",
        "tcp:5683:interface=127.0.0.1",
        "--max-message-size",
        "2048",
        "--lenient-csm",
        "-r",
        "coaptcp.tap.demo.make_demo_site",
        "--ws",
        "haproxy:tcp:8080",
        "--idle-timeout=60",
    )
    listeners = [(option, spec, "INET") for option, spec in options["worker-listeners"]]
    assert worker_arguments(options, listeners) == [
        "--max-message-size=2048",
        "--lenient-csm",
        "-r",
        "coaptcp.tap.demo.make_demo_site",
        "--idle-timeout=60",
        "--tcp",
        "systemd:domain=INET:index=0",
        "--ws",
        "haproxy:systemd:domain=INET:index=1",
    ]


def test_worker_arguments_expand_abbreviated_options():
    options = parse("--work", "2", "--max-m", "4096", "--tcp", "tcp:5683")
    listeners = [(o, s, "INET6") for o, s in options["worker-listeners"]]
    assert worker_arguments(options, listeners) == [
        "--max-message-size=4096",
        "--tcp",
        "systemd:domain=INET6:index=0",
    ]


def test_worker_arguments_parse_as_a_plain_coaptcp_command_line():
    """What a worker is given is valid ``coaptcp`` input (its listeners aside)."""
    options = parse("--workers", "2", "--keepalive", "30", "--tcp", "tcp:5683")
    arguments = worker_arguments(options, [])
    worker = parse(*arguments, "--tcp", "tcp:5683")
    assert worker["workers"] is None
    assert worker["limits"].keepalive_interval == 30


# -- listener descriptions -------------------------------------------------------------------


def test_parse_listener_reads_twisteds_own_defaults():
    assert parse_listener("tcp:5683") == ListenerSpec("tcp:5683", (), "", 5683, 50)
    assert parse_listener("tcp6:5684:interface=\\:\\:1") == ListenerSpec(
        "tcp6:5684:interface=\\:\\:1", (), "::1", 5684, 50
    )
    spec = parse_listener("haproxy:haproxy:tcp:1:backlog=3")
    assert (spec.wrappers, spec.port, spec.backlog) == (("haproxy", "haproxy"), 1, 3)


def test_parse_listener_refuses_what_it_cannot_share():
    with pytest.raises(UnsupportedListener):
        parse_listener("unix:/tmp/x.sock")
    with pytest.raises(ValueError):
        parse_listener("tcp:notaport")
    with pytest.raises(ValueError):
        parse_listener("nosuchendpoint:1")


def test_worker_description_and_environment():
    spec = parse_listener("haproxy:tcp:5683")
    assert worker_description(spec, 2, "INET6") == "haproxy:systemd:domain=INET6:index=2"
    assert listen_fds_environment(3) == {
        "LISTEN_FDS": "3",
        "LISTEN_FDNAMES": "coaptcp0:coaptcp1:coaptcp2",
    }


# -- supervision -----------------------------------------------------------------------------


class FakeProcess:
    """What spawnProcess returns, as far as the pool uses it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.exited = False

    def signalProcess(self, name: str) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(name)


class FakeSpawner:
    def __init__(self) -> None:
        self.started: list[tuple[int, WorkerProcessProtocol, FakeProcess]] = []
        self.fail_next = 0

    def __call__(self, index: int, protocol: WorkerProcessProtocol) -> FakeProcess:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("fork failed")
        process = FakeProcess(1000 + len(self.started))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        self.started.append((index, protocol, process))
        return process

    def latest(self, index: int) -> tuple[WorkerProcessProtocol, FakeProcess]:
        for i, protocol, process in reversed(self.started):
            if i == index:
                return protocol, process
        raise AssertionError(f"worker {index} never started")


def end(protocol: WorkerProcessProtocol, process: FakeProcess, code: int = 1) -> None:
    process.exited = True
    reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
    protocol.processEnded(Failure(reason))


def make_pool(count: int = 2, **kwargs: Any) -> tuple[WorkerPool, FakeSpawner, Clock, list]:
    spawner, clock, events = FakeSpawner(), Clock(), []
    pool = WorkerPool(count, spawner, clock, publish=events.append, **kwargs)
    return pool, spawner, clock, events


def test_pool_starts_every_worker():
    pool, spawner, _, _ = make_pool(3)
    pool.startService()
    assert [index for index, _, _ in spawner.started] == [0, 1, 2]
    assert pool.pids == [1000, 1001, 1002] and pool.alive == 3


def test_pool_needs_a_worker():
    with pytest.raises(ValueError):
        WorkerPool(0, FakeSpawner(), Clock())


def test_a_crashed_worker_is_replaced_after_the_initial_delay():
    pool, spawner, clock, _ = make_pool(2, initial_delay=0.5)
    pool.startService()
    protocol, process = spawner.latest(1)
    with capturedLogs() as logs:
        end(protocol, process, code=3)
    assert pool.pids == [1000, None] and pool.alive == 1
    assert any(
        e["log_level"] == LogLevel.warn
        and "Worker 1 pid 1001 exited: exit status 3; starting a new one in 0.5 s" == formatEvent(e)
        for e in logs
    )
    clock.advance(0.4)
    assert len(spawner.started) == 2
    clock.advance(0.1)
    assert len(spawner.started) == 3 and pool.pids == [1000, 1002]
    assert spawner.started[-1][0] == 1


def test_a_worker_killed_by_a_signal_is_replaced_too():
    pool, spawner, clock, _ = make_pool(1)
    pool.startService()
    protocol, process = spawner.latest(0)
    process.exited = True
    with capturedLogs() as logs:
        protocol.processEnded(Failure(ProcessTerminated(signal=9)))
    assert any("ended by signal 9" in formatEvent(e) for e in logs)
    clock.advance(pool.initial_delay)
    assert pool.pids == [1001]


def test_restart_delay_doubles_for_workers_that_keep_failing_up_to_the_cap():
    pool, spawner, clock, _ = make_pool(1, initial_delay=0.5, max_delay=5, stable_after=10)
    pool.startService()
    delays = []
    for _ in range(6):
        end(*spawner.latest(0))
        before = len(spawner.started)
        waited = 0.0
        while len(spawner.started) == before:
            clock.advance(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_worker_that_ran_long_enough_resets_the_delay():
    pool, spawner, clock, _ = make_pool(1, initial_delay=0.5, stable_after=10)
    pool.startService()
    for _ in range(3):  # delays 0.5, 1, 2
        end(*spawner.latest(0))
        clock.advance(2)
    assert len(spawner.started) == 4
    clock.advance(10)  # the fourth one runs for 10 s
    end(*spawner.latest(0))
    clock.advance(0.5)
    assert len(spawner.started) == 5


def test_a_worker_that_cannot_be_started_is_retried_with_backoff():
    pool, spawner, clock, _ = make_pool(1, initial_delay=1)
    spawner.fail_next = 2
    with capturedLogs() as logs:
        pool.startService()
        assert pool.pids == [None]
        clock.advance(1)  # second attempt fails too
        assert pool.pids == [None]
        clock.advance(2)
    assert pool.pids == [1000]
    assert sum("Could not start worker 0" in formatEvent(e) for e in logs) == 2


def test_stop_terms_every_worker_and_waits_for_all():
    pool, spawner, clock, _ = make_pool(2)
    pool.startService()
    stopped: list[object] = []
    pool.stopService().addBoth(stopped.append)
    assert [p.signals for _, _, p in spawner.started] == [["TERM"], ["TERM"]]
    end(*spawner.latest(0), code=0)
    assert stopped == []
    end(*spawner.latest(1), code=0)
    assert len(stopped) == 1
    clock.advance(100)  # no restarts, no kill
    assert len(spawner.started) == 2
    assert [p.signals for _, _, p in spawner.started] == [["TERM"], ["TERM"]]


def test_stop_kills_workers_that_do_not_exit_in_time():
    pool, spawner, clock, _ = make_pool(2, stop_timeout=20)
    pool.startService()
    stopped: list[object] = []
    pool.stopService().addBoth(stopped.append)
    end(*spawner.latest(0), code=0)
    clock.advance(19.9)
    assert spawner.latest(1)[1].signals == ["TERM"]
    clock.advance(0.1)
    assert spawner.latest(1)[1].signals == ["TERM", "KILL"]
    assert spawner.latest(0)[1].signals == ["TERM"]
    assert stopped == []
    protocol, process = spawner.latest(1)
    process.exited = True
    protocol.processEnded(Failure(ProcessTerminated(signal=9)))
    assert len(stopped) == 1


def test_stop_cancels_a_pending_restart():
    pool, spawner, clock, _ = make_pool(2)
    pool.startService()
    end(*spawner.latest(0))
    stopped: list[object] = []
    pool.stopService().addBoth(stopped.append)
    end(*spawner.latest(1), code=0)
    assert len(stopped) == 1
    clock.advance(60)
    assert len(spawner.started) == 2


def test_stop_with_no_worker_running_fires_at_once():
    pool, spawner, _, _ = make_pool(1)
    pool.startService()
    end(*spawner.latest(0))
    stopped: list[object] = []
    pool.stopService().addBoth(stopped.append)
    assert stopped == [None]


def test_a_worker_that_exited_before_its_signal_is_still_awaited():
    pool, spawner, _, _ = make_pool(1)
    pool.startService()
    protocol, process = spawner.latest(0)
    process.exited = True  # gone, but its processEnded has not been seen yet
    stopped: list[object] = []
    pool.stopService().addBoth(stopped.append)
    assert stopped == []
    protocol.processEnded(Failure(ProcessDone(0)))
    assert len(stopped) == 1


def test_an_old_processes_late_end_is_ignored():
    pool, spawner, clock, _ = make_pool(1)
    pool.startService()
    old_protocol, old_process = spawner.latest(0)
    end(old_protocol, old_process)
    clock.advance(pool.initial_delay)
    assert pool.pids == [1001]
    end(old_protocol, old_process)  # a duplicate notification
    clock.advance(60)
    assert pool.pids == [1001] and len(spawner.started) == 2


# -- the workers' log ------------------------------------------------------------------------


def test_json_log_lines_are_relayed_with_their_level_and_the_worker():
    pool, spawner, _, events = make_pool(1)
    pool.startService()
    protocol, _ = spawner.latest(0)
    event = {
        "log_format": "Refusing connections: {reason}",
        "reason": "server busy",
        "log_level": LogLevel.warn,
        "log_namespace": "coaptcp.transport.tcp.CoapFactory",
        "log_time": 1.0,
    }
    line = ("\x1e" + eventAsJSON(event) + "\n").encode()
    protocol.outReceived(line[:10])
    assert events == []
    protocol.outReceived(line[10:])
    (relayed,) = events
    assert relayed["log_level"] == LogLevel.warn
    assert formatEvent(relayed) == "Refusing connections: server busy"
    assert relayed["coaptcp_worker"] == 0 and relayed["coaptcp_worker_pid"] == 1000
    assert relayed["log_system"] == "worker 0 pid 1000 coaptcp.transport.tcp.CoapFactory#warn"


def test_other_output_is_relayed_as_text_stderr_as_warnings():
    pool, spawner, _, events = make_pool(1)
    pool.startService()
    protocol, process = spawner.latest(0)
    protocol.outReceived(b"plain text\n{not json\n")
    protocol.errReceived(b"Traceback (most recent call last):\n  partial")
    assert [(formatEvent(e), e["log_level"]) for e in events] == [
        ("plain text", LogLevel.info),
        ("{not json", LogLevel.info),
        ("Traceback (most recent call last):", LogLevel.warn),
    ]
    end(protocol, process)  # the unfinished line is not lost
    assert (formatEvent(events[-1]), events[-1]["log_level"]) == ("  partial", LogLevel.warn)
    assert json.dumps(events[-1]["coaptcp_worker"]) == "0"


# -- the worker's side -----------------------------------------------------------------------


def test_a_worker_stops_itself_when_the_parents_pipe_closes(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(workerchild.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    thread = workerchild.stop_with_parent(io.BytesIO(b"anything the parent wrote"))
    thread.join(10)
    assert not thread.is_alive()
    assert sent == [(workerchild.os.getpid(), workerchild.signal.SIGTERM)]
