#!/usr/bin/env python3
"""Server memory per idle CoAP-over-TCP connection (RFC 8323), measured on a real server.

    python3 benchmarks/idle_memory.py                       # 1,000 then 10,000 connections
    python3 benchmarks/idle_memory.py --counts 1000,10000,20000 --json /tmp/idle.json
    python3 benchmarks/idle_memory.py --tracemalloc         # what each connection holds

Starts ``twistd --nodaemon coaptcp --tcp tcp:PORT:interface=127.0.0.1`` (``--server-cmd``
to change it), then opens connections one after the other until each count in
``--counts`` is reached.  Every connection sends its CSM and one ``GET /hello``, reads the
server's CSM and the 2.05 ``Hello, world!`` and then stays idle, held open.  At each count
the server's resident set (``VmRSS`` in ``/proc/PID/status``) is read and compared with the
value before the first connection; a fresh connection must still be answered.  At the end
every 100th held connection sends another GET (it must be answered) and every held
connection is checked to be still open (not closed or released by the server).

The client spreads its connections over source addresses 127.0.0.2, 127.0.0.3, ...
(``--per-address`` each, default 500), which keeps them under the server's default
per-address cap (``--max-connections-per-address``, 1,000) and the ephemeral ports of
any one address plentiful.  RLIMIT_NOFILE is raised for this process and for the server
(as root, the hard limit too when it is too small).

``--tracemalloc`` runs the server in-process instead (this script with ``--serve``:
``coaptcp.tap.plugin.makeService`` on the global reactor, under ``tracemalloc``) and, at each
count, prints the traced bytes per connection by allocation site and the objects per
connection by type (``gc``), diffed against the snapshot before the first connection.

Only loopback addresses are used.  Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import os
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
CSM = b"\x00\xe1"  # Len 0, TKL 0, code 7.01, no options
HELLO = b"Hello, world!"
READY_TIMEOUT = 20.0
IO_TIMEOUT = 10.0

DEFAULT_SERVER_CMD = "{twistd} --nodaemon --pidfile= coaptcp --tcp tcp:{port}:interface=127.0.0.1"


# -- CoAP over TCP framing (just enough for a GET and its answer) ----------------------------


def get_frame(token: bytes, path: str = "hello") -> bytes:
    """A GET with one Uri-Path option (RFC 8323 section 3.2 framing)."""
    segment = path.encode()
    assert len(segment) < 13 and len(token) < 9
    body = bytes([(11 << 4) | len(segment)]) + segment
    return bytes([(len(body) << 4) | len(token), 0x01]) + token + body


def split_frames(buf: bytearray) -> list[tuple[int, bytes, bytes]]:
    """Remove the complete frames from ``buf``: a list of (code, token, options+payload)."""
    frames = []
    while buf:
        nibble, tkl = buf[0] >> 4, buf[0] & 15
        extra = {13: 1, 14: 2, 15: 4}.get(nibble, 0)
        if len(buf) < 2 + extra:
            break
        if nibble < 13:
            length = nibble
        else:
            length = (
                int.from_bytes(buf[1 : 1 + extra], "big") + {13: 13, 14: 269, 15: 65805}[nibble]
            )
        total = 2 + extra + tkl + length
        if len(buf) < total:
            break
        code = buf[1 + extra]
        token = bytes(buf[2 + extra : 2 + extra + tkl])
        frames.append((code, token, bytes(buf[2 + extra + tkl : total])))
        del buf[:total]
    return frames


def payload_of(body: bytes) -> bytes:
    """The payload after the options of a message body."""
    i = 0
    while i < len(body):
        header = body[i]
        i += 1
        if header == 0xFF:
            return body[i:]
        delta, length = header >> 4, header & 15
        i += {13: 1, 14: 2}.get(delta, 0)
        if length == 13:
            length = body[i] + 13
            i += 1
        elif length == 14:
            length = int.from_bytes(body[i : i + 2], "big") + 269
            i += 2
        i += length
    return b""


class Peer:
    """One held client connection."""

    def __init__(self, index: int, source: str, port: int) -> None:
        self.index = index
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((source, 0))
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect((HOST, port))
        self.buf = bytearray()
        self.csm_seen = False

    def get_hello(self, token: bytes, first: bool = False) -> None:
        """Send (CSM and) GET /hello; wait for 2.05 Hello, world! (AssertionError if not)."""
        self.sock.sendall((CSM if first else b"") + get_frame(token))
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            for code, got_token, body in split_frames(self.buf):
                if code == 0xE1:
                    self.csm_seen = True
                elif code == 0xE2:  # Ping: answer with a Pong
                    self.sock.sendall(bytes([len(got_token), 0xE3]) + got_token)
                elif code >> 5 == 7:
                    raise AssertionError(
                        f"connection {self.index}: signal {code >> 5}.{code & 31:02d}"
                    )
                elif got_token == token:
                    payload = payload_of(body)
                    if code != 0x45 or payload != HELLO:
                        raise AssertionError(
                            f"connection {self.index}: {code >> 5}.{code & 31:02d} {payload!r}"
                        )
                    if not self.csm_seen:
                        raise AssertionError(f"connection {self.index}: no CSM from the server")
                    return
            data = self.sock.recv(4096)
            if not data:
                raise AssertionError(f"connection {self.index} closed by the server")
            self.buf += data
        raise AssertionError(f"connection {self.index}: no answer within {IO_TIMEOUT:g} s")


# -- resources --------------------------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to ``wanted`` (hard too, as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        wanted = hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft if soft != resource.RLIM_INFINITY else wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def slab_kib() -> int:
    """The kernel's slab memory in KiB (``Slab`` in ``/proc/meminfo``): sockets live there."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0


