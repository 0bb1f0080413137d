"""Self-test of loadgen against a deliberately awkward mock CoAP-over-TCP server.

Each scenario starts a small threaded mock server on 127.0.0.1, runs loadgen
against it for about a second and checks the JSON line loadgen prints:

  fragmented  responses written in 1-3 byte pieces, each preceded by a Ping
              (whose Pong the mock checks), empty messages, and a 300-byte
              payload that needs the 2-byte extended length (Len nibble 14)
  bigframe    a 70000-byte payload (Len nibble 15, 4-byte extended length)
  close       the server closes each connection after 50 responses
  badtoken    every 10th response carries a token that is not in flight
  badcode     4.04 instead of 2.05
  nocsm       the server never sends its CSM (loadgen starts after -t)
  silent      the server never answers a request (run ends on time)
  refused     nothing listens on the port

Usage: python benchmarks/selftest.py [--loadgen PATH]
(compiles loadgen.c into a temporary directory when --loadgen is not given).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import LOADGEN_LIBS  # noqa: E402
from run import _frame as frame  # noqa: E402  (one frame builder for both scripts)


def response_body(payload):
    # Content-Format: text/plain (option 12, empty value = 0), then payload
    return b"\xc0" + (b"\xff" + payload if payload else b"")


class FrameReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data

    def read(self):
        self._need(1)
        nib, tkl = self.buf[0] >> 4, self.buf[0] & 15
        extn = {13: 1, 14: 2, 15: 4}.get(nib, 0)
        self._need(2 + extn)
        if nib < 13:
            blen = nib
        else:
            blen = int.from_bytes(self.buf[1:1 + extn], "big") + {13: 13, 14: 269, 15: 65805}[nib]
        total = 2 + extn + tkl + blen
        self._need(total)
        code = self.buf[1 + extn]
        token = self.buf[2 + extn:2 + extn + tkl]
        body = self.buf[2 + extn + tkl:total]
        self.buf = self.buf[total:]
        return code, token, body


class MockServer:
    def __init__(self, scenario, payload):
        self.scenario = scenario
        self.payload = payload
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.problems = []
        self.pongs_ok = 0
        self.lock = threading.Lock()
        self.threads = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(0.5)
            th = threading.Thread(target=self._serve_guarded, args=(s,), daemon=True)
            th.start()
            self.threads.append(th)

    def _serve_guarded(self, s):
        try:
            self._serve(s)
        except (EOFError, OSError):
            pass
        finally:
            s.close()

    def _send(self, s, data):
        if self.scenario == "fragmented":
            i = 0
            step = 1
            while i < len(data):
                s.sendall(data[i:i + step])
                i += step
                step = step % 3 + 1
                if i % 7 == 0:
                    time.sleep(0.0002)
        else:
            s.sendall(data)

    def _serve(self, s):
        rd = FrameReader(s)
        sc = self.scenario
        if sc != "nocsm":
            # CSM with Max-Message-Size (option 2) = 131072
            self._send(s, frame(0xE1, b"", b"\x23\x02\x00\x00"))
        answered = 0
        ping_no = 0
        pings = set()  # Ping tokens whose Pong is outstanding
        while not self.stop.is_set():
            try:
                code, token, _body = rd.read()
            except TimeoutError:
                continue
            if code >> 5 == 7:
                if code == 0xE3:  # Pong: must echo the token of one of our Pings
                    if token in pings:
                        pings.discard(token)
                        with self.lock:
                            self.pongs_ok += 1
                    else:
                        self.problems.append(f"pong with token {token!r}")
                continue
            if code != 0x01:
                self.problems.append(f"unexpected code {code:#x}")
                continue
            if sc == "silent":
                continue
            if sc == "fragmented":
                ping_no += 1
                ptok = b"P%d" % ping_no
                pings.add(ptok)
                self._send(s, frame(0xE2, ptok))
                self._send(s, frame(0x00))  # empty message: to be ignored
            rcode = 0x84 if sc == "badcode" else 0x45
            rtoken = token
            if sc == "badtoken" and answered % 10 == 9:
                rtoken = b"\xde\xad\xbe\xef"
            self._send(s, frame(rcode, rtoken, response_body(self.payload)))
            answered += 1
            if sc == "close" and answered >= 50:
                return

    def close(self):
        self.stop.set()
        self.lsock.close()
        self.t.join(2)
        for th in self.threads:
            th.join(2)


def run_loadgen(loadgen, port, extra, payload, timeout=30):
    cmd = [loadgen, "-h", "127.0.0.1", "-p", str(port), "-u", "/hello",
           "-c", "2", "-n", "4", "-w", "0.2", "-d", "0.8", "-t", "1", *extra]
    if payload is not None:
        cmd += ["-e", payload.decode()]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    res = json.loads(lines[-1]) if lines else None
    return p.returncode, res, elapsed, p.stderr


def report(ok, name, rc, elapsed, detail):
    print(f"{'ok' if ok else 'FAIL':<4} {name:<11} rc={rc} {elapsed:.1f}s {detail}".rstrip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen")
    args = ap.parse_args()
    tmp = None
    loadgen = args.loadgen
    if not loadgen:
        tmp = tempfile.mkdtemp(prefix="loadgen-selftest-")
        loadgen = os.path.join(tmp, "loadgen")
        subprocess.run(["cc", "-O2", "-Wall", "-o", loadgen, os.path.join(HERE, "loadgen.c"),
                        *LOADGEN_LIBS], check=True)

    hello = b"Hello, world!"
    scenarios = [
        # name, payload served, expected payload (-e), extra args, check(rc, res, srv)
        ("fragmented", b"x" * 300, b"x" * 300, [],
         lambda rc, r, s: rc == 0 and r["errors"] == 0 and r["requests"] > 0
         and r["sig_ping"] > 0 and s.pongs_ok > 0 and not s.problems),
        ("bigframe", b"y" * 70000, b"y" * 70000, [],
         lambda rc, r, s: rc == 0 and r["errors"] == 0 and r["requests"] > 0),
        ("close", hello, hello, [],
         lambda rc, r, s: rc == 3 and r["status"] == "all_connections_lost"
         and r["err_conn_closed"] == 2 and r["err_lost"] == 8),
        # -T 0.1: requests whose response carried a wrong token time out and
        # are replaced, so the run goes on
        ("badtoken", hello, hello, ["-T", "0.1"],
         lambda rc, r, s: rc == 1 and r["err_bad_token"] > 0 and r["err_timeout"] > 0
         and r["requests"] > 0),
        ("badcode", hello, hello, [],
         lambda rc, r, s: rc == 1 and r["err_bad_code"] > 0 and r["requests"] == 0),
        ("payload", b"Goodbye", hello, [],
         lambda rc, r, s: rc == 1 and r["err_bad_payload"] > 0 and r["requests"] == 0),
        ("nocsm", hello, hello, [],
         lambda rc, r, s: rc == 0 and r["csm_missing"] == 2 and r["requests"] > 0),
        ("silent", hello, hello, [],
         lambda rc, r, s: rc == 1 and r["requests"] == 0 and r["total_sent"] == 8
         and r["err_stalled_conns"] == 2),
        ("silent", hello, hello, ["-T", "0.3"],
         lambda rc, r, s: rc == 1 and r["requests"] == 0 and r["err_timeout"] >= 8),
    ]
    failed = 0
    for name, served, expect, extra, check in scenarios:
        srv = MockServer(name, served)
        try:
            rc, res, elapsed, err = run_loadgen(loadgen, srv.port, extra, expect)
        finally:
            srv.close()
        ok = res is not None and check(rc, res, srv) and elapsed < 10
        failed += not ok
        detail = "" if ok else f"{json.dumps(res)} problems={srv.problems} stderr={err[-500:]}"
        report(ok, name, rc, elapsed, detail)

    # refused: grab a free port and close it again
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, res, elapsed, err = run_loadgen(loadgen, port, [], hello)
    ok = rc == 3 and res is not None and res["status"] == "setup_failed" and elapsed < 10
    failed += not ok
    report(ok, "refused", rc, elapsed, "" if ok else f"{res} {err}")

    # non-loopback targets are refused outright (no packet is sent)
    p = subprocess.run([loadgen, "-h", "192.0.2.1", "-p", "5683", "-u", "/x", "-d", "1"],
                       capture_output=True, text=True, timeout=10)
    ok = p.returncode == 2 and "non-loopback" in p.stderr
    failed += not ok
    report(ok, "nonloopback", p.returncode, 0.0, "" if ok else p.stderr)

    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    total = len(scenarios) + 2
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
