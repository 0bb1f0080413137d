#!/usr/bin/env python3
"""Bulk transfer benchmark: a 64 MiB body over coap+tcp, block-wise with BERT (RFC 7959,
RFC 8323 section 6), down (GET) and up (PUT), on the loopback interface.

Pairs (client -> server), all in one run:

  coaptcp      our Client -> ``twist coaptcp --resource transfer_site.make_root``, both
               with the default Max-Message-Size (66,048 bytes: 64 KiB BERT messages)
  coaptcp-1m   the same with a Max-Message-Size of 1 MiB + 512 on both sides (aiocoap's
               default is 1 MiB), to compare at equal message sizes
  aiocoap      aiocoap's client -> ``aiocoap_transfer_server.py`` (aiocoap's defaults)
  cross        (with --cross) our Client -> aiocoap, and aiocoap -> our server

Each client runs in its own process: it opens its connection (GET /hello), then times one
transfer of the body (GET /blob, or PUT /sink answered with the body's SHA-256), checks the
bytes, and prints one JSON line.  The runner repeats each cell --reps times and reports the
median in MB/s (10^6 bytes per second).  Servers are pinned to CPU 0 and clients to CPU 1
with taskset when possible.

Usage::

    python benchmarks/transfer.py                      # 64 MiB, 3 repetitions
    python benchmarks/transfer.py --size-mib 16 --reps 5 --cross --json /tmp/t.json

Run it with the interpreter that has coaptcp and aiocoap installed (the venv's python).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
MIB = 1 << 20
#: Max-Message-Size of the coaptcp-1m pair (1 MiB of BERT blocks plus header room).
LARGE_MMS = MIB + 512
CLIENT_TIMEOUT = 600.0
READY_TIMEOUT = 20.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def body(size: int) -> bytes:
    """The body both servers serve and both clients upload (transfer_site.body)."""
    period = bytes(range(251))
    return (period * (size // len(period) + 1))[:size]


# -- the clients (run as: transfer.py client KIND OP URI SIZE [MMS]) ------------------------


def client_coaptcp(op: str, uri: str, size: int, mms: int | None) -> dict[str, Any]:
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from coaptcp.client.client import Client
    from coaptcp.client.connectors import ConnectOptions
    from coaptcp.core.codes import Code

    report: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        options = ConnectOptions() if mms is None else ConnectOptions(max_message_size=mms)
        client = Client(reactor, timeout=60, max_body_size=size + MIB, connect_options=options,
                        idle_timeout=None)
        hello = uri.rsplit("/", 1)[0] + "/hello"
        await client.request("GET", hello)
        blocks: list[int] = []
        data = body(size)
        expected = hashlib.sha256(data).hexdigest()
        started, cpu = time.perf_counter(), time.process_time()
        if op == "get":
            response = await client.request("GET", uri, progress=lambda d, t: blocks.append(d))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            ok = response.code == Code.CONTENT and hashlib.sha256(response.payload).hexdigest() \
                == expected
        else:
            response = await client.request("PUT", uri, data,
                                            progress=lambda d, t: blocks.append(d))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            ok = response.code == Code.CHANGED and response.payload.decode() == expected
        connection = client.connection_for(uri)
        assert connection is not None
        report.update(seconds=elapsed, ok=ok, code=response.code.dotted, messages=len(blocks),
                      client_cpu_s=cpu,
                      peer_mms=connection.channel.connection.peer.max_message_size)
        await client.close()
        print(json.dumps(report), flush=True)

    # task.react stops the process when main is done (the report is printed by then).
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    return report


def client_aiocoap(op: str, uri: str, size: int) -> dict[str, Any]:
    import asyncio

    import aiocoap

    async def main() -> dict[str, Any]:
        context = await aiocoap.Context.create_client_context()
        try:
            hello = uri.rsplit("/", 1)[0] + "/hello"
            await context.request(aiocoap.Message(code=aiocoap.GET, uri=hello)).response
            data = body(size)
            expected = hashlib.sha256(data).hexdigest()
            started, cpu = time.perf_counter(), time.process_time()
            if op == "get":
                response = await context.request(
                    aiocoap.Message(code=aiocoap.GET, uri=uri)).response
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                ok = response.code == aiocoap.CONTENT and \
                    hashlib.sha256(response.payload).hexdigest() == expected
            else:
                response = await context.request(
                    aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=data)).response
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                ok = response.code == aiocoap.CHANGED and response.payload.decode() == expected
            return {"seconds": elapsed, "ok": ok, "code": str(response.code),
                    "client_cpu_s": cpu}
        finally:
            await context.shutdown()

    return asyncio.run(main())


def run_client_command(argv: list[str]) -> int:
    kind, op, uri, size_text, *rest = argv
    size = int(size_text)
    if kind == "coaptcp":
        report = client_coaptcp(op, uri, size, int(rest[0]) if rest else None)
    elif kind == "aiocoap":
        report = client_aiocoap(op, uri, size)
    else:
        raise SystemExit(f"unknown client {kind!r}")
    print(json.dumps(report), flush=True)
    return 0 if report.get("ok") else 1


# -- the runner ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (from /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def server(argv: list[str], port: int, env: dict[str, str], pin: list[str]) -> Iterator[int]:
    """Start a server, wait for its port, yield its pid, stop it."""
    logfile = tempfile.NamedTemporaryFile(prefix="coaptcp-transfer-", suffix=".log",
                                          delete=False)
    process = subprocess.Popen([*pin, *argv], stdout=logfile, stderr=subprocess.STDOUT,
                               env=env, cwd=HERE)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {' '.join(argv)}; see {logfile.name}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not listen: {' '.join(argv)}")
            time.sleep(0.05)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logfile.close()


def coaptcp_server_argv(python: str, port: int, size: int, mms: int | None) -> list[str]:
    argv = [python, "-m", "twisted", "--log-level=warn", "coaptcp",
            "--tcp", f"tcp:{port}:interface={HOST}",
            "--resource", "transfer_site.make_root",
            "--max-body-size", str(size + MIB)]
    if mms is not None:
        argv += ["--max-message-size", str(mms)]
    return argv


def run_client(python: str, pin: list[str], kind: str, op: str, uri: str, size: int,
               mms: int | None) -> dict[str, Any]:
    argv = [*pin, python, os.path.abspath(__file__), "client", kind, op, uri, str(size)]
    if mms is not None:
        argv.append(str(mms))
    result = subprocess.run(argv, capture_output=True, timeout=CLIENT_TIMEOUT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = result.stdout.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"client {kind} {op} printed nothing:\n{result.stderr.decode()}")
    report: dict[str, Any] = json.loads(lines[-1])
    if result.returncode != 0 or not report.get("ok"):
        raise RuntimeError(f"client {kind} {op} failed: {report}\n{result.stderr.decode()}")
    return report


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        return run_client_command(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64, help="body size in MiB (64)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per cell (3)")
    parser.add_argument("--cross", action="store_true",
                        help="also our client -> aiocoap and aiocoap -> our server")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with coaptcp and aiocoap installed")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--json", metavar="FILE", help="also write every run as JSON")
    args = parser.parse_args()
    if args.size_mib < 1 or args.reps < 1:
        parser.error("--size-mib and --reps must be at least 1")
    size = args.size_mib * MIB
    pin_server: list[str] = []
    pin_client: list[str] = []
    if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        pin_server, pin_client = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    env = {**os.environ, "PYTHONPATH": HERE, "COAPTCP_BENCH_SIZE": str(size),
           "PYTHONWARNINGS": "ignore"}
    # (label, client kind, server kind, Max-Message-Size for our side)
    pairs: list[tuple[str, str, str, int | None]] = [
        ("coaptcp -> coaptcp", "coaptcp", "coaptcp", None),
        ("coaptcp -> coaptcp (MMS 1 MiB)", "coaptcp", "coaptcp", LARGE_MMS),
        ("aiocoap -> aiocoap", "aiocoap", "aiocoap", None),
    ]
    if args.cross:
        pairs += [("coaptcp -> aiocoap", "coaptcp", "aiocoap", None),
                  ("aiocoap -> coaptcp", "aiocoap", "coaptcp", None)]
    runs: list[dict[str, Any]] = []
    rows: list[tuple[str, str, float, float, float, float, float, float, float, int | None]] = []
    for label, client_kind, server_kind, mms in pairs:
        port = free_port()
        if server_kind == "coaptcp":
            argv = coaptcp_server_argv(args.python, port, size, mms)
        else:
            argv = [args.python, os.path.join(HERE, "aiocoap_transfer_server.py"), str(port),
                    str(size)]
        with server(argv, port, env, pin_server) as pid:
            for op, path in (("get", "/blob"), ("put", "/sink")):
                uri = f"coap+tcp://{HOST}:{port}{path}"
                seconds: list[float] = []
                cpu: list[float] = []
                client_cpu: list[float] = []
                other: list[float] = []
                messages = None
                for rep in range(args.reps):
                    before = cpu_seconds(pid)
                    busy, children, wall = busy_seconds(), children_cpu(), time.monotonic()
                    report = run_client(args.python, pin_client, client_kind, op, uri, size,
                                        mms if client_kind == "coaptcp" else None)
                    cpu.append(cpu_seconds(pid) - before)
                    # CPU used meanwhile by anything but this server and client: noise.
                    others = (busy_seconds() - busy) - cpu[-1] - (children_cpu() - children)
                    span = (time.monotonic() - wall) * (os.cpu_count() or 1)
                    report["other_pct"] = max(0.0, 100 * others / span)
                    other.append(report["other_pct"])
                    seconds.append(report["seconds"])
                    client_cpu.append(report["client_cpu_s"])
                    messages = report.get("messages", messages)
                    runs.append({"pair": label, "op": op, "rep": rep, "size": size,
                                 "server_cpu_s": cpu[-1], **report})
                    log(f"{label:32} {op:3} rep {rep}: {report['seconds']:.3f} s "
                        f"({size / report['seconds'] / 1e6:.1f} MB/s, "
                        f"other {report['other_pct']:.0f}%)")
                median = statistics.median(seconds)
                rows.append((label, op.upper(), median, size / median / 1e6,
                             size / min(seconds) / 1e6, size / max(seconds) / 1e6,
                             statistics.median(cpu),
                             statistics.median(client_cpu), max(other), messages))
    print(f"\n{args.size_mib} MiB body over coap+tcp on {HOST}; median of {args.reps} runs"
          f"{'; server on CPU 0, client on CPU 1' if pin_server else ''}\n")
    print(f"{'pair':32} {'op':4} {'median s':>9} {'MB/s':>7} {'best':>6} {'worst':>6} "
          f"{'srv CPU s':>10} {'cli CPU s':>10} {'other%':>7} {'blocks':>7}")
    for label, op, median, rate, best, worst, cpu_s, client_s, other_pct, messages in rows:
        shown = "" if messages is None else str(messages)
        print(f"{label:32} {op:4} {median:9.3f} {rate:7.1f} {best:6.1f} {worst:6.1f} "
              f"{cpu_s:10.2f} {client_s:10.2f} {other_pct:7.0f} {shown:>7}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(runs, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
