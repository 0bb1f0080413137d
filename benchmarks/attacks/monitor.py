"""What the attack campaign watches: the server process, its memory, and a fresh client.

* :class:`ServerProcess` starts ``twistd -n coaptcp`` from the venv on 127.0.0.1 (coap+tcp,
  coap+ws and coaps+tcp listeners on free ports, the attack site of ``attack_site.py``)
  with default signal handling, the descriptor soft limit of a default Linux login (1,024,
  which issue 12 item 3 is about) and, as a safety net, an address-space limit; and stops it.
* :class:`Sampler` reads VmRSS and the number of open descriptors of the server from
  /proc every 0.1 s and kills the server (when we started it) past an RSS cap, so that a
  run against a server that still has the defects cannot take the machine's memory.
* :class:`Prober` opens a new coap+tcp connection every 0.5 s and times CSM + ``GET
  /hello`` to 2.05 (the "new client is still served within a second" of issue 12).
* :class:`CpuMeter` says how much CPU the rest of the machine used meanwhile (``other%``,
  as benchmarks/run.py reports it): on a shared machine the latencies are noisy; the
  memory figures are not.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
HOST = "127.0.0.1"
MIB = 1024 * 1024


def _load_bench_runner() -> Any:
    """benchmarks/run.py as a module (its loadgen build, probe and /proc helpers)."""
    spec = importlib.util.spec_from_file_location("coaptcp_bench_runner",
                                                  os.path.join(BENCH, "run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench_runner()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def venv_python() -> str:
    """The project's venv interpreter (it has Twisted and coaptcp), else this one."""
    for candidate in (os.path.join(REPO, ".venv", "bin", "python"), sys.executable):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def default_twistd() -> str:
    for candidate in (os.path.join(REPO, ".venv", "bin", "twistd"),
                      os.path.join(os.path.dirname(sys.executable), "twistd")):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("twistd") or "twistd"


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pid_listening_on(port: int) -> int | None:
    """The process that listens on 127.0.0.1:``port`` (or 0.0.0.0), found through
    /proc/net/tcp and the processes' descriptors; None if not found (not ours)."""
    inodes = set()
    try:
        with open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.split(":")[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    except OSError:
        return None
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
        except OSError:
            continue
    return None


def default_signals_and_death_signal() -> None:
    """preexec_fn for our children: default handling of the usual signals, and SIGKILL
    when the campaign dies (Linux PR_SET_PDEATHSIG), so no server outlives a crash."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def write_test_certificate(directory: str) -> tuple[str, str]:
    """A throwaway server certificate and key (coaptcp.testing.certs, in the venv)."""
    code = ("import json, sys; from coaptcp.testing.certs import write_test_setup; "
            "print(json.dumps({k: str(v) for k, v in write_test_setup(sys.argv[1]).items()}))")
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([venv_python(), "-c", code, directory], capture_output=True,
                         text=True, env=env, timeout=60, check=True,
                         preexec_fn=default_signals_and_death_signal)

    paths = json.loads(out.stdout.strip().splitlines()[-1])
    return paths["server"], paths["server_key"]


@dataclass
class Target:
    """Where the attacks go: the coap+tcp port (also the prober's), coap+ws, coaps+tcp."""

    tcp: int
    ws: int | None = None
    tls: int | None = None
    pid: int | None = None
    host: str = HOST

    def args(self) -> list[str]:
        """The command-line options naming this target (for attack child processes)."""
        out = ["--target", f"{self.host}:{self.tcp}"]
        if self.ws:
            out += ["--target-ws", f"{self.host}:{self.ws}"]
        if self.tls:
            out += ["--target-tls", f"{self.host}:{self.tls}"]
        if self.pid:
            out += ["--pid", str(self.pid)]
        return out


class ServerProcess:
    """``twistd -n coaptcp`` on free 127.0.0.1 ports, serving ``attack_site.make_site``."""

    def __init__(self, *, twistd: str | None = None, extra_args: list[str] | None = None,
                 nofile: int | None = 1024, as_limit_mib: int | None = None,
                 tls: bool = True, workdir: str | None = None,
                 prefix: list[str] | None = None) -> None:
        self.twistd = twistd or default_twistd()
        self.prefix = prefix or []  # e.g. taskset -c 0
        self.extra_args = extra_args or []
        self.nofile = nofile
        self.as_limit_mib = as_limit_mib
        self.tls = tls
        self.workdir = workdir or tempfile.mkdtemp(prefix="coaptcp-attack-")
        self.logpath = os.path.join(self.workdir, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: Target | None = None
        self.argv: list[str] = []

    def _preexec(self) -> None:
        default_signals_and_death_signal()
        if self.nofile:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            soft = self.nofile if hard == resource.RLIM_INFINITY else min(self.nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if self.as_limit_mib:
            limit = self.as_limit_mib * MIB
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def start(self, ready_timeout: float = 30.0) -> Target:
        ports = [bench.free_port() for _ in range(3)]
        while len(set(ports)) < 3:
            ports = [bench.free_port() for _ in range(3)]
        tcp, ws, tls = ports
        argv = [*self.prefix, self.twistd, "-n", "--pidfile=", f"--logfile={self.logpath}",
                "coaptcp",
                "--tcp", f"tcp:{tcp}:interface={HOST}", "--ws", f"tcp:{ws}:interface={HOST}",
                "--resource", "attack_site.make_site"]
        if self.tls:
            cert, key = write_test_certificate(os.path.join(self.workdir, "certs"))
            argv += ["--tls", f"tcp:{tls}:interface={HOST}", "--certificate", cert,
                     "--private-key", key]
        argv += self.extra_args
        self.argv = argv
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([REPO, HERE] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        log("server: " + " ".join(argv))
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     preexec_fn=self._preexec, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        last = "not started"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                code, _ = bench.coap_request(tcp, 1, "/hello", timeout=2.0)
                if code == 0x45:
                    with socket.create_connection((HOST, ws), timeout=1.0):
                        pass
                    self.target = Target(tcp, ws, tls if self.tls else None, self.proc.pid)
                    return self.target
                last = f"GET /hello answered {bench.code_str(code)}"
            except (OSError, TimeoutError, ConnectionError) as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {ready_timeout:.0f}s ({last}):\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL past 15 s; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        return self.proc.returncode

    def remove_workdir(self) -> None:
        """Delete the log and the throwaway certificate (the server must be stopped)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_summary(self) -> dict[str, Any]:
        """Counts of what matters in the server's log: tracebacks, MemoryError, limits."""
        text = self.log_text()
        lines = text.splitlines()
        return {
            "lines": len(lines),
            "tracebacks": text.count("Traceback (most recent call last)"),
            "memory_errors": text.count("MemoryError"),
            "warnings": [line.split("] ", 1)[-1][:200] for line in lines
                         if "Refusing" in line or "limit" in line.lower()][:8],
        }


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int | None


class Sampler(threading.Thread):
    """VmRSS and descriptor count of ``pid`` every ``interval`` s until stopped; past
    ``cap_mib`` it calls ``on_cap`` once (the runner kills the server it started)."""

    def __init__(self, pid: int, interval: float = 0.1, cap_mib: float | None = None,
                 on_cap: Any = None) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.interval = interval
        self.cap_kib = cap_mib * 1024 if cap_mib else None
        self.on_cap = on_cap
        self.samples: list[Sample] = []
        self.capped_at: float | None = None
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()
        self.marks: dict[str, float] = {}

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = rss_kib(self.pid)
            if rss is None:
                break
            now = time.monotonic() - self.t0
            self.samples.append(Sample(now, rss, fd_count(self.pid)))
            if self.cap_kib and rss > self.cap_kib and self.capped_at is None:
                self.capped_at = now
                if self.on_cap:
                    self.on_cap()
            self._stop_event.wait(self.interval)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.t0

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def now_kib(self) -> int | None:
        return rss_kib(self.pid)

    def summary(self, baseline_kib: int) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        peak = max(self.samples, key=lambda s: s.rss_kib)
        last = self.samples[-1]
        fds = [s.fds for s in self.samples if s.fds is not None]
        return {
            "samples": len(self.samples),
            "baseline_mib": round(baseline_kib / 1024, 1),
            "peak_mib": round(peak.rss_kib / 1024, 1),
            "peak_delta_mib": round((peak.rss_kib - baseline_kib) / 1024, 1),
            "peak_at_s": round(peak.t, 1),
            "held_delta_mib": round((last.rss_kib - baseline_kib) / 1024, 1),
            "held_at_s": round(last.t, 1),
            "peak_fds": max(fds) if fds else None,
            "capped_at_s": None if self.capped_at is None else round(self.capped_at, 1),
        }

    def delta_at(self, t: float, baseline_kib: int) -> float | None:
        """ΔRSS (MiB) of the last sample at or before ``t`` s."""
        before = [s for s in self.samples if s.t <= t]
        return round((before[-1].rss_kib - baseline_kib) / 1024, 1) if before else None


@dataclass
class ProbeResult:
    t: float
    latency: float | None  # None: failed
    error: str | None
    waited: float = 0.0  # until the answer or the failure


class Prober(threading.Thread):
    """A new coap+tcp connection every ``interval`` s: CSM, ``GET /hello``, 2.05; timed."""

    def __init__(self, port: int, interval: float = 0.5, timeout: float = 30.0,
                 host: str = HOST) -> None:
        super().__init__(daemon=True, name="fresh-client-prober")
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.host = host
        self.results: list[ProbeResult] = []
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            start = time.monotonic()
            latency, error = None, None
            try:
                code, payload = bench.coap_request(self.port, 1, "/hello", timeout=self.timeout)
                if code == 0x45 and payload == b"Hello, world!":
                    latency = time.monotonic() - start
                else:
                    error = f"answered {bench.code_str(code)}"
            except (OSError, TimeoutError, ConnectionError) as e:
                error = f"{type(e).__name__}: {e}"[:120]
            self.results.append(ProbeResult(start - self.t0, latency, error,
                                            time.monotonic() - start))
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(self.timeout + 5)

    def summary(self, limit_s: float = 1.0) -> dict[str, Any]:
        ok = [r.latency for r in self.results if r.latency is not None]
        errors = [r for r in self.results if r.error]
        slow = [r for r in self.results if r.latency is not None and r.latency > limit_s]
        worst = max(self.results, key=lambda r: r.latency or 0.0, default=None)
        longest = max(self.results, key=lambda r: r.waited, default=None)
        return {
            "probes": len(self.results),
            "failed": len(errors),
            "first_errors": sorted({f"{r.error}" for r in errors})[:3],
            "first_failure_at_s": round(errors[0].t, 1) if errors else None,
            "over_limit": len(slow),
            "p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "max_ms": round(max(ok) * 1000, 1) if ok else None,
            "max_at_s": round(worst.t, 1) if worst and worst.latency else None,
            "longest_wait_ms": round(longest.waited * 1000, 1) if longest else None,
            "longest_wait_at_s": round(longest.t, 1) if longest else None,
            "served_within_limit": bool(self.results) and not errors and not slow,
        }


@dataclass
class CpuMeter:
    """CPU used by the server, by us (and our children) and by everything else."""

    server_pid: int | None
    t0: float = field(default_factory=time.monotonic)
    sys0: Any = None
    srv0: float | None = None
    own0: float = 0.0

    def __post_init__(self) -> None:
        self.sys0 = bench.system_cpu_seconds()
        self.srv0 = bench.tree_cpu_seconds(self.server_pid) if self.server_pid else None
        self.own0 = _own_cpu()

    def summary(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        sys1 = bench.system_cpu_seconds()
        srv1 = bench.tree_cpu_seconds(self.server_pid) if self.server_pid else None
        own = _own_cpu() - self.own0
        out: dict[str, Any] = {"wall_s": round(wall, 1), "attacker_cpu_pct": round(
            100 * own / wall, 1) if wall else None}
        if srv1 is not None and self.srv0 is not None and wall > 0:
            out["server_cpu_pct"] = round(100 * (srv1 - self.srv0) / wall, 1)
            if sys1 is not None and self.sys0 is not None:
                other = (sys1[0] - self.sys0[0]) - (srv1 - self.srv0) - own
                out["other_cpu_pct"] = round(max(0.0, 100 * other / wall), 1)
        return out


def _own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total
