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
  options     -o/-V: Proxy-Uri, Uri-Host, Uri-Port (an integer), Proxy-Scheme and an
              empty integer option sorted in with Uri-Path; the two connections carry
              the two -V variants (also over -W); bad -o/-V values are usage errors

The same mock also speaks TLS (loadgen -S: the mock checks that ALPN "coap" was
negotiated), CoAP over WebSockets (-W, RFC 8323 section 4: the mock checks the
Upgrade request, that every client frame is masked and that every message has
Len 0, and answers with the Sec-WebSocket-Accept of RFC 6455) and both (-S -W):

  tls-*       fragmented (each piece its own TLS record), bigframe, close, and
              fragmented with the server limited to TLS 1.2
  ws-*        fragmented: every response split into 2-3 WebSocket fragments with
              a WebSocket Ping (whose Pong the mock checks) between them, besides
              the CoAP Pings and empty messages, all in 1-3 byte pieces; bigframe
              (64-bit WebSocket length), close (a WebSocket Close after 50
              responses), badaccept / noproto (a 101 with a wrong
              Sec-WebSocket-Accept / without the subprotocol: setup fails),
              lennibble (a message with Len != 0), text (a text message)
  wss-*       fragmented and bigframe over TLS

Usage: python benchmarks/selftest.py [--loadgen PATH]
(compiles loadgen.c into a temporary directory when --loadgen is not given).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import LOADGEN_LIBS  # noqa: E402
from run import _frame as frame  # noqa: E402  (one frame builder for both scripts)


def parse_options(body):
    """The (number, value) pairs of a request body (RFC 7252 section 3.1), up to the
    payload marker."""
    out, number, i = [], 0, 0
    while i < len(body) and body[i] != 0xFF:
        delta, length = body[i] >> 4, body[i] & 15
        i += 1
        ext = []
        for nibble in (delta, length):
            if nibble == 13:
                ext.append(body[i] + 13)
                i += 1
            elif nibble == 14:
                ext.append(int.from_bytes(body[i:i + 2], "big") + 269)
                i += 2
            else:
                ext.append(nibble)
        number += ext[0]
        out.append((number, body[i:i + ext[1]]))
        i += ext[1]
    return out


def response_body(payload):
    # Content-Format: text/plain (option 12, empty value = 0), then payload
    return b"\xc0" + (b"\xff" + payload if payload else b"")


