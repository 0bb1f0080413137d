#!/usr/bin/env python3
"""Issue 12's hostile-client campaign: run an attack against coaptcp and judge the bound.

    python3 benchmarks/attacks/run.py --list
    python3 benchmarks/attacks/run.py --attack amplify
    python3 benchmarks/attacks/run.py --attack custody,half-close --scale small
    python3 benchmarks/attacks/run.py --attack all            # everything at once + 64x16 load
    python3 benchmarks/attacks/run.py --attack amplify --target 127.0.0.1:5683 --pid 1234

For each attack named (one after the other, each against a fresh server) it starts
``twistd -n coaptcp`` from the venv on 127.0.0.1 (coap+tcp, coap+ws and coaps+tcp on free
ports, ``attack_site.make_site``: the demo site plus ``/slow``), or uses ``--target`` (and
``--target-ws``/``--target-tls``) of a running server; samples the server's RSS and open
descriptors from /proc every 0.1 s; opens a fresh coap+tcp client every 0.5 s and times a
``GET /hello``; runs the attack; then reports the peak and held RSS, the fresh client's
latency, the CPU use of the rest of the machine (``other%``) and PASS/FAIL against the
bound issue 12 states.  ``--attack all`` runs every attack of the campaign at once, each in
its own process from its own 127.0.0.x address, with loadgen (64 connections x 16 in
flight of ``GET /hello``) beside them, and judges what the issue's "Done when" asks: RSS
under +256 MiB, no load error or loss, a new client served within a second.

Safety: all traffic goes to 127.0.0.1; every attack loop is bounded in count and time and
the whole attack is cancelled past its deadline; a server we started is killed if its RSS
passes ``--rss-cap-mib`` (default 4 GiB), runs under an address-space limit
(``--as-limit-mib``) and dies with us (PR_SET_PDEATHSIG); children start with default
signal handling.  Exit status: 0 if every judged bound held, 1 if not, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import attacks as atk  # noqa: E402
import monitor as mon  # noqa: E402
import wire  # noqa: E402

FRESH_LIMIT_S = 1.0  # "a new client is still served within a second"
CAMPAIGN_RSS_MIB = 256.0  # "the server's RSS stays under +256 MiB"


# -- arguments ------------------------------------------------------------------------

def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host.startswith("127.") or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected 127.x.y.z:PORT (loopback only), not {text!r}")
    return host, int(port)


def value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def overrides(sets: list[str], name: str) -> dict[str, Any]:
    """``key=value`` for every attack, ``name.key=value`` for one."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"--set wants key=value, not {item!r}")
        scope, dot, key = key.rpartition(".")
        if dot and scope != name:
            continue
        if key in atk.ATTACKS[name].params:
            out[key] = value(val)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Issue 12 attack campaign against coaptcp (loopback only).",
        epilog="attacks: " + ", ".join(atk.ATTACKS) + "; all = " + " + ".join(atk.CAMPAIGN)
        + " at once with a 64x16 load")
    ap.add_argument("--attack", help="attack name(s), comma-separated; 'every': each in "
                    "turn; 'all': all at once with the load")
    ap.add_argument("--list", action="store_true", help="list the attacks and their sizes")
    ap.add_argument("--scale", choices=("full", "small"), default="full",
                    help="full: the sizes of issue 12 (default); small: a quick run")
    ap.add_argument("--set", action="append", default=[], metavar="[ATTACK.]KEY=VALUE",
                    help="override an attack parameter (see --list), repeatable")
    ap.add_argument("--target", type=host_port, metavar="HOST:PORT",
                    help="attack a running server's coap+tcp port instead of starting one")
    ap.add_argument("--target-ws", type=host_port, metavar="HOST:PORT",
                    help="its coap+ws port (ws attacks)")
    ap.add_argument("--target-tls", type=host_port, metavar="HOST:PORT",
                    help="its coaps+tcp port (tls attacks)")
    ap.add_argument("--pid", type=int, help="the running server's pid (default: found "
                    "from the listening port)")
    ap.add_argument("--sources", default="127.0.0.2",
                    help="comma-separated source addresses of the attack connections "
                         "(default 127.0.0.2; the load and the fresh client use 127.0.0.1)")
    ap.add_argument("--twistd", help="twistd to run (default: the venv's)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for twistd coaptcp, repeatable (e.g. "
                         "--server-arg=--idle-timeout=60)")
    ap.add_argument("--server-nofile", type=int, default=1024,
                    help="descriptor soft limit the server starts with (default 1024, "
                         "the Linux default issue 12 item 3 is about; 0: inherit)")
    ap.add_argument("--rss-cap-mib", type=float, default=4096,
                    help="kill the server we started past this RSS (default 4096)")
    ap.add_argument("--as-limit-mib", type=int, default=6144,
                    help="address-space limit of the server we start (default 6144; 0: none)")
    ap.add_argument("--load", action="store_true",
                    help="run the 64x16 loadgen beside a single attack too")
    ap.add_argument("--load-conns", type=int, default=64)
    ap.add_argument("--load-inflight", type=int, default=16)
    ap.add_argument("--loadgen", help="loadgen binary (default: build benchmarks/loadgen.c)")
    ap.add_argument("--probe-interval", type=float, default=0.5)
    ap.add_argument("--json", metavar="FILE", help="write every result as JSON")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the server's log and the attacks' logs (default: deleted; "
                         "the report has the server log's tail)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    return ap


# -- running one attack ---------------------------------------------------------------

def make_ctx(args: argparse.Namespace, target: mon.Target, mark: Any = None,
             t0: float | None = None) -> atk.Ctx:
    ctx = atk.Ctx(target.host, target.tcp, target.ws, target.tls,
                  sources=[s for s in args.sources.split(",") if s])
    for s in ctx.sources:
        host_port(f"{s}:0")
    if mark is not None:
        ctx.mark = mark
    if t0 is not None:
        ctx.t0 = t0
    return ctx


def run_inline(attack: atk.Attack, params: dict[str, Any], ctx: atk.Ctx) -> dict[str, Any]:
    """Run the attack coroutine, cancelled past its deadline; errors become a failed check."""
    limits = []

    async def main() -> dict[str, Any]:
        async with asyncio.timeout(attack.deadline(params)) as limit:
            limits.append(limit)
            return await attack.run(ctx, params)

    try:
        return asyncio.run(main())
    except TimeoutError as error:
        why = (f"did not finish within {attack.deadline(params):g} s" if limits[0].expired()
               else f"a step timed out: {type(error).__name__} {error}")
    except (OSError, wire.Closed) as error:
        why = f"{type(error).__name__}: {error}"
    return {"error": why, "checks": [("attack ran to its end", False, why)]}


async def _request(host: str, port: int, transport: str, path: str) -> str:
    c = await wire.Conn.open(host, port, transport, timeout=5.0)
    try:
        c.send_csm()
        c.send(wire.GET, b"w", wire.path_options(path))
        async with asyncio.timeout(10.0):
            while True:
                msg = await c.read()
                if msg.token == b"w":
                    return msg.dotted
    finally:
        c.abort()


def warm_up(target: mon.Target) -> None:
    """Touch what is built on first use (the 1 MiB /big body, the WebSocket and TLS
    paths), so that the baseline RSS already has it."""
    async def main() -> None:
        for path in ("/big?sha256", "/big", "/time", "/slow?ms=1", "/store", "/hello"):
            await _request(target.host, target.tcp, "tcp", path)
        if target.ws:
            await _request(target.host, target.ws, "ws", "/hello")
        if target.tls:
            await _request(target.host, target.tls, "tls", "/hello")

    asyncio.run(main())


def baseline_kib(pid: int) -> int:
    time.sleep(1.0)
    values = []
    for _ in range(5):
        rss = mon.rss_kib(pid)
        if rss is not None:
            values.append(rss)
        time.sleep(0.1)
    return sorted(values)[len(values) // 2]


class Load:
    """loadgen (64 x 16 GET /hello) until stopped; its JSON line is the result."""

    def __init__(self, args: argparse.Namespace, port: int) -> None:
        exe = args.loadgen or mon.bench.build_loadgen()
        self.argv = [exe, "-h", mon.HOST, "-p", str(port), "-c", str(args.load_conns),
                     "-n", str(args.load_inflight), "-w", "1", "-d", "1800", "-t", "10",
                     "-T", "5", "-u", "/hello", "-e", "Hello, world!"]
        mon.log("load: " + " ".join(self.argv))
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=mon.default_signals_and_death_signal)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        res: dict[str, Any] = json.loads(lines[-1]) if lines else {"status": "no output"}
        res["stderr"] = err[-600:]
        keys = ("status", "rps", "p50_us", "p99_us", "errors", "err_lost", "err_timeout",
                "err_conn_closed", "err_stalled_conns", "requests", "duration_s", "stderr")
        return {k: res.get(k) for k in keys}


class Watch:
    """The server (ours or a target), its sampler, the prober and the CPU meter."""

    def __init__(self, args: argparse.Namespace, tls: bool = True) -> None:
        self.args = args
        self.server: mon.ServerProcess | None = None
        if args.target:
            host, port = args.target
            self.target = mon.Target(port, args.target_ws[1] if args.target_ws else None,
                                     args.target_tls[1] if args.target_tls else None,
                                     args.pid or mon.pid_listening_on(port), host)
        else:
            self.server = mon.ServerProcess(
                twistd=args.twistd, extra_args=args.server_arg, nofile=args.server_nofile or None,
                as_limit_mib=args.as_limit_mib or None, tls=tls)
            self.target = self.server.start()
        try:
            warm_up(self.target)
        except BaseException:
            if self.server:
                self.server.stop()
            raise
        self.pid = self.target.pid
        self.baseline = baseline_kib(self.pid) if self.pid else 0
        self.sampler = mon.Sampler(self.pid, cap_mib=args.rss_cap_mib if self.server else None,
                                   on_cap=self._capped) if self.pid else None
        self.prober = mon.Prober(self.target.tcp, args.probe_interval, host=self.target.host)
        self.meter = mon.CpuMeter(self.pid)
        if self.sampler:
            self.sampler.start()
            self.prober.t0 = self.sampler.t0
        self.prober.start()
        self.t0 = self.sampler.t0 if self.sampler else time.monotonic()

    def _capped(self) -> None:
        mon.log(f"server RSS passed --rss-cap-mib {self.args.rss_cap_mib:g}: killing it")
        assert self.server is not None
        self.server.kill()

    def mark(self, name: str) -> None:
        if self.sampler:
            self.sampler.mark(name)

    def finish(self) -> dict[str, Any]:
        time.sleep(2.0)  # what the server still holds once the attack let go
        after = mon.rss_kib(self.pid) if self.pid else None
        self.prober.stop()
        if self.sampler:
            self.sampler.stop()
        out: dict[str, Any] = {"target": vars(self.target), "cpu": self.meter.summary(),
                               "fresh_client": self.prober.summary(FRESH_LIMIT_S)}
        if self.sampler:
            rss = self.sampler.summary(self.baseline)
            hold_end = self.sampler.marks.get("hold_end")
            if hold_end is not None:
                rss["at_hold_end_delta_mib"] = self.sampler.delta_at(hold_end, self.baseline)
                rss["hold_end_s"] = round(hold_end, 1)
            if after is not None:
                rss["after_close_delta_mib"] = round((after - self.baseline) / 1024, 1)
            out["rss"] = rss
        if self.server:
            out["server_alive"] = self.server.alive()
            out["server_argv"] = self.server.argv
        return out

    def close(self) -> dict[str, Any] | None:
        if not self.server:
            return None
        alive = self.server.alive()
        status = self.server.stop()
        summary = self.server.log_summary()
        summary.update({"alive_at_end": alive, "exit_status": status,
                        "log_tail": self.server.log_tail(6)})
        if self.args.keep_logs:
            summary["log"] = self.server.logpath
        else:
            self.server.remove_workdir()
        return summary


def judge(attack: atk.Attack | None, params: dict[str, Any], result: dict[str, Any],
          watched: dict[str, Any], peak_limit: float | None = None) -> list[list[Any]]:
    """(check, passed or None for not judged, detail) for one attack's run."""
    checks: list[list[Any]] = []
    rss = watched.get("rss")
    peak_limit = peak_limit if peak_limit is not None else (attack.peak_mib if attack else None)
    if rss and rss.get("samples"):
        if rss.get("capped_at_s") is not None:
            checks.append(["server stayed under the RSS cap", False,
                           f"killed at {rss['capped_at_s']} s past the cap"])
        if peak_limit is not None:
            checks.append([f"peak server RSS under +{peak_limit:g} MiB",
                           rss["peak_delta_mib"] < peak_limit, _mib(rss["peak_delta_mib"])])
        if attack and attack.held_mib is not None:
            since = result.get("seconds_since_last_block_at_end", params.get("hold", 0))
            held = rss.get("at_hold_end_delta_mib")
            if since >= attack.held_after and held is not None:
                checks.append([f"RSS held at the end under +{attack.held_mib:g} MiB", held
                               < attack.held_mib, f"{_mib(held)}, {since} s after the last send"])
            else:
                checks.append([f"RSS held under +{attack.held_mib:g} MiB", None,
                               f"not judged: the hold ended {since} s after the last send, "
                               f"under {attack.held_after:g} s"])
    fresh = watched["fresh_client"]
    checks.append([f"a fresh client served within {FRESH_LIMIT_S:g} s throughout",
                   fresh["served_within_limit"],
                   f"{fresh['probes']} probes, {fresh['failed']} failed, slowest answer "
                   f"{fresh['max_ms']} ms at {fresh['max_at_s']} s, longest wait "
                   f"{fresh['longest_wait_ms']} ms at {fresh['longest_wait_at_s']} s"
                   + (f", e.g. {fresh['first_errors'][0]}" if fresh["first_errors"] else "")])
    if "server_alive" in watched:
        checks.append(["server alive at the end", watched["server_alive"], ""])
    for name, ok, detail in result.get("checks", []):
        checks.append([name, ok, detail])
    return checks


def verdict(checks: list[list[Any]]) -> bool:
    return all(ok is not False for _, ok, _ in checks)


def run_one(args: argparse.Namespace, name: str) -> dict[str, Any]:
    attack = atk.ATTACKS[name]
    params = attack.parameters(args.scale, overrides(args.set, name))
    mon.log(f"== {name} (issue 12 item {attack.item}): {attack.what}; {params}")
    watch = Watch(args, tls="tls" in attack.transports)
    load = None
    try:
        if args.load:
            load = Load(args, watch.target.tcp)
            time.sleep(2.0)
        ctx = make_ctx(args, watch.target, watch.mark, watch.t0)
        result = run_inline(attack, params, ctx)
        watch.mark("attack_end")
        load_result = load.stop() if load else None
        load = None
        watched = watch.finish()
    finally:
        if load:
            load.stop()
        server_log = watch.close()
    checks = judge(attack, params, result, watched)
    if load_result is not None:
        checks += load_checks(load_result)
    return {"attack": name, "item": attack.item, "what": attack.what, "bound": attack.bound,
            "params": params, "result": result, **watched, "load": load_result,
            "server_log": server_log, "checks": checks, "passed": verdict(checks)}


def load_checks(load: dict[str, Any]) -> list[list[Any]]:
    lost, timed_out = load.get("err_lost"), load.get("err_timeout")
    return [["the load saw no error", load.get("errors") == 0, f"{load.get('errors')} errors"],
            ["the load lost no request", not lost and not timed_out,
             f"lost {lost}, timed out {timed_out}"]]


# -- all at once ----------------------------------------------------------------------

def campaign_sources(i: int, name: str) -> str:
    """Each attack from its own address(es) (a per-address cap must not shut the load
    out: that one comes from 127.0.0.1); the 1,800 handshakes over four, 450 each."""
    if name == "ws-handshakes":
        return ",".join(f"127.0.1.{k}" for k in range(1, 5))
    return f"127.0.0.{10 + i}"


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    names = atk.CAMPAIGN
    mon.log(f"== all at once: {', '.join(names)}, with a {args.load_conns}x"
            f"{args.load_inflight} load")
    watch = Watch(args, tls=True)
    workdir = tempfile.mkdtemp(prefix="coaptcp-campaign-")
    children: list[tuple[str, subprocess.Popen[bytes], str, float]] = []
    load = None
    try:
        load = Load(args, watch.target.tcp)
        time.sleep(2.0)
        for i, name in enumerate(names):
            attack = atk.ATTACKS[name]
            params = attack.parameters(args.scale, {**atk.CAMPAIGN_OVERRIDES.get(name, {}),
                                                    **overrides(args.set, name)})
            out = os.path.join(workdir, f"{name}.json")
            argv = [sys.executable, os.path.abspath(__file__), "--child", "--attack", name,
                    "--scale", args.scale, *watch.target.args(), "--sources",
                    campaign_sources(i, name), "--json-out", out,
                    *[f"--set={name}.{k}={v}" for k, v in params.items()]]
            logf = open(os.path.join(workdir, f"{name}.log"), "wb")
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    preexec_fn=mon.default_signals_and_death_signal)
            logf.close()
            children.append((name, proc, out, time.monotonic() + attack.deadline(params) + 30))
        for name, proc, _, deadline in children:
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                mon.log(f"{name}: past its deadline, killed")
                proc.kill()
                proc.wait(5)
        watch.mark("hold_end")
        load_result = load.stop()
        load = None
        watched = watch.finish()
    finally:
        if load:
            load.stop()
        for _, proc, _, _ in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        server_log = watch.close()
    per_attack = {}
    for name, proc, out, _ in children:
        try:
            with open(out) as f:
                per_attack[name] = json.load(f)
        except (OSError, ValueError):
            with open(os.path.join(workdir, f"{name}.log"), "rb") as f:
                tail = f.read().decode(errors="replace")[-400:]
            per_attack[name] = {"error": f"no result (status {proc.returncode}): {tail}",
                                "checks": [["attack ran to its end", False, tail[-120:]]]}
    if args.keep_logs:
        mon.log(f"attack logs and results in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    checks = judge(None, {}, {}, watched, peak_limit=CAMPAIGN_RSS_MIB) + load_checks(load_result)
    return {"attack": "all", "what": " + ".join(names), "params": {"scale": args.scale},
            **watched, "load": load_result, "server_log": server_log, "attacks": per_attack,
            "checks": checks, "passed": verdict(checks)}


# -- output ---------------------------------------------------------------------------

def _mib(delta: float | None) -> str:
    return "-" if delta is None else f"{delta:+.1f} MiB"


def _mark(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a "}[ok]


def print_report(rep: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"\n== {rep['attack']}" + (f" (issue 12 item {rep['item']})" if rep.get("item") else "")
      + f": {rep['what']}\n")
    if rep.get("bound"):
        w(f"   must hold: {rep['bound']}\n")
    rss = rep.get("rss")
    if rss and rss.get("samples"):
        w(f"   server RSS: baseline {rss['baseline_mib']} MiB; peak {_mib(rss['peak_delta_mib'])} "
          f"at {rss['peak_at_s']} s; at the end of the hold "
          f"{_mib(rss.get('at_hold_end_delta_mib'))} ({rss.get('hold_end_s')} s); 2 s after "
          f"the attack let go {_mib(rss.get('after_close_delta_mib'))}; descriptors peak "
          f"{rss['peak_fds']}\n")
    f = rep["fresh_client"]
    w(f"   fresh client: {f['probes']} probes, {f['failed']} failed (first at "
      f"{f['first_failure_at_s']} s), p50 {f['p50_ms']} ms, slowest answer {f['max_ms']} ms "
      f"at {f['max_at_s']} s, longest wait (answered or not) {f['longest_wait_ms']} ms\n")
    cpu = rep["cpu"]
    w(f"   cpu: server {cpu.get('server_cpu_pct')}%, attacker {cpu.get('attacker_cpu_pct')}%, "
      f"other {cpu.get('other_cpu_pct')}% (100 = one core) over {cpu['wall_s']} s\n")
    if rep.get("load"):
        ld = rep["load"]
        w(f"   load {ld.get('status')}: {ld.get('rps')} req/s, p50 {ld.get('p50_us')} us, "
          f"p99 {ld.get('p99_us')} us, errors {ld.get('errors')}, lost {ld.get('err_lost')}, "
          f"timed out {ld.get('err_timeout')}\n")
    results = rep.get("attacks") or {rep["attack"]: rep.get("result", {})}
    for name, res in results.items():
        shown = {k: v for k, v in res.items() if k != "checks"}
        w(f"   {name}: {json.dumps(shown, default=str)[:1500]}\n")
        if "attacks" in rep:
            for check, ok, detail in res.get("checks", []):
                w(f"      {_mark(ok)}  {check}: {detail}\n")
    if rep.get("server_log"):
        s = rep["server_log"]
        w(f"   server log: {s['lines']} lines, {s['tracebacks']} tracebacks, "
          f"{s['memory_errors']} MemoryError; exit status {s['exit_status']}\n")
    for check, ok, detail in rep["checks"]:
        w(f"   {_mark(ok)}  {check}: {detail}\n")
    w(f"   RESULT: {'PASS' if rep['passed'] else 'FAIL'}\n")


def print_summary(reports: list[dict[str, Any]]) -> None:
    w = sys.stdout.write
    w(f"\n{'attack':<14} {'peak dRSS':>10} {'held dRSS':>10} {'fresh max':>10} "
      f"{'fresh fail':>10} {'other%':>7}  result\n")
    for rep in reports:
        rss = rep.get("rss") or {}
        f = rep["fresh_client"]
        w(f"{rep['attack']:<14} {rss.get('peak_delta_mib', '-'):>10} "
          f"{rss.get('at_hold_end_delta_mib', '-'):>10} {f['longest_wait_ms'] or '-':>10} "
          f"{f['failed']:>10} {rep['cpu'].get('other_cpu_pct', '-'):>7}  "
          f"{'PASS' if rep['passed'] else 'FAIL'}\n")
    w("dRSS in MiB over the idle server's baseline; fresh max: longest wait of a new client "
      "for GET /hello, answered or not (ms); other%: CPU used by other processes meanwhile "
      "(100 = one core)\n")


def list_attacks() -> None:
    for name, a in atk.ATTACKS.items():
        print(f"{name:<14} item {a.item}: {a.what}")
        print(f"{'':<14} full: {a.params}")
        print(f"{'':<14} small: {a.small}")
    print(f"all            at once: {', '.join(atk.CAMPAIGN)} (with "
          f"{atk.CAMPAIGN_OVERRIDES}) beside a 64x16 load")


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.list:
        list_attacks()
        return 0
    if not args.attack:
        ap.error("--attack NAME (or --list)")
    names = list(atk.ATTACKS) if args.attack == "every" else [
        n.strip() for n in args.attack.split(",") if n.strip()]
    for n in names:
        if n != "all" and n not in atk.ATTACKS:
            ap.error(f"unknown attack {n!r}; --list shows them")
    if (args.target_ws or args.target_tls) and not args.target:
        ap.error("--target-ws/--target-tls go with --target")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    if args.child:
        if not args.target or len(names) != 1:
            ap.error("--child wants --target and one attack")
        target = mon.Target(args.target[1], args.target_ws[1] if args.target_ws else None,
                            args.target_tls[1] if args.target_tls else None, None,
                            args.target[0])
        attack = atk.ATTACKS[names[0]]
        params = attack.parameters(args.scale, overrides(args.set, names[0]))
        result = run_inline(attack, params, make_ctx(args, target))
        with open(args.json_out, "w") as f:
            json.dump(result, f, default=str)
        return 0
    reports = []
    for name in names:
        rep = run_all(args) if name == "all" else run_one(args, name)
        print_report(rep)
        sys.stdout.flush()
        reports.append(rep)
    if len(reports) > 1:
        print_summary(reports)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "machine": mon.bench.machine_info(), "reports": reports}, f, indent=1,
                      default=str)
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
