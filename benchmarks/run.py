#!/usr/bin/env python3
"""Benchmark runner: CoAP over TCP/TLS/WebSocket servers under closed-loop load from loadgen.

For every server named in --servers and every transport of --transports
(tcp: coap+tcp, tls: coaps+tcp, ws: coap+ws, wss: coaps+ws) it
  * starts the server as a subprocess on a free 127.0.0.1 port (pinned to
    CPU 0 with taskset when there are at least two CPUs),
  * waits until the port accepts and a real GET of the benchmark path answers
    2.05 with the expected payload (the server is skipped, with a message,
    when its command fails, exits or never answers),
  * runs loadgen (pinned to CPU 1) for every (connections x in-flight) cell
    of the matrix, --reps times each, and keeps the median of each metric,
  * stops the server.
Then it prints one table with rps / p50 / p99 per server, transport and cell,
the ratio of every server to aiocoap (and of ours to libcoap) on each
transport, and each server's requests/s on every transport relative to its own
coap+tcp.  The TLS transports use a throwaway certificate made with
coaptcp.testing.certs; loadgen does not verify it (loopback only).

Servers:
  aiocoap  benchmarks/aiocoap_server.py PORT            GET /hello
  coaptcp  python -m twisted --log-level=warn coaptcp --tcp tcp:PORT:interface=127.0.0.1
           (override with --coaptcp-cmd, "{port}" is replaced)   GET /hello
  libcoap  coap-server-openssl -A 127.0.0.1 -p PORT -d 4; the runner first
           PUTs "Hello, world!" to /hello (a dynamic resource, -d), so GET
           /hello is the same request and payload as for the others; the
           response lacks the Content-Format option the others send.
           tls: with -c CERT -j KEY it serves coaps+tcp on PORT + 1.
           ws/wss: libcoap 4.3.1 as built by Debian has no WebSocket support.

Everything runs on the loopback interface only; every load run is bounded by
loadgen's own time and request limits and by a subprocess timeout here.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HOST = "127.0.0.1"
PATH = "/hello"
PAYLOAD = b"Hello, world!"
DEFAULT_COAPTCP_CMD = "{python} -m twisted --log-level=warn coaptcp {listen}"
TRANSPORTS = ("tcp", "tls", "ws", "wss")
# our listener options per transport ({cert}/{key}: the throwaway certificate)
COAPTCP_LISTEN = {
    "tcp": "--tcp tcp:{port}:interface=127.0.0.1",
    "tls": "--tls tcp:{port}:interface=127.0.0.1 --certificate {cert} --private-key {key}",
    "ws": "--ws tcp:{port}:interface=127.0.0.1",
    "wss": "--ws ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
}
LOADGEN_FLAGS = {"tcp": [], "tls": ["-S"], "ws": ["-W"], "wss": ["-S", "-W"]}
# loadgen links OpenSSL (TLS, and SHA-1/base64 for the WebSocket handshake):
# Debian package libssl-dev
LOADGEN_LIBS = ("-lssl", "-lcrypto")
SERVER_NAMES = ("aiocoap", "coaptcp", "libcoap", "bare", "bare-eager", "base")
LIBCOAP_BINARIES = ("coap-server-openssl", "coap-server-notls", "coap-server-gnutls",
                    "coap-server")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# loadgen build

def build_loadgen(cc="cc"):
    """Compile loadgen.c into a per-source-hash directory under the temp dir."""
    src = os.path.join(HERE, "loadgen.c")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    outdir = os.path.join(tempfile.gettempdir(), "coaptcp-bench-" + digest)
    exe = os.path.join(outdir, "loadgen")
    if os.access(exe, os.X_OK):
        return exe
    os.makedirs(outdir, exist_ok=True)
    tmp_exe = f"{exe}.{os.getpid()}"
    subprocess.run([cc, "-O2", "-Wall", "-o", tmp_exe, src, *LOADGEN_LIBS], check=True)
    os.replace(tmp_exe, exe)
    log(f"built {exe}")
    return exe


# --------------------------------------------------------------------------
# a tiny blocking CoAP-over-TCP client (readiness probe and libcoap's PUT)

def _enc_len(n):
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    if n < 65805:
        return 14, (n - 269).to_bytes(2, "big")
    return 15, (n - 65805).to_bytes(4, "big")


def _frame(code, token=b"", body=b""):
    nib, ext = _enc_len(len(body))
    return bytes([nib << 4 | len(token)]) + ext + bytes([code]) + token + body


def _uri_path_options(path):
    out = b""
    last = 0
    for seg in [s for s in path.split("/") if s]:
        seg = seg.encode()
        assert len(seg) < 13 + 256
        delta = 11 - last
        if len(seg) < 13:
            out += bytes([delta << 4 | len(seg)]) + seg
        else:
            out += bytes([delta << 4 | 13, len(seg) - 13]) + seg
        last = 11
    return out


def _payload_of(body):
    """Skip the options of a message body, return the payload."""
    i = 0
    while i < len(body):
        h = body[i]
        i += 1
        if h == 0xFF:
            return body[i:]
        d, ln = h >> 4, h & 15
        i += {13: 1, 14: 2}.get(d, 0)
        if ln == 13:
            ln = body[i] + 13
            i += 1
        elif ln == 14:
            ln = int.from_bytes(body[i:i + 2], "big") + 269
            i += 2
        i += ln
    return b""


def coap_request(port, method, path, payload=b"", timeout=2.0):
    """Send one request (method 1=GET, 3=PUT) on a fresh connection.

    Returns (code, payload). Raises OSError / TimeoutError on failure."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        body = _uri_path_options(path) + (b"\xff" + payload if payload else b"")
        s.sendall(_frame(0xE1) + _frame(method, b"\x42\x42", body))
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # parse complete frames
            while buf:
                nib, tkl = buf[0] >> 4, buf[0] & 15
                extn = {13: 1, 14: 2, 15: 4}.get(nib, 0)
                if len(buf) < 2 + extn:
                    break
                blen = nib if nib < 13 else (
                    int.from_bytes(buf[1:1 + extn], "big") + {13: 13, 14: 269, 15: 65805}[nib])
                total = 2 + extn + tkl + blen
                if len(buf) < total:
                    break
                code = buf[1 + extn]
                token = buf[2 + extn:2 + extn + tkl]
                mbody = buf[2 + extn + tkl:total]
                buf = buf[total:]
                if code >> 5 == 7:  # signaling (CSM, Ping...)
                    if code == 0xE2:
                        s.sendall(_frame(0xE3, token))
                    continue
                if token == b"\x42\x42":
                    return code, _payload_of(mbody)
            data = s.recv(65536)
            if not data:
                raise ConnectionError("connection closed by server")
            buf += data
        raise TimeoutError(f"no response within {timeout:.1f}s")


