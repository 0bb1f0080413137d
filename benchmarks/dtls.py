"""coaps:// figures: DTLS handshakes/s and requests/s, ours vs libcoap (RFC 7252 9).

Starts ``twistd coaptcp --dtls`` and libcoap's ``coap-server-openssl`` on loopback, each
with a PSK and an ECDSA P-256 certificate (``coaptcp.testing.certs``), and measures both in
the same run with one client, our ``DtlsDatagramProtocol``, in each ``--modes`` entry:
``psk`` (ECDHE-PSK-CHACHA20-POLY1305 with both servers) and ``ecdsa`` (certificate mode,
the server's chain verified against the test CA):

- handshakes/s: a fresh client socket per GET /time (cookie exchange, full handshake,
  one request), ``--handshakes`` of them one after the other;
- requests/s: ``--requests`` sequential CON GETs on one established session.

Each is run ``--runs`` times; the median and the spread (min-max) are printed.  The client
is Python and shares the 2 cores, so the figures compare the servers under one client,
not their ceilings.

    python benchmarks/dtls.py --runs 3
    python benchmarks/dtls.py --runs 3 --modes ecdsa --handshakes 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

PSK_ID, PSK_KEY = b"bench", b"bench key"


def client_settings(mode: str, workdir: Path) -> Any:
    from coaptcp.transport.tls import ClientTLSSettings

    if mode == "psk":
        return ClientTLSSettings(psk=(PSK_ID, PSK_KEY))
    return ClientTLSSettings(ca_file=str(workdir / "ca.pem"))


async def measure(reactor: Any, port: int, settings: Any, handshakes: int,
                  requests: int) -> tuple[float, float]:
    from coaptcp.core.codes import Code
    from coaptcp.core.options import Options
    from coaptcp.transport.dtls import DtlsDatagramProtocol

    peer = ("127.0.0.1", port)
    path = Options([(11, "time")])
    started = time.perf_counter()
    for _ in range(handshakes):
        client = DtlsDatagramProtocol(None, client=settings, reactor=reactor)
        listening = reactor.listenUDP(0, client, interface="127.0.0.1")
        await client.coap.request(Code.GET, peer, options=path)
        await listening.stopListening()
    per_handshake = handshakes / (time.perf_counter() - started)
    client = DtlsDatagramProtocol(None, client=settings, reactor=reactor)
    listening = reactor.listenUDP(0, client, interface="127.0.0.1")
    await client.coap.request(Code.GET, peer, options=path)
    started = time.perf_counter()
    for _ in range(requests):
        await client.coap.request(Code.GET, peer, options=path)
    per_request = requests / (time.perf_counter() - started)
    await listening.stopListening()
    return per_handshake, per_request


def wait_udp_ready(reactor: Any, port: int) -> defer.Deferred[Any]:
    return task.deferLater(reactor, 6.0, lambda: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--handshakes", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--modes", default="psk,ecdsa",
                        help="comma-separated: psk, ecdsa (default both)")
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - {"psk", "ecdsa"}:
        parser.error(f"--modes takes psk and/or ecdsa, not {args.modes!r}")
    workdir = Path(tempfile.mkdtemp(prefix="coaptcp-dtls-bench-"))
    from coaptcp.testing.certs import write_test_setup

    pki = write_test_setup(workdir, hosts=("127.0.0.1", "localhost"))
    keys = workdir / "keys.txt"
    keys.write_text(f"{PSK_ID.decode()} text:{PSK_KEY.decode()}\n")
    ours_port, libcoap_port = 25684, 25700
    twistd = str(Path(sys.executable).parent / "twistd")
    servers = {
        "coaptcp": (subprocess.Popen(
            [twistd, "-n", "--pidfile=", "coaptcp", "--dtls",
             f"udp:{ours_port}:interface=127.0.0.1", "--psk-file", str(keys),
             "--certificate", str(pki["server"]), "--private-key", str(pki["server_key"])],
            stdout=open(workdir / "server.log", "wb"), stderr=subprocess.STDOUT, cwd=workdir,
            env={**os.environ}), ours_port),
        "libcoap": (subprocess.Popen(
            ["coap-server-openssl", "-A", "127.0.0.1", "-p", str(libcoap_port - 1),
             "-k", PSK_KEY.decode(), "-c", str(pki["server"]), "-j", str(pki["server_key"]),
             "-n"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), libcoap_port),
    }
    results: dict[tuple[str, str], list[tuple[float, float]]] = {
        (mode, name): [] for mode in modes for name in servers}

    async def run(reactor: Any) -> None:
        await wait_udp_ready(reactor, 0)
        for _ in range(args.runs):
            for mode in modes:
                settings = client_settings(mode, workdir)
                for name, (_, port) in servers.items():
                    results[mode, name].append(await measure(
                        reactor, port, settings, args.handshakes, args.requests))
        for (mode, name), runs in results.items():
            hs = [r[0] for r in runs]
            rq = [r[1] for r in runs]
            print(f"{mode:5} {name:8} handshakes/s {statistics.median(hs):7.1f} "
                  f"({min(hs):.1f}-{max(hs):.1f})   requests/s {statistics.median(rq):7.1f} "
                  f"({min(rq):.1f}-{max(rq):.1f})")

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
