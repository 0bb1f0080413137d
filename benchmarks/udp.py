"""CoAP-over-UDP server benchmark: coaptcp against libcoap, aiocoap and bare Twisted.

Each server runs pinned to CPU 0 and ``udpload`` (compiled from ``udpload.c``) to CPU 1;
every cell is ``-c SOCKETS -n IN_FLIGHT`` Confirmable GETs in a closed loop, median of
``--reps`` runs.  The servers:

- ``coaptcp``: ``twistd coaptcp --udp`` with the demo site, ``GET /hello``;
- ``libcoap``: ``coap-server-openssl``, ``GET /`` (its built-in resource);
- ``aiocoap``: ``aiocoap_server.py --transport udp``, ``GET /hello``;
- ``bare``: a Twisted ``DatagramProtocol`` that answers every datagram with a constant
  piggybacked 2.05 after checking only the header: the ceiling of the reactor itself.

Usage: python benchmarks/udp.py [--cells 1x1,16x1,16x16] [--reps 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BARE = r"""
import sys
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
BODY = b"\xff" + b"Hello, world!"
class Bare(DatagramProtocol):
    def datagramReceived(self, data, addr):
        if len(data) < 4 or data[0] >> 6 != 1 or data[0] & 0x30:
            return
        tkl = data[0] & 0x0F
        self.transport.write(bytes((0x60 | tkl, 0x45)) + data[2:4 + tkl] + BODY, addr)
reactor.listenUDP(int(sys.argv[1]), Bare(), interface="127.0.0.1")
reactor.run()
"""


def build_udpload() -> str:
    source = HERE / "udpload.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"coaptcp-udpload-{digest}" / "udpload"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", str(target), str(source)], check=True)
    return str(target)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_ready(port: int, deadline: float = 20.0) -> None:
    """Ping (an Empty CON) until something answers."""
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < end:
            probe.sendto(bytes((0x40, 0x01, 0x00, 0x01, 0xB5)) + b"hello", ("127.0.0.1", port))
            try:
                probe.recv(256)
                return
            except OSError:
                continue
    raise RuntimeError(f"no server answered on UDP {port}")


def servers(python: str) -> dict[str, tuple[list[str], str]]:
    twistd = str(Path(python).parent / "twistd")
    return {
        "coaptcp": ([twistd, "-n", "--pidfile=", "coaptcp", "--udp",
                     "udp:{port}:interface=127.0.0.1"], "/hello"),
        "libcoap": ([shutil.which("coap-server-openssl") or "coap-server-openssl", "-A",
                     "127.0.0.1", "-p", "{port}"], "/"),
        "aiocoap": ([python, str(HERE / "aiocoap_server.py"), "{port}", "--transport", "udp"],
                    "/hello"),
        "bare": ([python, "-c", BARE, "{port}"], "/hello"),
    }


def run_cell(udpload: str, port: int, path: str, conns: int, inflight: int,
             duration: float, pin: bool) -> dict[str, float]:
    argv = [udpload, "-p", str(port), "-c", str(conns), "-n", str(inflight),
            "-d", str(duration), "-w", "1", "-u", path]
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30,
                            check=True)
    report: dict[str, float] = json.loads(result.stdout)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="coaptcp,libcoap,aiocoap,bare")
    parser.add_argument("--cells", default="1x1,16x1,16x16")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    pin = not args.no_pin and shutil.which("taskset") is not None
    udpload = build_udpload()
    cells = [tuple(int(n) for n in cell.split("x")) for cell in args.cells.split(",")]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.servers.split(","):
        argv_template, path = servers(sys.executable)[name]
        port = free_udp_port()
        argv = [part.replace("{port}", str(port)) for part in argv_template]
        if pin:
            argv = ["taskset", "-c", "0", *argv]
        log = open(Path(tempfile.gettempdir()) / f"coaptcp-udp-bench-{name}.log", "wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            wait_ready(port)
            for conns, inflight in cells:
                runs = [run_cell(udpload, port, path, conns, inflight, args.duration, pin)
                        for _ in range(args.reps)]
                table.setdefault(name, {})[f"{conns}x{inflight}"] = {
                    "rps": statistics.median(r["rps"] for r in runs),
                    "p50_us": statistics.median(r["p50_us"] for r in runs),
                    "lost": sum(r["lost"] for r in runs),
                }
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
    print(f"CoAP over UDP, GET, {args.reps} x {args.duration:g} s, median requests/s "
          f"(p50 latency in us); cpu {os.cpu_count()}, pinned: {pin}")
    names = list(table)
    print("| sockets x in flight | " + " | ".join(names) + " | coaptcp/libcoap | coaptcp/aiocoap "
          "| coaptcp/bare |")
    print("|---" * (len(names) + 4) + "|")
    for conns, inflight in cells:
        cell = f"{conns}x{inflight}"
        values = [table[n].get(cell, {}) for n in names]
        text = [f"{v.get('rps', 0):,.0f} ({v.get('p50_us', 0):.0f})" for v in values]

        def ratio(other: str, cell: str = cell) -> str:
            ours = table.get("coaptcp", {}).get(cell, {}).get("rps")
            theirs = table.get(other, {}).get(cell, {}).get("rps")
            return f"{ours / theirs:.2f}" if ours and theirs else "-"

        print(f"| {cell} | " + " | ".join(text) +
              f" | {ratio('libcoap')} | {ratio('aiocoap')} | {ratio('bare')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