def code_str(code):
    return f"{code >> 5}.{code & 31:02d}"


# --------------------------------------------------------------------------
# servers

def _port_free(port):
    try:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind((HOST, port))
            u.bind((HOST, port))
    except OSError:
        return False
    return True


def free_port(also=()):
    """A port free for both TCP and UDP on 127.0.0.1 (libcoap binds both), and
    so are port + each offset in ``also`` (libcoap's TLS port is port + 1,
    aiocoap's coaps+ws server also binds coap+ws on port - 1)."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((HOST, port))
            except OSError:
                continue
        if all(0 < port + d < 65536 and _port_free(port + d) for d in also):
            return port
    raise RuntimeError("no free port")


def proc_cpu_seconds(pid):
    """utime + stime of a process from /proc (None if unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(pid):
    """CPU seconds of ``pid`` and all its descendants (the workers of --workers N)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        cpu = proc_cpu_seconds(p)
        if cpu is None:
            if p == pid:
                return None
            continue
        total += cpu
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def system_cpu_seconds():
    """(user+nice+system, steal) CPU seconds of the whole machine from /proc/stat.

    Interrupt/softirq time is left out: on loopback it is the network work of
    the two processes under test, not of anybody else."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        tck = os.sysconf("SC_CLK_TCK")
        return (v[0] + v[1] + v[2]) / tck, (v[7] if len(v) > 7 else 0) / tck
    except (OSError, IndexError, ValueError):
        return None


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_busy_pct(seconds=1.0):
    """CPU use (% of one core) of the whole machine over a short idle sample."""
    a = system_cpu_seconds()
    time.sleep(seconds)
    b = system_cpu_seconds()
    if a is None or b is None:
        return None
    return 100.0 * (b[0] - a[0]) / seconds


class Server:
    def __init__(self, name, argv, path, payload, setup=None, note="", transport="tcp",
                 port_offset=0, also_free=(), probe=None):
        self.name = name
        self.argv = argv
        self.path = path
        self.payload = payload
        self.setup = setup  # callable(port) run once the port accepts
        self.note = note
        self.transport = transport
        self.port_offset = port_offset  # loadgen's port = the command's {port} + this
        self.also_free = also_free  # offsets of other ports the server binds
        self.probe = probe  # callable(port) -> None or why not ready (tls/ws)
        self.proc = None
        self.logfile = None

    @property
    def label(self):
        return self.name if self.transport == "tcp" else f"{self.name}-{self.transport}"

    def start(self, port, pin_cpu, logdir, ready_timeout):
        """Start the server with {port} = port; it serves loadgen on
        port + port_offset.  Returns None on success or a reason to skip it."""
        argv = [a.replace("{port}", str(port)) for a in self.argv]
        lg_port = port + self.port_offset
        if pin_cpu is not None:
            argv = ["taskset", "-c", str(pin_cpu), *argv]
        self.cmdline = " ".join(shlex.quote(a) for a in argv)
        self.logpath = os.path.join(logdir, f"{self.label}.log")
        self.logfile = open(self.logpath, "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        log(f"[{self.label}] starting: {self.cmdline}")
        try:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self.logfile, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        except OSError as e:
            return f"command failed to start: {e}"
        deadline = time.monotonic() + ready_timeout
        accepted = False
        last_err = "port never accepted"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return (f"exited with status {self.proc.returncode} before serving; "
                        f"log tail:\n{self.log_tail()}")
            try:
                if not accepted:
                    with socket.create_connection((HOST, lg_port), timeout=0.5):
                        accepted = True
                    if self.setup:
                        self.setup(port)
                if self.probe:
                    why = self.probe(lg_port)
                    if why is None:
                        return None
                    last_err = why
                    time.sleep(0.2)
                    continue
                code, got = coap_request(port, 1, self.path)
                if code == 0x45 and got == self.payload:
                    return None
                last_err = (f"GET {self.path} answered {code_str(code)} {got[:60]!r}, "
                            f"expected 2.05 {self.payload!r}")
            except (OSError, TimeoutError, ConnectionError) as e:
                last_err = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        return f"not ready within {ready_timeout:.0f}s ({last_err}); log tail:\n{self.log_tail()}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        return tree_cpu_seconds(self.proc.pid) if self.alive() else None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.logfile:
            self.logfile.close()
            self.logfile = None

    def log_tail(self, n=15):
        try:
            self.logfile.flush()
            with open(self.logpath, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            if len(lines) > n:  # the first lines often hold the actual error
                lines = [*lines[:4], "...", *lines[-(n - 5):]]
            return "\n".join("    " + line for line in lines) or "    (empty)"
        except OSError:
            return "    (no log)"


def loadgen_probe(loadgen, transport, path, payload):
    """Readiness check over TLS/WebSockets: one short loadgen run (1 x 1)
    must get valid responses and no error."""
    def probe(port):
        argv = [loadgen, "-h", HOST, "-p", str(port), "-c", "1", "-n", "1", "-w", "0",
                "-d", "0.3", "-t", "2", "-u", path, "-e", payload.decode(),
                *LOADGEN_FLAGS[transport]]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return "loadgen probe timed out"
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        res = json.loads(lines[-1]) if lines else {}
        if res.get("status") == "ok" and res.get("requests", 0) > 0 and not res.get("errors"):
            return None
        return f"loadgen probe: {res.get('status')}, {p.stderr.strip()[-300:]}"
    return probe


def make_servers(args, transport, certs, loadgen):
    """name -> Server for one transport, or name -> str: why it cannot run."""
    servers = {}
    cert = {"cert": certs["server"], "key": certs["server_key"]} if certs else {}
    probe = (loadgen_probe(loadgen, transport, PATH, PAYLOAD)
             if transport != "tcp" else None)
    aio = [sys.executable, os.path.join(HERE, "aiocoap_server.py"), "{port}"]
    if transport != "tcp":
        aio += ["--transport", transport]
    if transport in ("tls", "wss"):
        aio += ["--cert", cert["cert"], "--key", cert["key"]]
    servers["aiocoap"] = Server(
        "aiocoap", aio, PATH, PAYLOAD, transport=transport, probe=probe,
        also_free=(-1,) if transport == "wss" else (),
        note=f"aiocoap {aiocoap_version()}, "
             + {"tcp": "tcpserver", "tls": "tlsserver", "ws": "ws",
                "wss": "ws with TLS"}[transport] + " transport only")
    cmd = args.coaptcp_cmd.replace("{python}", shlex.quote(sys.executable))
    if "{listen}" in cmd:
        listen = COAPTCP_LISTEN[transport].format(port="{port}", **{
            k: shlex.quote(v) for k, v in cert.items()})
        cmd = cmd.replace("{listen}", listen)
        servers["coaptcp"] = Server("coaptcp", shlex.split(cmd), PATH, PAYLOAD,
                                    transport=transport, probe=probe,
                                    note="twisted, this repository")
    elif transport == "tcp":
        servers["coaptcp"] = Server("coaptcp", shlex.split(cmd), PATH, PAYLOAD,
                                    note="twisted, this repository")
    else:
        servers["coaptcp"] = ("--coaptcp-cmd has no {listen}: it gives the coap+tcp "
                              "listener only")
    binary = args.libcoap_bin or next((b for b in LIBCOAP_BINARIES if shutil.which(b)), None)
    if not binary:
        servers["libcoap"] = "no libcoap server binary found ({})".format(
            ", ".join(LIBCOAP_BINARIES))
    elif transport in ("ws", "wss"):
        servers["libcoap"] = (f"{binary} ({libcoap_version(binary)}) has no WebSocket "
                              "server (Debian builds libcoap 4.3.1 without WebSockets)")
    elif transport == "tls" and "notls" in os.path.basename(binary):
        servers["libcoap"] = f"{binary} has no TLS"
    else:
        def put_hello(port):
            code, _ = coap_request(port, 3, PATH, PAYLOAD)
            if code not in (0x41, 0x44):  # 2.01 Created / 2.04 Changed
                raise ConnectionError(f"PUT {PATH} answered {code_str(code)}")
        argv = [binary, "-A", HOST, "-p", "{port}", "-d", "4", "-v", "3"]
        note = (f"{binary} ({libcoap_version(binary)}); /hello is a dynamic resource "
                "created by PUT (-d 4); its 2.05 carries no Content-Format option")
        extra = {}
        if transport == "tls":
            argv += ["-c", cert["cert"], "-j", cert["key"]]
            note += "; coaps+tcp on port + 1 (-c/-j), the PUT goes over coap+tcp"
            extra = {"port_offset": 1, "also_free": (1,), "probe": probe}
        servers["libcoap"] = Server("libcoap", argv, PATH, PAYLOAD, setup=put_hello,
                                    transport=transport, note=note, **extra)
    if transport == "tcp":
        bare = [sys.executable, os.path.join(HERE, "bare_server.py"), "{port}"]
        servers["bare"] = Server("bare", bare, PATH, PAYLOAD,
                                 note="the bare Twisted ceiling (bare_server.py): frames "
                                      "split, a constant 2.05, written by transport.write")
        servers["bare-eager"] = Server("bare-eager", [*bare, "--eager"], PATH, PAYLOAD,
                                       note="bare_server.py --eager: the same, sent from "
                                            "dataReceived when Twisted holds nothing")
    else:
        for name in ("bare", "bare-eager"):
            servers[name] = "the bare Twisted ceiling serves coap+tcp only"
    if args.baseline:
        base_cmd = cmd.replace("{listen}", COAPTCP_LISTEN[transport].format(
            port="{port}", **{k: shlex.quote(v) for k, v in cert.items()}))
        servers["base"] = Server("base", ["env", "-C", args.baseline,
                                          f"PYTHONPATH={args.baseline}",
                                          *shlex.split(base_cmd)],
                                 PATH, PAYLOAD, transport=transport, probe=probe,
                                 note=f"coaptcp from {args.baseline} (--baseline)")
    return servers


def aiocoap_version():
    try:
        import aiocoap.meta
        return aiocoap.meta.version
    except Exception:
        return "?"


def libcoap_version(binary):
    """'libcoap 4.3.1' from the 'Build:' line of the usage text."""
    try:
        out = subprocess.run([binary, "-?"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Build:"):
            return "libcoap " + line.split(":", 1)[1].strip()
    return "?"


# --------------------------------------------------------------------------
# running loadgen

def run_loadgen(args, loadgen, port, server, conns, inflight, pin_cpu):
    argv = [loadgen, "-h", HOST, "-p", str(port + server.port_offset), "-c", str(conns),
            "-n", str(inflight), "-d", str(args.duration), "-w", str(args.warmup),
            "-u", server.path, "-e", server.payload.decode(), "-t", "10",
            *LOADGEN_FLAGS[server.transport]]
    if pin_cpu is not None:
        argv = ["taskset", "-c", str(pin_cpu), *argv]
    cpu0 = server.cpu_seconds()
    sys0 = system_cpu_seconds()
    kids0 = children_cpu_seconds()
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True,
                           timeout=10 + args.warmup + args.duration + 30)
    except subprocess.TimeoutExpired:
        return {"status": "loadgen_timeout", "errors": 1}
    wall = time.monotonic() - t0
    cpu1 = server.cpu_seconds()
    sys1 = system_cpu_seconds()
    kids1 = children_cpu_seconds()
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"status": "no_output", "errors": 1, "rc": p.returncode,
                "stderr": p.stderr[-1000:]}
    res = json.loads(lines[-1])
    res["rc"] = p.returncode
    if p.stderr.strip():
        res["stderr"] = p.stderr[-1000:]
    if cpu0 is not None and cpu1 is not None and wall > 0:
        res["server_cpu_pct"] = round(100.0 * (cpu1 - cpu0) / wall, 1)
        if sys0 is not None and sys1 is not None:
            # CPU used by anything but the server and loadgen: other work on
            # the machine that competes with the benchmark (noise)
            other = (sys1[0] - sys0[0]) - (cpu1 - cpu0) - (kids1 - kids0)
            res["other_cpu_pct"] = round(max(0.0, 100.0 * other / wall), 1)
            res["steal_pct"] = round(100.0 * (sys1[1] - sys0[1]) / wall, 1)
    return res


def median_of(runs, key):
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------
# output

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def _ratio_rows(w, results, label, num, den, transports, cells):
    """Rows of num/den (rps, p50, p99) per transport and cell; num and den are
    (server, transport-or-None) pairs, None meaning the row's transport."""
    for tr in transports:
        for (c, n) in cells:
            a = results.get((den[0], den[1] or tr, c, n))
            b = results.get((num[0], num[1] or tr, c, n))
            if not a or not b:
                continue
            ratios = []
            for k in ("rps", "p50_us", "p99_us"):
                x, y = a["median"][k], b["median"][k]
                ratios.append(y / x if x and y is not None else None)
            r_rps, r_p50, r_p99 = (fmt(x, ".2f") for x in ratios)
            w(f"{label:<24} {tr:>4} {c:>5} {n:>5} {r_rps:>8} {r_p50:>8} {r_p99:>8}\n")


def print_table(results, servers_order, cells, skipped, notes, transports=("tcp",),
                out=sys.stdout):
    w = out.write
    w("\n")
    if results:
        w(f"{'server':<8} {'tr':>4} {'conns':>5} {'infl':>5} {'rps':>10} {'p50_us':>10} "
          f"{'p99_us':>10} {'errors':>7} {'lg%':>6} {'srv%':>6} {'other%':>6}\n")
    else:
        w("(no results)\n")
    for tr in transports:
        for name in servers_order:
            for (c, n) in cells:
                r = results.get((name, tr, c, n))
                if r is None:
                    continue
                m = r["median"]
                w(f"{name:<8} {tr:>4} {c:>5} {n:>5} {fmt(m['rps'], '.0f'):>10} "
                  f"{fmt(m['p50_us'], '.0f'):>10} {fmt(m['p99_us'], '.0f'):>10} "
                  f"{fmt(m['errors'], 'd'):>7} {fmt(m['loadgen_cpu_pct'], '.0f'):>6} "
                  f"{fmt(m['server_cpu_pct'], '.0f'):>6} {fmt(m['other_cpu_pct'], '.0f'):>6}\n")
    have = {(k[0], k[1]) for k in results}
    head = f"{'':<24} {'tr':>4} {'conns':>5} {'infl':>5} {'rps':>8} {'p50':>8} {'p99':>8}\n"
    if any(s == "aiocoap" for s, _ in have) and any(s != "aiocoap" for s, _ in have):
        w("\nratio to aiocoap on the same transport (rps: >1 is faster; p50/p99: <1 is "
          "faster)\n" + head)
        for name in servers_order:
            if name != "aiocoap":
                label = "coaptcp/aiocoap (ours)" if name == "coaptcp" else f"{name}/aiocoap"
                _ratio_rows(w, results, label, (name, None), ("aiocoap", None),
                            transports, cells)
    if any(s == "libcoap" for s, _ in have) and any(s != "libcoap" for s, _ in have):
        w("\nratio to libcoap on the same transport\n" + head)
        for name in servers_order:
            if name not in ("libcoap", "aiocoap"):
                label = "coaptcp/libcoap (ours)" if name == "coaptcp" else f"{name}/libcoap"
                _ratio_rows(w, results, label, (name, None), ("libcoap", None),
                            transports, cells)
    for other in ("base", "bare-eager", "bare"):
        if any(s == other for s, _ in have) and any(s == "coaptcp" for s, _ in have):
            w(f"\nratio of ours to {other}\n" + head)
            _ratio_rows(w, results, f"coaptcp/{other}", ("coaptcp", None), (other, None),
                        transports, cells)
    others = [t for t in transports if t != "tcp"]
    if others and "tcp" in transports:
        w("\neach server on TLS/WebSockets relative to itself on coap+tcp\n" + head)
        for name in servers_order:
            for tr in others:
                _ratio_rows(w, results, f"{name} {tr}/tcp", (name, tr), (name, "tcp"),
                            [tr], cells)
        summary = []
        for tr in others:
            a = results.get(("coaptcp", "tcp", 16, 16))
            b = results.get(("coaptcp", tr, 16, 16))
            if a and b and a["median"]["rps"] and b["median"]["rps"] is not None:
                r = b["median"]["rps"] / a["median"]["rps"]
                summary.append(f"  ours on {tr} / ours on tcp at 16 x 16: {r:.2f} "
                               f"({'meets' if r >= 0.5 else 'MISSES'} the target: within "
                               "2x, >= 0.50)\n")
        if summary:
            w("\n" + "".join(summary))
    for label, why in skipped.items():
        w(f"\nSKIPPED {label}: {why}\n")
    if notes:
        w("\nnotes:\n")
        for n in notes:
            w(f"  - {n}\n")
    w("\nrps/p50/p99: median over repetitions; errors: sum over repetitions; lg% = loadgen "
      "CPU (user+sys) in the measured window, srv% = server CPU over the whole loadgen run, "
      "other% = CPU used by other processes meanwhile (noise; should be ~0); 100 = one core; "
      "tr: tcp = coap+tcp, tls = coaps+tcp, ws = coap+ws, wss = coaps+ws\n")


def machine_info():
    info = {"nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def parse_list(s):
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {s!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers: {s!r}")
    return vals


def main():
    ap = argparse.ArgumentParser(description="CoAP-over-TCP server benchmark runner")
    ap.add_argument("--servers", default="aiocoap,coaptcp,libcoap",
                    help="comma-separated subset of " + ",".join(SERVER_NAMES) + " (default: "
                         "aiocoap,coaptcp,libcoap; bare and bare-eager: the bare Twisted "
                         "ceiling; base: coaptcp from --baseline)")
    ap.add_argument("--transports", default="tcp",
                    help="comma-separated subset of tcp,tls,ws,wss, or 'all' "
                         "(default: tcp)")
    ap.add_argument("--conns", type=parse_list, default=[1, 16, 64],
                    help="connection counts (default 1,16,64)")
    ap.add_argument("--inflight", type=parse_list, default=[1, 16],
                    help="requests in flight per connection (default 1,16)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per cell (default 3)")
    ap.add_argument("--duration", type=float, default=3.0,
                    help="measured seconds per run (default 3)")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="warm-up seconds per run (default 1)")
    ap.add_argument("--json", metavar="FILE", help="write all results as JSON to FILE")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--loadgen", help="use this loadgen binary instead of compiling one")
    ap.add_argument("--coaptcp-cmd", default=DEFAULT_COAPTCP_CMD,
                    help="command for the coaptcp server; {port}, {python} and {listen} "
                         "(the listener options of the transport) are replaced; without "
                         "{listen} the command serves coap+tcp only (default: %(default)s)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="server 'base': the coaptcp command with PYTHONPATH=DIR (another "
                         "checkout, say `git archive main | tar -x -C DIR`), for before/after "
                         "figures in one run")
    ap.add_argument("--libcoap-bin", help="libcoap server binary (default: the first found "
                    "of " + ", ".join(LIBCOAP_BINARIES) + ")")
    ap.add_argument("--retry-noisy", type=float, metavar="PCT",
                    help="repeat (at most twice) a run during which other processes used "
                         "more than PCT%% of a core (default: never)")
    ap.add_argument("--ready-timeout", type=float, default=20.0,
                    help="seconds a server gets to answer its first GET (default 20)")
    args = ap.parse_args()
    if args.reps < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("bad --reps/--duration/--warmup")

    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    for n in names:
        if n not in SERVER_NAMES:
            ap.error(f"unknown server {n!r}")
    if "base" in names and not args.baseline:
        ap.error("server 'base' needs --baseline DIR")
    transports = (list(TRANSPORTS) if args.transports.strip() == "all" else
                  [t.strip() for t in args.transports.split(",") if t.strip()])
    for t in transports:
        if t not in TRANSPORTS:
            ap.error(f"unknown transport {t!r} (choose from {', '.join(TRANSPORTS)}, all)")
    if not transports:
        ap.error("no transport")

    pin_server = pin_loadgen = None
    if not args.no_pin and shutil.which("taskset"):
        cpus = os.sched_getaffinity(0)
        if {0, 1} <= cpus:
            pin_server, pin_loadgen = 0, 1
        else:
            log(f"fewer than 2 usable CPUs ({sorted(cpus)}): not pinning")
    elif not args.no_pin:
        log("taskset not found: not pinning")

    loadgen = args.loadgen or build_loadgen()
    logdir = tempfile.mkdtemp(prefix="coaptcp-bench-logs-")
    certs = None
    if any(t in ("tls", "wss") for t in transports):
        sys.path.insert(0, REPO)
        from coaptcp.testing.certs import write_test_setup
        certs = {k: str(v) for k, v in write_test_setup(os.path.join(logdir, "certs")).items()}
    skipped = {}
    runnable = []  # (name, transport, Server) in run order
    for tr in transports:
        by_name = make_servers(args, tr, certs, loadgen)
        for n in names:
            srv = by_name[n]
            label = n if tr == "tcp" else f"{n}-{tr}"
            if isinstance(srv, str):
                skipped[label] = srv
            else:
                runnable.append((n, tr, srv))
    cells = [(c, n) for c in args.conns for n in args.inflight]
    est = len(runnable) * len(cells) * args.reps * (args.warmup + args.duration + 0.2)
    log(f"matrix: servers={','.join(names)} transports={','.join(transports)} "
        f"conns={args.conns} inflight={args.inflight} "
        f"reps={args.reps}, {args.warmup:g}s warm-up + {args.duration:g}s per run; "
        f"about {est:.0f}s of load")

    results = {}
    notes = []
    busy = machine_busy_pct()
    if busy is not None:
        log(f"machine CPU use before the run: {busy:.0f}% of one core")
        if busy > 10:
            notes.append(f"the machine was busy before the run ({busy:.0f}% of a core used "
                         "by other processes): expect noisy numbers")
    meta_servers = {}
    t_start = time.monotonic()
    for name, tr, srv in runnable:
        label = srv.label
        port = free_port(srv.also_free)
        try:
            why = srv.start(port, pin_server, logdir, args.ready_timeout)
            if why:
                log(f"[{label}] SKIPPED: {why}")
                skipped[label] = why
                continue
            log(f"[{label}] ready on {HOST}:{port + srv.port_offset} ({srv.note})")
            meta_servers[label] = {"cmd": srv.cmdline, "note": srv.note, "path": srv.path,
                                   "transport": tr, "payload": srv.payload.decode()}
            if srv.note:
                notes.append(f"{label}: {srv.note}")
            for (c, n) in cells:
                runs = []
                for rep in range(args.reps):
                    if not srv.alive():
                        runs.append({"status": "server_died", "errors": 1})
                        break
                    r = run_loadgen(args, loadgen, port, srv, c, n, pin_loadgen)
                    tries = 1
                    while (args.retry_noisy is not None and tries <= 2
                           and (r.get("other_cpu_pct") or 0) > args.retry_noisy):
                        log(f"[{label}] c={c} n={n} rep {rep + 1}: other processes used "
                            f"{r['other_cpu_pct']:.0f}% CPU, repeating")
                        r = run_loadgen(args, loadgen, port, srv, c, n, pin_loadgen)
                        tries += 1
                    r["tries"] = tries
                    runs.append(r)
                    log(f"[{label}] c={c} n={n} rep {rep + 1}: {r.get('status')} "
                        f"rps={fmt(r.get('rps'), '.0f')} p50={fmt(r.get('p50_us'), '.0f')}us "
                        f"p99={fmt(r.get('p99_us'), '.0f')}us errors={r.get('errors')} "
                        f"lg_cpu={fmt(r.get('cpu_pct'), '.0f')}% "
                        f"srv_cpu={fmt(r.get('server_cpu_pct'), '.0f')}% "
                        f"other_cpu={fmt(r.get('other_cpu_pct'), '.0f')}%")
                    if r.get("stderr"):
                        log("    loadgen stderr: " + r["stderr"].strip().replace("\n", "\n    "))
                ok_runs = [r for r in runs if r.get("status") == "ok"]
                median = {
                    "rps": median_of(ok_runs, "rps"),
                    "p50_us": median_of(ok_runs, "p50_us"),
                    "p99_us": median_of(ok_runs, "p99_us"),
                    "loadgen_cpu_pct": median_of(ok_runs, "cpu_pct"),
                    "server_cpu_pct": median_of(ok_runs, "server_cpu_pct"),
                    "other_cpu_pct": median_of(ok_runs, "other_cpu_pct"),
                    "errors": sum(int(r.get("errors", 0) or 0) for r in runs),
                    "failed_runs": len(runs) - len(ok_runs),
                }
                results[(name, tr, c, n)] = {"server": name, "transport": tr, "conns": c,
                                             "inflight": n, "median": median, "runs": runs}
            if not srv.alive():
                notes.append(f"{label}: server process died during the run "
                             f"(status {srv.proc.returncode})")
        finally:
            srv.stop()
    elapsed = time.monotonic() - t_start

    print_table(results, names, cells, skipped, notes, transports)
    if pin_server is not None:
        print(f"pinning: servers on CPU {pin_server}, loadgen on CPU {pin_loadgen} (taskset)")
    else:
        print("pinning: none")
    print(f"total time {elapsed:.0f}s")

    if args.json:
        doc = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items()},
            "pinning": {"server": pin_server, "loadgen": pin_loadgen},
            "servers": meta_servers,
            "skipped": skipped,
            "results": list(results.values()),
            "elapsed_s": round(elapsed, 1),
            "busy_before_pct": busy,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"results written to {args.json}")
    shutil.rmtree(logdir, ignore_errors=True)
    bad = any(r["median"]["errors"] or r["median"]["failed_runs"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
