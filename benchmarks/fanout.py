#!/usr/bin/env python3
"""Observe fan-out: one resource, 10,000 observers over 1,000 connections, one change
every 100 ms (issue 17).

    python benchmarks/fanout.py [--servers coaptcp,libcoap,aiocoap] [--conns 1000]
        [--per-conn 10] [--periods 100,1000] [--rounds 30] [--reps 3] [--baseline DIR]

``fanload.c`` (compiled here) registers the observers (GET with Observe=0, RFC 7641
section 3.1, over coap+tcp: RFC 8323 section 7), then PUTs a new state to ``/obs`` on a
connection of its own every period: each server's ``/obs`` notifies its observers on a
PUT (coaptcp: ``fanout_site.py``, ``notify()`` in ``render_PUT``; aiocoap:
``aiocoap_server.py``'s ``State``, ``updated_state()``; libcoap: ``coap-server -d``, whose
dynamic resources, created by the first PUT, notify on every PUT).  It reports the
notifications delivered per second, how many rounds reached every observer before the
next change, and the time from the PUT leaving the load generator (one loopback hop
before the server's ``notify()``) to the last notification of the round.  A 1000 ms
period shows that time without backlog; at 100 ms a server that needs longer than the
period per round falls behind and skips states (RFC 7641 section 3.4 allows it).
Servers on CPU 0, fanload on CPU 1, as ``run.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (benchmarks/run.py: servers, ports, pinning)

COAPTCP_CMD = ("{python} -m twisted --log-level=warn coaptcp {listen} "
               "--resource fanout_site.make_root --max-connections-per-address 100000 "
               "--max-connections 100000")


def build_fanload(cc: str = "cc") -> str:
    src = os.path.join(HERE, "fanload.c")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    outdir = os.path.join(tempfile.gettempdir(), "coaptcp-fanload-" + digest)
    exe = os.path.join(outdir, "fanload")
    if not os.access(exe, os.X_OK):
        os.makedirs(outdir, exist_ok=True)
        tmp = f"{exe}.{os.getpid()}"
        subprocess.run([cc, "-O2", "-Wall", "-o", tmp, src], check=True)
        os.replace(tmp, exe)
    return exe


def servers(args: argparse.Namespace) -> dict[str, object]:
    args.coaptcp_cmd = COAPTCP_CMD
    base = args.baseline
    args.baseline = None  # run.make_servers' own "base" has no fanout_site on its path
    made = run.make_servers(args, "tcp", None, None)
    args.baseline = base
    out: dict[str, object] = {k: v for k, v in made.items() if k in ("coaptcp", "libcoap",
                                                                      "aiocoap")}
    libcoap = made.get("libcoap")
    if isinstance(libcoap, run.Server):  # room for the dynamic resource /obs
        libcoap.argv = [a if a != "4" else "16" for a in libcoap.argv]
    if base:
        listen = run.COAPTCP_LISTEN["tcp"]
        cmd = COAPTCP_CMD.replace("{python}", shlex.quote(sys.executable)).replace(
            "{listen}", listen)
        out["base"] = run.Server("base", ["env", "-C", base, f"PYTHONPATH={base}:{HERE}",
                                          *shlex.split(cmd)], run.PATH, run.PAYLOAD,
                                 note=f"coaptcp from {base}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="coaptcp,libcoap,aiocoap")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--per-conn", type=int, default=10)
    ap.add_argument("--periods", type=run.parse_list, default=[100, 1000],
                    help="milliseconds between changes (default 100,1000)")
    ap.add_argument("--rounds", type=int, default=30, help="measured changes per run")
    ap.add_argument("--warmup", type=int, default=3, help="changes before those")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--baseline", metavar="DIR", help="server 'base': coaptcp from DIR")
    ap.add_argument("--libcoap-bin")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if "base" in names and not args.baseline:
        ap.error("server 'base' needs --baseline DIR")
    pin_server = pin_load = None
    if not args.no_pin and shutil.which("taskset") and {0, 1} <= os.sched_getaffinity(0):
        pin_server, pin_load = 0, 1
    exe = build_fanload()
    os.environ["PYTHONPATH"] = HERE  # fanout_site for coaptcp (run.Server prepends REPO)
    logdir = tempfile.mkdtemp(prefix="coaptcp-fanout-")
    available = servers(args)
    busy = run.machine_busy_pct()
    results: dict[tuple[str, int], dict[str, object]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        srv = available.get(name)
        if not isinstance(srv, run.Server):
            skipped[name] = str(srv or "unknown server")
            continue
        port = run.free_port(srv.also_free)
        why = srv.start(port, pin_server, logdir, 30.0)
        try:
            if why:
                skipped[name] = why
                run.log(f"[{name}] SKIPPED: {why}")
                continue
            for period in args.periods:
                runs = []
                for rep in range(args.reps):
                    argv = [exe, "-h", run.HOST, "-p", str(port), "-c", str(args.conns),
                            "-k", str(args.per_conn), "-i", str(period),
                            "-n", str(args.rounds), "-w", str(args.warmup)]
                    if pin_load is not None:
                        argv = ["taskset", "-c", str(pin_load), *argv]
                    cpu0, t0 = srv.cpu_seconds(), time.monotonic()
                    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                    cpu1, t1 = srv.cpu_seconds(), time.monotonic()
                    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
                    r = json.loads(lines[-1]) if lines else {"status": "no_output"}
                    if p.stderr.strip():
                        r["stderr"] = p.stderr[-500:]
                    if cpu0 is not None and cpu1 is not None:
                        r["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
                    runs.append(r)
                    run.log(f"[{name}] {period} ms rep {rep + 1}: "
                            f"{r.get('notifications_per_s')}/s complete "
                            f"{r.get('complete_rounds')}/{args.rounds} last p50 "
                            f"{r.get('last_p50_ms')} ms max {r.get('last_max_ms')} ms "
                            f"observers {r.get('observers')} {r.get('stderr', '')}")
                ok = [r for r in runs if r.get("status") == "ok"]

                def med(key: str, ok: list[dict[str, object]] = ok) -> float | None:
                    vals = [float(r[key]) for r in ok  # type: ignore[arg-type]
                            if isinstance(r.get(key), (int, float)) and r[key] != -1]
                    return statistics.median(vals) if vals else None

                results[(name, period)] = {
                    "rate": med("notifications_per_s"), "complete": med("complete_rounds"),
                    "p50": med("last_p50_ms"), "p90": med("last_p90_ms"),
                    "max": med("last_max_ms"), "observers": med("observers"),
                    "srv": med("server_cpu_pct"), "runs": runs,
                }
        finally:
            srv.stop()
    w = sys.stdout.write
    w(f"\nObserve fan-out: {args.conns} connections x {args.per_conn} observers of /obs, "
      f"a PUT every period; medians of {args.reps} runs of {args.rounds} changes\n")
    w(f"{'server':<8} {'period':>7} {'observers':>9} {'notif/s':>9} {'complete':>9} "
      f"{'last p50':>9} {'p90':>8} {'max':>8} {'srv%':>5}\n")
    for (name, period), m in results.items():
        w(f"{name:<8} {period:>5}ms {run.fmt(m['observers'], '.0f'):>9} "
          f"{run.fmt(m['rate'], '.0f'):>9} {run.fmt(m['complete'], '.0f'):>6}/{args.rounds:<2} "
          f"{run.fmt(m['p50'], '.1f'):>8}ms {run.fmt(m['p90'], '.1f'):>6}ms "
          f"{run.fmt(m['max'], '.1f'):>6}ms {run.fmt(m['srv'], '.0f'):>5}\n")
    w("\nratios (notifications/s: >1 is more; time to the last notification: <1 is faster)\n")
    for other in ("libcoap", "aiocoap", "base"):
        for period in args.periods:
            a, b = results.get(("coaptcp", period)), results.get((other, period))
            if not a or not b:
                continue
            rate = (a["rate"] / b["rate"]) if a["rate"] and b["rate"] else None  # type: ignore[operator]
            last = (a["p50"] / b["p50"]) if a["p50"] and b["p50"] else None  # type: ignore[operator]
            w(f"  coaptcp/{other:<8} {period:>5} ms: notifications/s {run.fmt(rate, '.2f')}, "
              f"last p50 {run.fmt(last, '.2f')}\n")
    for name, why in skipped.items():
        w(f"\nSKIPPED {name}: {why}\n")
    if busy is not None:
        w(f"\nmachine busy before the run: {busy:.0f}% of one core\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"server": k[0], "period_ms": k[1], **v} for k, v in results.items()],
                      f, indent=1)
    shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
