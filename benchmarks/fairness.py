#!/usr/bin/env python3
"""Fairness under a flooding peer (issue 12 item 7): the others' throughput with and without it.

    python3 benchmarks/fairness.py                       # 3 reps x (none, ping, hello), ~1 min
    python3 benchmarks/fairness.py --floods ping --reps 5 --duration 5 --json /tmp/fair.json

It starts ``twistd -n coaptcp`` (benchmarks/attacks/attack_site.py's site, coap+tcp on a
free 127.0.0.1 port; ``--target HOST:PORT`` uses a running server instead), then for each
repetition and each mode runs loadgen with 64 connections x 16 requests in flight of
``GET /hello`` (1 s warm-up + ``--duration`` s measured):

* ``none``: the load alone;
* ``ping``: beside one more connection that sends Pings as fast as it can and reads the
  Pongs (benchmarks/attacks ``ping-flood``, in its own process);
* ``hello``: beside one connection pipelining ``GET /hello`` as fast as it can and reading
  the answers (``hello-flood``).

It reports per mode the medians of the load's requests/s, p50 and p99, its errors, the
flood's own rate, the CPU used by everything else on the machine (``other%``, noise) and
the ratio of the load's requests/s to the unflooded figure of the same run.  Issue 12's
target: >= 0.50 (the other connections keep at least half their throughput).

Server on CPU 0, loadgen and the flooder on CPU 1 (taskset; ``--no-pin`` turns it off).
Loopback only; each loadgen run is bounded by its own time limit and a subprocess
timeout, the flooder by its duration; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "attacks"))

import monitor as mon  # noqa: E402

bench = mon.bench
TARGET_RATIO = 0.5
FLOODS = {"ping": "ping-flood", "hello": "hello-flood"}


class _LoadTarget:
    """What benchmarks/run.py's run_loadgen wants to know about the server."""

    port_offset = 0
    path = "/hello"
    payload = b"Hello, world!"
    transport = "tcp"

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        return bench.tree_cpu_seconds(self.pid) if self.pid else None


def start_flood(kind: str, port: int, seconds: float, pin: int | None,
                out: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, os.path.join(HERE, "attacks", "run.py"), "--child", "--attack",
            FLOODS[kind], "--target", f"{mon.HOST}:{port}", "--sources", "127.0.0.2",
            f"--set=duration={seconds:g}", "--json-out", out]
    if pin is not None:
        argv = ["taskset", "-c", str(pin), *argv]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            preexec_fn=mon.default_signals_and_death_signal)


def one_run(args: argparse.Namespace, loadgen: str, port: int, target: _LoadTarget,
            kind: str, pin_load: int | None, workdir: str) -> dict[str, Any]:
    flood = None
    out = os.path.join(workdir, f"flood-{kind}.json")
    if kind != "none":
        flood = start_flood(kind, port, args.warmup + args.duration + 3.0, pin_load, out)
        time.sleep(1.0)  # the flood is under way before the load starts
    flood_cpu0 = bench.proc_cpu_seconds(flood.pid) if flood else None
    res = bench.run_loadgen(args, loadgen, port, target, args.conns, args.inflight, pin_load)
    if flood:
        flood_cpu1 = bench.proc_cpu_seconds(flood.pid)
        try:
            _, err = flood.communicate(timeout=args.warmup + args.duration + 60)
        except subprocess.TimeoutExpired:
            flood.kill()
            _, err = flood.communicate(timeout=5)
        try:
            with open(out) as f:
                res["flood"] = json.load(f)
        except (OSError, ValueError):
            res["flood"] = {"error": err.decode(errors="replace")[-300:]}
        if flood_cpu0 is not None and flood_cpu1 is not None:
            # the flooder is not "other" load: it is part of the experiment
            span = args.warmup + args.duration
            res["flood_cpu_pct"] = round(100 * (flood_cpu1 - flood_cpu0) / span, 1)
            if res.get("other_cpu_pct") is not None:
                res["other_cpu_pct"] = round(max(0.0, res["other_cpu_pct"]
                                                 - res["flood_cpu_pct"]), 1)
    return res