def settle_rss(pid: int, seconds: float = 1.0) -> int:
    """VmRSS once it stopped changing for ``seconds`` (bounded: at most 10 s)."""
    deadline = time.monotonic() + 10
    last = rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def fresh_get(port: int) -> None:
    """A new connection from 127.0.0.1 gets an answer to GET /hello."""
    peer = Peer(-1, HOST, port)
    try:
        peer.get_hello(b"\x7f\xff", first=True)
    finally:
        peer.sock.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            fresh_get(port)
            return
        except (OSError, AssertionError) as e:
            error = e
        time.sleep(0.1)
    raise SystemExit(f"server not ready within {timeout:g} s ({error}):\n{log.read_text()[-3000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def twistd_binary() -> str:
    beside = Path(sys.executable).parent / "twistd"
    return str(beside) if beside.exists() else (shutil.which("twistd") or "twistd")


# -- the in-process server (--serve, for --tracemalloc) -------------------------------------


def serve(port: int, snapdir: Path) -> None:
    """Run ``twistd coaptcp``'s service under tracemalloc; SIGUSR1 writes a snapshot."""
    import tracemalloc

    tracemalloc.start(int(os.environ.get("IDLE_MEMORY_FRAMES", "12")))
    from twisted.internet import reactor

    from coaptcp.tap.plugin import Options, makeService

    options = Options()
    options.parseOptions(["--tcp", f"tcp:{port}:interface={HOST}"])
    service = makeService(options)
    service.startService()
    taken = [0]

    def dump() -> None:
        gc.collect()
        counts = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
        )
        snapshot = tracemalloc.take_snapshot()
        name = snapdir / f"snap{taken[0]}"
        snapshot.dump(str(name) + ".tracemalloc")
        (snapdir / f"snap{taken[0]}.json").write_text(json.dumps(counts))
        (snapdir / f"snap{taken[0]}.done").write_text("")
        taken[0] += 1

    def dump_breakdown() -> None:
        protocols = list(service.factory.connections)
        if len(protocols) >= 2:
            shared = {id(o) for o in baseline}
            other = {id(o) for _, o, _ in owned_objects(protocols[-2].transport, shared)}
            walked = owned_objects(protocols[-1].transport, shared | other)
            rows = [[path, type(o).__qualname__, size] for path, o, size in walked]
            (snapdir / f"snap{taken[0]}.objects.json").write_text(json.dumps(rows))

    def take() -> None:
        if taken[0] == 0:  # everything alive now is shared by the connections to come
            gc.collect()
            baseline.extend(gc.get_objects())
            baseline.extend([r for o in list(baseline) for r in gc.get_referents(o)])
        else:
            dump_breakdown()
        dump()

    baseline: list[object] = []
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(take))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def owned_objects(root: object, shared: set[int]) -> list[tuple[str, object, int]]:
    """The objects reachable from ``root`` that no one else holds: (path, object, size).

    Walks instance attributes, slots, container items and other referents, stopping at
    objects in ``shared`` (ids) and at modules, classes and functions.  Sizes are
    ``sys.getsizeof``; an instance's ``__dict__`` is listed on its own line.
    """
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.CodeType, types.FrameType)
    seen: set[int] = set()
    found: list[tuple[str, object, int]] = []
    stack: list[tuple[str, object]] = [("transport", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or id(obj) in shared or isinstance(obj, skip) or obj is None:
            continue
        seen.add(id(obj))
        found.append((path, obj, sys.getsizeof(obj)))
        children: list[tuple[str, object]] = []
        if isinstance(obj, dict):
            children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
            children += [(f"{path}.<key>", k) for k in obj]
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        elif isinstance(obj, types.MethodType):
            children = [(f"{path}.__self__", obj.__self__)]
        else:
            slots = [n for c in type(obj).__mro__ for n in c.__dict__.get("__slots__", ())]
            children = [(f"{path}.{n}", getattr(obj, n)) for n in slots if hasattr(obj, n)]
            state = getattr(obj, "__dict__", None)
            if isinstance(state, dict):
                if id(state) not in seen:
                    seen.add(id(state))
                    found.append((f"{path}.__dict__", state, sys.getsizeof(state)))
                children += [(f"{path}.{k}", v) for k, v in state.items()]
            if not children:
                children = [(f"{path}.<ref>", r) for r in gc.get_referents(obj)]
        stack.extend(reversed(children))
    return found


def request_snapshot(
    proc: subprocess.Popen[bytes], snapdir: Path, number: int
) -> tuple[Any, dict[str, int]]:
    import tracemalloc

    proc.send_signal(signal.SIGUSR1)
    done = snapdir / f"snap{number}.done"
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the server took no snapshot")
        time.sleep(0.2)
    snapshot = tracemalloc.Snapshot.load(str(snapdir / f"snap{number}.tracemalloc"))
    counts = json.loads((snapdir / f"snap{number}.json").read_text())
    objects = snapdir / f"snap{number}.objects.json"
    if objects.exists():
        print_breakdown(json.loads(objects.read_text()))
    return snapshot, counts


def print_breakdown(rows: list[list[Any]]) -> None:
    """Print what one connection owns, object by object (see :func:`owned_objects`)."""
    print(
        f"\none idle connection owns {len(rows)} objects, "
        f"{sum(r[2] for r in rows)} bytes (sys.getsizeof):"
    )
    for path, kind, size in rows:
        print(f"  {size:6d} B  {kind:<28} {path}")


def report_snapshot_diff(
    before: Any, after: Any, counts0: dict[str, int], counts1: dict[str, int], n: int
) -> dict[str, Any]:
    """Print traced bytes and objects per connection (growth from ``before`` to ``after``)."""
    import tracemalloc

    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    ]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    total = sum(s.size for s in after.statistics("filename")) - sum(
        s.size for s in before.statistics("filename")
    )
    print(f"\ntraced Python memory: {total / n:.0f} bytes per connection ({n} connections)")
    print("by allocation site (bytes per connection, allocations per connection):")
    sites = []
    for stat in after.compare_to(before, "lineno")[:25]:
        if stat.size_diff <= 0:
            continue
        frame = stat.traceback[0]
        name = frame.filename
        if name.startswith(str(REPO)):
            name = os.path.relpath(name, REPO)
        where = f"{name}:{frame.lineno}"
        line = f"{stat.size_diff / n:8.0f} B {stat.count_diff / n:6.2f}  {where}"
        print("  " + line)
        sites.append(
            {
                "where": where,
                "bytes_per_conn": round(stat.size_diff / n, 1),
                "allocs_per_conn": round(stat.count_diff / n, 2),
            }
        )
    print("objects per connection by type (gc-tracked; growth):")
    types = []
    for name in sorted(counts1, key=lambda k: counts1[k] - counts0.get(k, 0), reverse=True)[:25]:
        grew = counts1[name] - counts0.get(name, 0)
        if grew < n // 2:
            break
        print(f"  {grew / n:6.2f}  {name}")
        types.append({"type": name, "per_conn": round(grew / n, 2)})
    print("largest allocation sites, traceback (first 5 sites):")
    for stat in after.compare_to(before, "traceback")[:5]:
        print(f"  {stat.size_diff / n:.0f} B per connection:")
        for frame in list(stat.traceback)[-6:]:
            print(f"      {frame.filename}:{frame.lineno}")
    return {"traced_bytes_per_conn": round(total / n, 1), "sites": sites, "types": types}


# -- the driver -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--counts", default="1000,10000", help="connection counts, ascending (default 1000,10000)"
    )
    parser.add_argument(
        "--per-address", type=int, default=500, help="connections per source address (default 500)"
    )
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER_CMD,
        help="server command; {port}, {python} and {twistd} are replaced (default: %(default)s)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run the server in-process under tracemalloc and report what each connection holds",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        raise_nofile(1 << 20)
        serve(args.serve, Path(args.snapshot_dir))
        return 0
    try:
        counts = [int(c) for c in args.counts.split(",")]
    except ValueError:
        parser.error(f"--counts wants numbers, not {args.counts!r}")
    if not counts or counts != sorted(counts) or counts[0] < 1:
        parser.error("--counts must be ascending positive numbers")
    if not 1 <= args.per_address <= 20000:
        parser.error("--per-address must be between 1 and 20000")
    addresses_needed = -(-counts[-1] // args.per_address)
    if addresses_needed > 250:
        parser.error("too many connections for 127.0.0.2-127.0.0.251 at this --per-address")

    nofile = raise_nofile(counts[-1] + 200)
    if nofile < counts[-1] + 50:
        parser.error(f"RLIMIT_NOFILE is {nofile}; too small for {counts[-1]} connections")

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="coaptcp-idle-"))
    log = workdir / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO)
        + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
    }
    if args.tracemalloc:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(port),
            "--snapshot-dir",
            str(workdir),
        ]
    else:
        cmd = args.server_cmd.replace("{python}", shlex.quote(sys.executable)).replace(
            "{twistd}", shlex.quote(twistd_binary())
        )
        argv = shlex.split(cmd.replace("{port}", str(port)))
    server_nofile = counts[-1] + 1000

    def limits() -> None:
        raise_nofile(server_nofile)

    print(f"server: {' '.join(shlex.quote(a) for a in argv)}", flush=True)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir, env=env, preexec_fn=limits
        )
    peers: list[Peer] = []
    results: dict[str, Any] = {"server_cmd": argv, "counts": [], "checks": {}}
    ok = True
    try:
        # Under tracemalloc, importing Twisted alone takes seconds.
        wait_ready(port, proc, log, READY_TIMEOUT * (6 if args.tracemalloc else 1))
        time.sleep(1.0)
        base = settle_rss(proc.pid)
        slab0 = slab_kib()
        results["rss_base_kib"] = base
        print(
            f"server pid {proc.pid}, RLIMIT_NOFILE {server_nofile}; VmRSS before: {base} KiB",
            flush=True,
        )
        if args.tracemalloc:
            snap0, counts0 = request_snapshot(proc, workdir, 0)
        snapshots = 1
        previous_n, previous_rss = 0, base
        print(
            f"{'conns':>7} {'VmRSS_KiB':>10} {'KiB/conn':>9} {'marginal':>9} "
            f"{'slab/conn':>9} {'open_s':>7}  fresh GET"
        )
        for n in counts:
            started = time.monotonic()
            while len(peers) < n:
                i = len(peers)
                source = f"127.0.0.{2 + i // args.per_address}"
                peer = Peer(i, source, port)
                peers.append(peer)
                peer.get_hello(i.to_bytes(4, "big"), first=True)
            opened = time.monotonic() - started
            rss = settle_rss(proc.pid)
            slab = (slab_kib() - slab0) / n
            fresh = "answered"
            try:
                fresh_get(port)
            except (OSError, AssertionError) as error:
                fresh, ok = f"FAILED: {error}", False
            per = (rss - base) / n
            marginal = (rss - previous_rss) / (n - previous_n)
            print(
                f"{n:>7} {rss:>10} {per:>9.2f} {marginal:>9.2f} {slab:>9.2f} {opened:>7.1f}  "
                f"{fresh}",
                flush=True,
            )
            entry: dict[str, Any] = {
                "conns": n,
                "rss_kib": rss,
                "kib_per_conn": round(per, 2),
                "marginal_kib_per_conn": round(marginal, 2),
                "kernel_slab_kib_per_conn_both_ends": round(slab, 2),
                "open_s": round(opened, 1),
                "fresh_get": fresh,
            }
            if args.tracemalloc:
                snap, counts_now = request_snapshot(proc, workdir, snapshots)
                snapshots += 1
                entry["tracemalloc"] = report_snapshot_diff(snap0, snap, counts0, counts_now, n)
            results["counts"].append(entry)
            previous_n, previous_rss = n, rss
        # Every 100th held connection is still served; none was closed by the server.
        sample = peers[::100]
        for peer in sample:
            peer.get_hello(b"\xaa" + peer.index.to_bytes(4, "big"))
        poller = select.poll()
        for peer in peers:
            poller.register(peer.sock.fileno(), select.POLLIN | select.POLLRDHUP | select.POLLHUP)
        events = poller.poll(0)
        closed = sum(1 for _, mask in events if mask & (select.POLLRDHUP | select.POLLHUP))
        pending = len(events) - closed
        print(
            f"held connections: {len(peers)}; {len(sample)} sampled answered a second GET; "
            f"{closed} closed by the server, {pending} with unread data"
        )
        results["checks"] = {
            "held": len(peers),
            "sampled_answered": len(sample),
            "closed_by_server": closed,
            "unread": pending,
        }
        if closed:
            ok = False
        if proc.poll() is not None:
            print(f"server exited ({proc.returncode})")
            ok = False
        results["ok"] = ok
    finally:
        for peer in peers:
            peer.sock.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    print("PASS" if ok else "FAIL", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
