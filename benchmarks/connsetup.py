#!/usr/bin/env python3
"""Connection set-up rate: new connections per second, each one TCP connect + CSM + one
GET + Release, closed loop (issue 17: the reconnect storm after a network outage).

    python benchmarks/connsetup.py [--servers coaptcp,libcoap,aiocoap,bare]
        [--transports tcp,tls] [--conns 16,64] [--reps 3] [--duration 3] [--warmup 1]
        [--resume] [--baseline DIR] [--json FILE]

``connload.c`` (compiled here like loadgen) runs C connectors; each connects, sends its
CSM and ``GET /hello`` at once, waits for the server's CSM and the 2.05 (checked), sends
Release (RFC 8323 section 5.5) and waits for the server to close, then starts over.  Over
coaps+tcp (``tls``) every connection makes a full TLS handshake (TLS 1.3, ECDSA P-256);
``--resume`` adds ``tls-resume`` rows, where each new connection offers the session of an
earlier one (and the ``resumed`` column counts how many the server took: coaptcp offers
no resumption, RFC 8323 section 9 leaves it optional).  The servers, their commands and
the pinning are ``run.py``'s (server on CPU 0, connload on CPU 1); ``bare`` is the bare
Twisted ceiling (``bare_server.py``: it closes on Release).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (benchmarks/run.py: servers, ports, pinning, loadgen)

KINDS = {"tcp": ("tcp", []), "tls": ("tls", ["-S"]), "tls-resume": ("tls", ["-S", "-R"])}


def build_connload(cc: str = "cc") -> str:
    src = os.path.join(HERE, "connload.c")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    outdir = os.path.join(tempfile.gettempdir(), "coaptcp-connload-" + digest)
    exe = os.path.join(outdir, "connload")
    if not os.access(exe, os.X_OK):
        os.makedirs(outdir, exist_ok=True)
        tmp = f"{exe}.{os.getpid()}"
        subprocess.run([cc, "-O2", "-Wall", "-o", tmp, src, "-lssl", "-lcrypto"], check=True)
        os.replace(tmp, exe)
    return exe


def run_connload(exe, port, kind, conns, args, pin):
    argv = [exe, "-h", run.HOST, "-p", str(port), "-c", str(conns), "-d", str(args.duration),
            "-w", str(args.warmup), "-u", run.PATH, "-e", run.PAYLOAD.decode(),
            *KINDS[kind][1]]
    if pin is not None:
        argv = ["taskset", "-c", str(pin), *argv]
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=args.warmup + args.duration + 60)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"status": "no_output", "errors": 1, "stderr": p.stderr[-500:]}
    res = json.loads(lines[-1])
    if p.stderr.strip():
        res["stderr"] = p.stderr[-500:]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="coaptcp,libcoap,aiocoap,bare")
    ap.add_argument("--transports", default="tcp,tls")
    ap.add_argument("--conns", type=run.parse_list, default=[16, 64])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--resume", action="store_true", help="also tls with session resumption")
    ap.add_argument("--baseline", metavar="DIR", help="server 'base': coaptcp from DIR")
    ap.add_argument("--coaptcp-cmd", default=run.DEFAULT_COAPTCP_CMD)
    ap.add_argument("--libcoap-bin")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    for t in transports:
        if t not in ("tcp", "tls"):
            ap.error(f"unknown transport {t!r} (tcp, tls)")
    for n in names:
        if n not in ("coaptcp", "libcoap", "aiocoap", "bare", "bare-eager", "base"):
            ap.error(f"unknown server {n!r}")
    if "base" in names and not args.baseline:
        ap.error("server 'base' needs --baseline DIR")
    pin_server = pin_load = None
    if not args.no_pin and shutil.which("taskset") and {0, 1} <= os.sched_getaffinity(0):
        pin_server, pin_load = 0, 1
    exe = build_connload()
    loadgen = run.build_loadgen()
    logdir = tempfile.mkdtemp(prefix="coaptcp-connsetup-")
    certs = None
    if "tls" in transports:
        sys.path.insert(0, run.REPO)
        from coaptcp.testing.certs import write_test_setup
        certs = {k: str(v) for k, v in write_test_setup(os.path.join(logdir, "certs")).items()}
    busy = run.machine_busy_pct()
    results = {}
    skipped = {}
    for tr in transports:
        kinds = [tr] + (["tls-resume"] if tr == "tls" and args.resume else [])
        servers = run.make_servers(args, tr, certs, loadgen)
        for name in names:
            srv = servers.get(name)
            if not isinstance(srv, run.Server):
                skipped[f"{name}-{tr}"] = srv or "not available"
                continue
            port = run.free_port(srv.also_free)
            why = srv.start(port, pin_server, logdir, 20.0)
            try:
                if why:
                    skipped[f"{name}-{tr}"] = why
                    run.log(f"[{name} {tr}] SKIPPED: {why}")
                    continue
                for kind in kinds:
                    for c in args.conns:
                        runs = []
                        for rep in range(args.reps):
                            cpu0, t0 = srv.cpu_seconds(), time.monotonic()
                            sys0 = run.system_cpu_seconds()
                            r = run_connload(exe, port + srv.port_offset, kind, c, args, pin_load)
                            cpu1, t1 = srv.cpu_seconds(), time.monotonic()
                            sys1 = run.system_cpu_seconds()
                            if cpu0 is not None and cpu1 is not None:
                                r["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
                                if sys0 and sys1:
                                    other = (sys1[0] - sys0[0]) - (cpu1 - cpu0) - (
                                        r.get("cpu_pct", 0) / 100 * args.duration)
                                    r["other_cpu_pct"] = round(max(0, 100 * other / (t1 - t0)))
                            runs.append(r)
                            run.log(f"[{name} {kind}] c={c} rep {rep + 1}: "
                                    f"{r.get('rate', 0):.0f}/s p50={r.get('p50_us')}us "
                                    f"errors={r.get('errors')} resumed={r.get('resumed')} "
                                    f"srv={r.get('server_cpu_pct')}% "
                                    f"other={r.get('other_cpu_pct')}%")
                        ok = [r for r in runs if r.get("status") == "ok"]

                        def med(key, ok=ok):
                            vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
                            return statistics.median(vals) if vals else None

                        rates = [r["rate"] for r in ok]
                        results[(name, kind, c)] = {
                            "rate": med("rate"), "p50_us": med("p50_us"),
                            "p99_us": med("p99_us"), "server_cpu_pct": med("server_cpu_pct"),
                            "other_cpu_pct": med("other_cpu_pct"),
                            "spread": (min(rates), max(rates)) if rates else None,
                            "errors": sum(int(r.get("errors", 0)) for r in runs),
                            "resumed": sum(int(r.get("resumed", 0)) for r in runs),
                            "handshakes": sum(int(r.get("handshakes", 0)) for r in runs),
                            "runs": runs,
                        }
            finally:
                srv.stop()
    out = sys.stdout.write
    out(f"\nconnection set-up: connect + CSM + GET + Release + close, closed loop; medians of "
        f"{args.reps} x {args.duration:g} s\n")
    out(f"{'server':<10} {'kind':<10} {'conns':>5} {'conn/s':>9} {'min':>8} {'max':>8} "
        f"{'p50_us':>8} {'p99_us':>8} {'errors':>6} {'resumed':>8} {'srv%':>5} {'other%':>6}\n")
    for (name, kind, c), m in results.items():
        lo, hi = m["spread"] or (None, None)
        resumed = f"{m['resumed']}/{m['handshakes']}" if kind != "tcp" else "-"
        out(f"{name:<10} {kind:<10} {c:>5} {run.fmt(m['rate'], '.0f'):>9} "
            f"{run.fmt(lo, '.0f'):>8} {run.fmt(hi, '.0f'):>8} {run.fmt(m['p50_us'], '.0f'):>8} "
            f"{run.fmt(m['p99_us'], '.0f'):>8} {m['errors']:>6} {resumed:>8} "
            f"{run.fmt(m['server_cpu_pct'], '.0f'):>5} {run.fmt(m['other_cpu_pct'], '.0f'):>6}\n")
    out("\nratios of connections per second\n")
    for other in ("libcoap", "aiocoap", "bare", "base"):
        for (name, kind, c), m in results.items():
            if name != "coaptcp":
                continue
            o = results.get((other, kind, c))
            if o and o["rate"] and m["rate"]:
                out(f"  coaptcp/{other:<8} {kind:<10} {c:>3} connectors: "
                    f"{m['rate'] / o['rate']:.2f}\n")
    for label, why in skipped.items():
        out(f"\nSKIPPED {label}: {why}\n")
    if busy is not None:
        out(f"\nmachine busy before the run: {busy:.0f}% of one core\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"server": k[0], "kind": k[1], "conns": k[2], **v}
                       for k, v in results.items()], f, indent=1)
    shutil.rmtree(logdir, ignore_errors=True)
    return 1 if any(m["errors"] for m in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