def med(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description="Fairness with one flooding peer (issue 12 item 7)")
    ap.add_argument("--floods", default="ping,hello", help="comma-separated: ping, hello")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--target", help="HOST:PORT of a running server (coap+tcp)")
    ap.add_argument("--twistd", help="twistd to run (default: the venv's)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG")
    ap.add_argument("--loadgen", help="loadgen binary (default: build benchmarks/loadgen.c)")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    floods = [f.strip() for f in args.floods.split(",") if f.strip()]
    for f in floods:
        if f not in FLOODS:
            ap.error(f"unknown flood {f!r} (ping, hello)")
    if args.reps < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("bad --reps/--duration/--warmup")
    modes = ["none", *floods]

    pin_server = pin_load = None
    if not args.no_pin and shutil.which("taskset") and {0, 1} <= os.sched_getaffinity(0):
        pin_server, pin_load = 0, 1
    loadgen = args.loadgen or bench.build_loadgen()
    server = None
    if args.target:
        host, _, port_text = args.target.rpartition(":")
        if not host.startswith("127."):
            ap.error("--target must be a loopback address")
        port = int(port_text)
        pid = mon.pid_listening_on(port)
    else:
        prefix = ["taskset", "-c", str(pin_server)] if pin_server is not None else []
        server = mon.ServerProcess(twistd=args.twistd, extra_args=args.server_arg, nofile=None,
                                   tls=False, prefix=prefix)
        target = server.start()
        port, pid = target.tcp, target.pid
    workdir = tempfile.mkdtemp(prefix="coaptcp-fairness-")
    target_info = _LoadTarget(pid)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        for rep in range(args.reps):
            for mode in modes:
                r = one_run(args, loadgen, port, target_info, mode, pin_load, workdir)
                runs[mode].append(r)
                fl = r.get("flood", {})
                mon.log(f"rep {rep + 1} {mode:>5}: rps={r.get('rps')} p50={r.get('p50_us')}us "
                        f"p99={r.get('p99_us')}us errors={r.get('errors')} "
                        f"flood={fl.get('answered_per_s', '-')}/s "
                        f"other={r.get('other_cpu_pct')}%")
    finally:
        if server:
            server.stop()
            server.remove_workdir()
    base = med(runs["none"], "rps")
    print(f"\n{args.conns} connections x {args.inflight} in flight of GET /hello, "
          f"{args.reps} x ({args.warmup:g} s warm-up + {args.duration:g} s); medians")
    print(f"{'flood':<6} {'rps':>9} {'ratio':>6} {'p50_us':>8} {'p99_us':>8} {'errors':>6} "
          f"{'flood/s':>9} {'srv%':>5} {'flood%':>6} {'other%':>6}")
    ok = True
    summary = {}
    for mode in modes:
        rs = runs[mode]
        rps = med(rs, "rps")
        ratio = rps / base if rps is not None and base else None
        flood_rate = statistics.median([r["flood"].get("answered_per_s", 0) for r in rs]) \
            if mode != "none" else None
        errors = sum(int(r.get("errors") or 0) for r in rs)
        summary[mode] = {"rps": rps, "ratio": ratio, "p50_us": med(rs, "p50_us"),
                         "p99_us": med(rs, "p99_us"), "errors": errors,
                         "flood_answered_per_s": flood_rate}
        if mode != "none":
            ok = ok and ratio is not None and ratio >= TARGET_RATIO
        print(f"{mode:<6} {_f(rps, '.0f'):>9} {_f(ratio, '.2f'):>6} "
              f"{_f(med(rs, 'p50_us'), '.0f'):>8} {_f(med(rs, 'p99_us'), '.0f'):>8} "
              f"{errors:>6} {_f(flood_rate, '.0f'):>9} {_f(med(rs, 'server_cpu_pct'), '.0f'):>5} "
              f"{_f(med(rs, 'flood_cpu_pct'), '.0f'):>6} {_f(med(rs, 'other_cpu_pct'), '.0f'):>6}")
    print(f"ratio: the load's requests/s over its unflooded figure; target >= {TARGET_RATIO:.2f}: "
          + ("met" if ok else "MISSED"))
    print("pinning: " + (f"server CPU {pin_server}, loadgen and flooder CPU {pin_load}"
                         if pin_server is not None else "none"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "machine": bench.machine_info(), "args": vars(args),
                       "summary": summary, "runs": runs}, f, indent=1, default=str)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def _f(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


if __name__ == "__main__":
    sys.exit(main())
