#!/usr/bin/env python3
"""Instructions per request (or per new connection) of a server on real sockets, by callgrind.

    python benchmarks/sockpath.py [--server coaptcp|base|bare|bare-eager]
        [--transport tcp|tls|ws] [--conns 16] [--inflight 1] [--requests 3000,9000]
        [--baseline DIR] [--reactor epoll] [--metrics]

hotpath.py counts the work of a request in memory; this counts it through the reactor,
the sockets and the write path, where sending at once or on the next reactor turn makes
the difference.  The server runs under ``valgrind --tool=callgrind`` (instructions in user
space: the system calls themselves are not counted, the Python around them is), and
loadgen (``run.py`` builds it) sends exactly N requests with C x K in flight, then the
server is stopped.  Two runs with different N give the instructions of one request:
(total(N2) - total(N1)) / (N2 - N1), start-up and connection set-up cancelling out.
Deterministic enough on a shared machine, unlike wall-clock; but under valgrind the
server is ~50x slower than loadgen, so each reactor turn finds more connections ready
than in real time: compare figures of this script with each other only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (benchmarks/run.py: loadgen build, ports, listener options)

COLLECTED = re.compile(rb"Collected : (\d+)")


def server_argv(
    args: argparse.Namespace, port: int, certs: dict[str, str]
) -> tuple[list[str], str]:
    """The server's command line and its working directory (and so its PYTHONPATH)."""
    python = sys.executable
    if args.server in ("bare", "bare-eager"):
        argv = [python, os.path.join(HERE, "bare_server.py"), str(port), "--reactor", args.reactor]
        return argv + (["--eager"] if args.server == "bare-eager" else []), run.REPO
    listen = run.COAPTCP_LISTEN[args.transport].format(
        port=port, **{k: shlex.quote(v) for k, v in certs.items()})
    argv = [python, "-m", "twisted", f"--reactor={args.reactor}", "--log-level=warn",
            "coaptcp", *shlex.split(listen)]
    if args.metrics:  # as an operator turns them on: GET /metrics on a port of its own
        argv += ["--metrics", f"tcp:{run.free_port()}:interface={run.HOST}"]
    return argv, args.baseline if args.server == "base" else run.REPO


def count(args: argparse.Namespace, loadgen: str, requests: int, certs: dict[str, str]) -> int:
    port = run.free_port()
    argv, cwd = server_argv(args, port, certs)
    env = dict(os.environ, PYTHONPATH=cwd)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"server did not start:\n{log.read().decode()[-2000:]}")
                try:
                    with socket.create_connection((run.HOST, port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.5)
            if args.connect:  # N new connections, each CSM + GET + Release (connload.c)
                lg = [loadgen, "-h", run.HOST, "-p", str(port), "-c", str(args.conns),
                      "-r", str(requests), "-w", "0", "-d", "600", "-t", "120",
                      *(["-S"] if args.transport == "tls" else [])]
                done_mark = f'"cycles_total":{requests},'
            else:
                lg = [loadgen, "-h", run.HOST, "-p", str(port), "-c", str(args.conns),
                      "-n", str(args.inflight), "-r", str(requests), "-w", "0", "-d", "600",
                      "-t", "120", "-T", "120", "-u", run.PATH, "-e", run.PAYLOAD.decode(),
                      *run.LOADGEN_FLAGS[args.transport]]
                done_mark = '"request_limit_reached"'
            out = subprocess.run(lg, capture_output=True, text=True, timeout=900)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            done = line and done_mark in line[-1] and '"errors":0' in line[-1]
            if not done:
                raise SystemExit(f"loadgen: {out.stdout[-500:]} {out.stderr[-500:]}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        log.seek(0)
        found = COLLECTED.findall(log.read())
    if not found:
        raise SystemExit("no callgrind total in the server's output")
    return int(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="coaptcp",
                        choices=["coaptcp", "base", "bare", "bare-eager"])
    parser.add_argument("--transport", default="tcp", choices=["tcp", "tls", "ws"])
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--requests", default="3000,9000", help="N1,N2")
    parser.add_argument("--reactor", default="epoll", choices=["epoll", "poll", "select"])
    parser.add_argument("--baseline", help="another checkout, for --server base")
    parser.add_argument("--connect", action="store_true",
                        help="count per new connection (connload.c: connect, CSM, GET, "
                             "Release, close; --requests are connections, --conns connectors)")
    parser.add_argument("--metrics", action="store_true",
                        help="serve with twistd coaptcp --metrics (the metered site)")
    args = parser.parse_args()
    if args.metrics and args.server.startswith("bare"):
        parser.error("--metrics is an option of the coaptcp servers")
    if args.server == "base" and not args.baseline:
        parser.error("--server base needs --baseline DIR")
    if args.server.startswith("bare") and args.transport != "tcp":
        parser.error("the bare servers speak coap+tcp only")
    n1, n2 = (int(x) for x in args.requests.split(","))
    if args.connect:
        from connsetup import build_connload
        loadgen = build_connload()
    else:
        loadgen = run.build_loadgen()
    certs: dict[str, str] = {}
    if args.transport == "tls":
        from coaptcp.testing.certs import write_test_setup
        made = write_test_setup(tempfile.mkdtemp(prefix="sockpath-certs-"))
        certs = {"cert": str(made["server"]), "key": str(made["server_key"])}
    first = count(args, loadgen, n1, certs)
    second = count(args, loadgen, n2, certs)
    per = (second - first) / (n2 - n1)
    what = (f"{args.conns} connectors: {per:,.0f} instructions per connection" if args.connect
            else f"{args.conns}x{args.inflight}: {per:,.0f} instructions per request")
    metered = " --metrics" if args.metrics else ""
    print(f"{args.server}{metered} {args.transport} {what} ({args.reactor}; N={n1}: {first:,}, "
          f"N={n2}: {second:,})")


if __name__ == "__main__":
    main()