class SocketReader:
    """Buffers what a socket delivers; ``_need(n)`` waits until n bytes are buffered."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data


class FrameReader(SocketReader):
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


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode, payload, fin=True):
    """A server-to-client WebSocket frame (unmasked), RFC 6455 section 5.2."""
    n = len(payload)
    if n < 126:
        head = bytes([n])
    elif n < 65536:
        head = bytes([126]) + n.to_bytes(2, "big")
    else:
        head = bytes([127]) + n.to_bytes(8, "big")
    return bytes([(0x80 if fin else 0) | opcode]) + head + payload


class WSReader(SocketReader):
    """Reads the client's WebSocket frames; returns CoAP messages like FrameReader.

    Every frame must be masked and every CoAP message must have Len 0 (RFC 8323
    section 4.2); violations go to ``problems``.  Pong frames are handed to
    ``on_pong``."""

    def __init__(self, sock, problems, on_pong):
        super().__init__(sock)
        self.problems = problems
        self.on_pong = on_pong

    def _frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        ln = b1 & 0x7F
        ext = {126: 2, 127: 8}.get(ln, 0)
        self._need(2 + ext + 4)
        if ext:
            ln = int.from_bytes(self.buf[2:2 + ext], "big")
        if not b1 & 0x80:
            self.problems.append("unmasked client frame")
        hl = 2 + ext + (4 if b1 & 0x80 else 0)
        self._need(hl + ln)
        key = self.buf[2 + ext:6 + ext] if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ key[i & 3] for i, c in enumerate(self.buf[hl:hl + ln]))
        self.buf = self.buf[hl + ln:]
        return b0 & 0x80, b0 & 0x0F, data

    def read(self):
        while True:
            fin, op, data = self._frame()
            if op == 0xA:
                self.on_pong(data)
                continue
            if op != 0x2 or not fin:
                self.problems.append(f"client frame opcode {op} fin {fin}")
                continue
            if len(data) < 2 or data[0] >> 4:
                self.problems.append(f"client message with Len != 0: {data[:4].hex()}")
                continue
            tkl = data[0] & 15
            return data[1], data[2:2 + tkl], data[2 + tkl:]


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


class MockServer:
    def __init__(self, scenario, payload, transport="tcp", tls_ctx=None):
        self.scenario = scenario
        self.payload = payload
        self.transport = transport
        self.tls_ctx = tls_ctx
        self.ws = transport in ("ws", "wss")
        self.ws_pings = {}  # WebSocket Ping payloads whose Pong is outstanding, per connection
        self.ws_pongs_ok = 0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.problems = []
        self.pongs_ok = 0
        self.request_bodies = set()  # options (and payload) of the GETs received
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
            if self.tls_ctx is not None:
                s = self.tls_ctx.wrap_socket(s, server_side=True)
                want = "http/1.1" if self.ws else "coap"
                if s.selected_alpn_protocol() != want:
                    self.problems.append(f"ALPN {s.selected_alpn_protocol()!r}, not {want!r}")
            if self.ws and not self._ws_handshake(s):
                return
            self._serve(s)
        except (EOFError, OSError):
            pass
        finally:
            s.close()

    def _ws_handshake(self, s):
        """Check the client's Upgrade request (RFC 6455 4.1, RFC 8323 4.1), answer 101."""
        req = b""
        while b"\r\n\r\n" not in req:
            data = s.recv(4096)
            if not data:
                raise EOFError
            req += data
        head, rest = req.split(b"\r\n\r\n", 1)
        if rest:
            self.problems.append("client sent data before the 101")
        lines = head.decode().split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (line.split(":", 1) for line in lines[1:])}
        if lines[0] != "GET /.well-known/coap HTTP/1.1":
            self.problems.append(f"request line {lines[0]!r}")
        for k, v in (("upgrade", "websocket"), ("sec-websocket-version", "13"),
                     ("sec-websocket-protocol", "coap")):
            if hdrs.get(k, "").lower() != v:
                self.problems.append(f"header {k}: {hdrs.get(k)!r}")
        if "upgrade" not in hdrs.get("connection", "").lower() or "host" not in hdrs:
            self.problems.append(f"headers {hdrs}")
        key = hdrs.get("sec-websocket-key", "")
        if len(base64.b64decode(key)) != 16:
            self.problems.append(f"Sec-WebSocket-Key {key!r}")
        accept = ws_accept(key) if self.scenario != "badaccept" else ws_accept("x" + key)
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n")
        if self.scenario != "noproto":
            resp += "Sec-WebSocket-Protocol: coap\r\n"
        s.sendall(resp.encode() + b"\r\n")
        return True

    def _ws_pong(self, s, data):
        with self.lock:
            if data in self.ws_pings.get(s, set()):
                self.ws_pings[s].discard(data)
                self.ws_pongs_ok += 1
            else:
                self.problems.append(f"WebSocket pong with payload {data!r}")

    def _msg(self, s, code, token=b"", body=b""):
        """Send one CoAP message in the framing of the transport."""
        if not self.ws:
            self._send(s, frame(code, token, body))
            return
        m = bytes([len(token), code]) + token + body
        response = code >> 5 in (2, 4, 5)  # the CSM etc. stay valid
        if self.scenario == "lennibble" and response:
            m = bytes([0x10 | len(token)]) + m[1:]
        if self.scenario == "text" and response:
            self._send(s, ws_frame(0x1, m))
        elif self.scenario == "fragmented" and len(m) > 4:
            # 2-3 fragments, a WebSocket Ping (5 bytes of payload) after the first
            cuts = sorted({1, len(m) // 2, len(m) - 1})
            parts = [m[a:b] for a, b in zip([0, *cuts], [*cuts, len(m)], strict=True)]
            data = b""
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                data += ws_frame(0x2 if i == 0 else 0x0, part, fin=last)
                if i == 0:
                    ping = os.urandom(5)
                    with self.lock:
                        self.ws_pings.setdefault(s, set()).add(ping)
                    data += ws_frame(0x9, ping)
            self._send(s, data)
        else:
            self._send(s, ws_frame(0x2, m))

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
        if self.ws:
            rd = WSReader(s, self.problems, lambda data: self._ws_pong(s, data))
        else:
            rd = FrameReader(s)
        sc = self.scenario
        if sc != "nocsm":
            # CSM with Max-Message-Size (option 2) = 131072
            self._msg(s, 0xE1, b"", b"\x23\x02\x00\x00")
        first = True
        answered = 0
        ping_no = 0
        pings = set()  # Ping tokens whose Pong is outstanding
        while not self.stop.is_set():
            try:
                code, token, _body = rd.read()
            except TimeoutError:
                continue
            if first and code != 0xE1:
                self.problems.append(f"first message {code:#x}, not a CSM")
            first = False
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
            with self.lock:
                self.request_bodies.add(_body)
            if sc == "silent":
                continue
            if sc == "fragmented":
                ping_no += 1
                ptok = b"P%d" % ping_no
                pings.add(ptok)
                self._msg(s, 0xE2, ptok)
                self._msg(s, 0x00)  # empty message: to be ignored
            rcode = 0x84 if sc == "badcode" else 0x45
            rtoken = token
            if sc == "badtoken" and answered % 10 == 9:
                rtoken = b"\xde\xad\xbe\xef"
            self._msg(s, rcode, rtoken, response_body(self.payload))
            answered += 1
            if sc == "close" and answered >= 50:
                if self.ws:
                    self._send(s, ws_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
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
    print(f"{'ok' if ok else 'FAIL':<4} {name:<15} rc={rc} {elapsed:.1f}s {detail}".rstrip())


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
    scenarios = [(name, "tcp", *rest) for name, *rest in scenarios]

    def clean(rc, r, s):
        return rc == 0 and r["errors"] == 0 and r["requests"] > 0 and not s.problems

    def lost(rc, r, s):  # both connections closed by the server, 4 requests lost on each
        return (rc == 3 and r["status"] == "all_connections_lost"
                and r["err_conn_closed"] == 2 and r["err_lost"] == 8 and not s.problems)

    def setup_failed(rc, r, s):
        return rc == 3 and r["status"] == "setup_failed" and r["requests"] == 0

    def fragmented_ws(rc, r, s):
        return (clean(rc, r, s) and r["sig_ping"] > 0 and r["ws_ping"] > 0
                and r["ws_fragmented"] > 0 and s.pongs_ok > 0 and s.ws_pongs_ok > 0)

    def tls_is(version):
        return lambda rc, r, s: (clean(rc, r, s) and r["tls_version"] == version
                                 and r["alpn"] == "coap" and r["transport"] == "tls")

    big = b"y" * 70000
    scenarios += [
        ("fragmented", "tls", b"x" * 300, b"x" * 300, ["-S"],
         lambda rc, r, s: tls_is("TLSv1.3")(rc, r, s) and r["sig_ping"] > 0 and s.pongs_ok > 0),
        ("fragmented", "tls12", b"x" * 300, b"x" * 300, ["-S"], tls_is("TLSv1.2")),
        ("bigframe", "tls", big, big, ["-S"], clean),
        ("close", "tls", hello, hello, ["-S"], lost),
        ("fragmented", "ws", b"x" * 300, b"x" * 300, ["-W"], fragmented_ws),
        ("bigframe", "ws", big, big, ["-W"], clean),
        ("close", "ws", hello, hello, ["-W"], lost),
        ("badaccept", "ws", hello, hello, ["-W"], setup_failed),
        ("noproto", "ws", hello, hello, ["-W"], setup_failed),
        ("lennibble", "ws", hello, hello, ["-W"],
         lambda rc, r, s: rc == 3 and r["status"] == "all_connections_lost"
         and r["err_proto"] == 2 and r["requests"] == 0),
        ("text", "ws", hello, hello, ["-W"],
         lambda rc, r, s: rc == 3 and r["status"] == "all_connections_lost"
         and r["err_proto"] == 2 and r["requests"] == 0),
        ("fragmented", "wss", b"x" * 300, b"x" * 300, ["-S", "-W"],
         lambda rc, r, s: fragmented_ws(rc, r, s) and r["transport"] == "wss"),
        ("bigframe", "wss", big, big, ["-S", "-W"], clean),
    ]
    # -o/-V: options in number order (Uri-Host 3, Uri-Port 7, Uri-Path 11, Proxy-Uri 35,
    # Proxy-Scheme 39, an empty uint 60); connection i gets variant 5683 + i % 2
    option_args = ["-o", "39=coap", "-o", "35=coap://127.0.0.1:%v/x", "-o", "60=#0",
                   "-o", "7=#%v", "-o", "3=127.0.0.1", "-V", "5683,2"]

    def options_sent(rc, r, s):
        want = {tuple([(3, b"127.0.0.1"), (7, port.to_bytes(2, "big")), (11, b"hello"),
                       (35, b"coap://127.0.0.1:%d/x" % port), (39, b"coap"), (60, b"")])
                for port in (5683, 5684)}
        return clean(rc, r, s) and {tuple(parse_options(b)) for b in s.request_bodies} == want

    scenarios += [
        ("options", "tcp", hello, hello, option_args, options_sent),
        ("options", "ws", hello, hello, ["-W", *option_args], options_sent),
    ]
    certdir = tempfile.mkdtemp(prefix="loadgen-selftest-certs-")
    sys.path.insert(0, os.path.dirname(HERE))
    from coaptcp.testing.certs import write_test_setup
    certs = write_test_setup(certdir)

    def tls_context(transport):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if transport == "tls12":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(certs["server"], certs["server_key"])
        ctx.set_alpn_protocols(["http/1.1"] if transport == "wss" else ["coap"])
        return ctx

    failed = 0
    for name, transport, served, expect, extra, check in scenarios:
        tls_ctx = tls_context(transport) if transport in ("tls", "tls12", "wss") else None
        srv = MockServer(name, served, "tls" if transport == "tls12" else transport, tls_ctx)
        try:
            rc, res, elapsed, err = run_loadgen(loadgen, srv.port, extra, expect)
        finally:
            srv.close()
        ok = res is not None and check(rc, res, srv) and elapsed < 10
        failed += not ok
        detail = "" if ok else f"{json.dumps(res)} problems={srv.problems} stderr={err[-500:]}"
        label = name if transport == "tcp" else f"{transport}-{name}"
        report(ok, label, rc, elapsed, detail)
    shutil.rmtree(certdir, ignore_errors=True)

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

    # bad -o / -V values are usage errors (exit 2), before any connection
    bad_options = [["-o", "0=x"], ["-o", "70000=x"], ["-o", "7"], ["-o", "7=#-1"],
                   ["-o", "7=#4294967296"], ["-o", "7=#12x"], ["-o", "35=" + "u" * 1035],
                   ["-V", "1"], ["-V", "1,0"], ["-V", "1,2000"],
                   ["-o", "7=#%v", "-V", "4294967295,2"]]
    for extra in bad_options:
        p = subprocess.run([loadgen, "-p", "9", "-u", "/x", "-d", "1", *extra],
                           capture_output=True, text=True, timeout=10)
        ok = p.returncode == 2 and "usage" in p.stderr
        failed += not ok
        report(ok, "badoption", p.returncode, 0.0,
               " ".join(extra)[:40] if ok else f"{extra} {p.stderr[:200]}")

    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    total = len(scenarios) + 2 + len(bad_options)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
