"""The attacks of issue 12, as asyncio coroutines against a running server.

Each attack is an :class:`Attack` in :data:`ATTACKS`: its parameters as the issue states
them (``small`` overrides for ``--scale small``), the memory bound that must hold, and a
coroutine ``run(ctx, params) -> dict`` that does the attack and returns what it saw,
including ``checks``: (name, passed, detail) of what the attack itself can judge (answers
received, connections the server closed).  The runner (``run.py``) adds what it watches
from outside: the server's RSS and a fresh client's latency.

Every loop here is bounded in count and in time (``deadline`` parameters, ``asyncio``
timeouts); every connection goes to the target given (127.0.0.1 from ``run.py``) from the
source addresses given (127.0.0.x).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import wire
from wire import Closed, Conn, Msg

Check = tuple[str, bool, str]


@dataclass
class Ctx:
    """Where and how the attack connects, and a clock shared with the monitor."""

    host: str
    tcp: int
    ws: int | None = None
    tls: int | None = None
    sources: list[str] = field(default_factory=lambda: ["127.0.0.2"])
    check_source: str | None = None  # the fresh observer's address (None: the default)
    mark: Callable[[str], None] = lambda name: None
    t0: float = field(default_factory=time.monotonic)

    def port(self, transport: str) -> int:
        port = {"tcp": self.tcp, "ws": self.ws, "tls": self.tls}[transport]
        if port is None:
            raise SystemExit(f"this attack needs a {transport} port (--target-{transport})")
        return port

    def source(self, i: int) -> str:
        return self.sources[i % len(self.sources)]

    async def open(self, transport: str = "tcp", i: int = 0, **kwargs: Any) -> Conn:
        kwargs.setdefault("source", self.source(i))
        return await Conn.open(self.host, self.port(transport), transport, **kwargs)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def _token(i: int, size: int = 2) -> bytes:
    return (i % (1 << (8 * size))).to_bytes(size, "big")


async def _open_many(ctx: Ctx, n: int, parallel: int, transport: str = "tcp",
                     **kwargs: Any) -> tuple[list[Conn], list[str]]:
    """Open ``n`` connections, at most ``parallel`` connecting at a time."""
    gate = asyncio.Semaphore(parallel)
    errors: list[str] = []

    async def one(i: int) -> Conn | None:
        async with gate:
            try:
                return await ctx.open(transport, i, **kwargs)
            except (OSError, TimeoutError, Closed) as error:
                errors.append(f"{type(error).__name__}: {error}"[:100])
                return None

    opened = await asyncio.gather(*(one(i) for i in range(n)))
    return [c for c in opened if c is not None], errors


def _states(conns: list[Conn]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in conns:
        state = c.state()
        out[state] = out.get(state, 0) + 1
    return out


def _open_count(conns: list[Conn]) -> int:
    return sum(1 for c in conns if c.state() == "established")


def _abort_all(conns: list[Conn]) -> None:
    for c in conns:
        c.abort()


async def _hold(ctx: Ctx, seconds: float, conns: list[Conn],
                every: float = 1.0) -> list[tuple[float, int]]:
    """Wait ``seconds``, noting every ``every`` s how many of ``conns`` are still open."""
    timeline = []
    end = time.monotonic() + seconds
    while True:
        timeline.append((round(ctx.elapsed(), 1), _open_count(conns)))
        left = end - time.monotonic()
        if left <= 0:
            return timeline
        await asyncio.sleep(min(every, left))


def _closed_at(timeline: list[tuple[float, int]], total: int) -> float | None:
    """When the last of ``total`` connections was seen closed (None: some still open)."""
    for t, still_open in timeline:
        if still_open == 0 and total:
            return t
    return None


async def _read_aborts(conns: list[Conn], limit: int = 5, timeout: float = 2.0) -> list[str]:
    """Read what a few connections the server closed had buffered; their Abort
    diagnostics (RFC 8323 section 5.6), if any."""
    found = []
    for c in [c for c in conns if c.state() != "established"][:limit]:
        c.resume_reading()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await c.read()
                    if msg.code == wire.ABORT:
                        found.append(msg.payload.decode(errors="replace")[:160])
                        break
        except (Closed, TimeoutError):
            pass
    return found


class FrameCounter:
    """Counts the frames of a coap+tcp byte stream by code, without keeping them."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.by_code: dict[int, int] = {}
        self.tokens: dict[bytes, int] = {}  # answers per token, for the tokens in watch
        self.watch: set[bytes] = set()
        self.diagnostics: list[str] = []  # payloads of Abort/Release and of errors (first 5)

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        i, n = 0, len(buf)
        by_code = self.by_code
        while i < n:
            b = buf[i]
            nib, tkl = b >> 4, b & 15
            if nib < 13:
                head, blen = 2, nib
            else:
                ext = (1, 2, 4)[nib - 13]
                if i + 1 + ext > n:
                    break
                head = 2 + ext
                blen = int.from_bytes(buf[i + 1 : i + 1 + ext], "big") + (13, 269, 65805)[nib - 13]
            end = i + head + tkl + blen
            if end > n:
                break
            code = buf[i + head - 1]
            by_code[code] = by_code.get(code, 0) + 1
            noteworthy = code in (wire.ABORT, wire.RELEASE) or 0x80 <= code < 0xE0
            if self.watch:
                token = bytes(buf[i + head : i + head + tkl])
                if token in self.watch:
                    self.tokens[token] = self.tokens.get(token, 0) + 1
            if noteworthy and len(self.diagnostics) < 5:
                _, payload = wire.decode_options(bytes(buf[i + head + tkl : end]))
                self.diagnostics.append(f"{code >> 5}.{code & 31:02d} "
                                        + payload.decode(errors="replace")[:120])
            i = end
        del buf[:i]

    def count(self, code: int) -> int:
        return self.by_code.get(code, 0)

    def codes(self) -> dict[str, int]:
        return {f"{c >> 5}.{c & 31:02d}": n for c, n in sorted(self.by_code.items())}


async def _pump(conn: Conn, counter: FrameCounter, chunk: int = 1 << 20) -> str:
    """Read ``conn`` into ``counter`` until EOF; returns why it ended."""
    try:
        while True:
            data = await conn.reader.read(chunk)
            if not data:
                return "closed by the server (EOF)"
            counter.feed(data)
    except (ConnectionError, OSError) as error:
        return f"closed by the server ({type(error).__name__})"


# -- 1. output amplification --------------------------------------------------------------

async def amplify(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Clients that announce a large Max-Message-Size (or BERT), pipeline GET /big and
    never read (issue 12 item 1)."""
    transport = p["transport"]
    conns, errors = await _open_many(ctx, p["clients"], 16, transport)
    for c in conns:
        c.pause_reading()
    requests = p["requests"]
    get = wire.path_options(p["path"])
    if p.get("request_bytes") and conns:  # as many as fit in that many bytes (BERT)
        requests = p["request_bytes"] // len(conns[0].encode(wire.GET, _token(0), get))
    sent_bytes = 0
    for c in conns:
        out = [c.encode(wire.CSM, options=wire.csm_options(p["mms"], p["bert"]))]
        out += [c.encode(wire.GET, _token(i), get) for i in range(requests)]
        data = b"".join(out)
        sent_bytes += len(data)
        c.write(data)
    drained = all([await c.drain(10.0) for c in conns])
    ctx.mark("sent")
    timeline = await _hold(ctx, p["hold"], conns)
    ctx.mark("hold_end")
    states = _states(conns)
    aborts = await _read_aborts(conns)
    _abort_all(conns)
    closed = sum(n for s, n in states.items() if s != "established")
    return {
        "connections": len(conns), "connect_errors": errors[:3], "requests_per_client": requests,
        "sent_bytes": sent_bytes, "sent_drained": drained, "states_at_end": states,
        "closed_by_server": closed, "all_closed_at_s": _closed_at(timeline, len(conns)),
        "abort_diagnostics": aborts,
        "checks": [("all clients connected", len(conns) == p["clients"], f"{len(conns)}")],
    }


# -- 2. abandoned Block1 uploads ----------------------------------------------------------

async def uploads(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Connections that each start uploads block-wise (BERT), send all but the end, then
    only Ping (issue 12 item 2)."""
    block = p["block_bytes"]
    blocks = p["size_mib"] * 1024 * 1024 // block
    chunk = bytes(block)
    conns, errors = await _open_many(ctx, p["conns"], 8)
    counters = [FrameCounter() for _ in conns]
    results: dict[str, Any] = {"connect_errors": errors[:3]}
    bert = True
    for c in conns:
        c.send_csm(bert=True)
        csm = await c.read_csm()
        bert = bert and wire.option(csm.options, wire.CSM_BLOCK_WISE_TRANSFER) is not None
    szx = wire.BERT_SZX if bert and block % 1024 == 0 else max(0, block.bit_length() - 5)
    unit = 1024 if szx == wire.BERT_SZX else block
    pumps = [asyncio.create_task(_pump(c, k)) for c, k in zip(conns, counters, strict=True)]

    async def upload_all(c: Conn, counter: FrameCounter) -> None:
        sent = 0
        for u in range(p["uploads"]):
            tag = [(wire.REQUEST_TAG, bytes([u + 1]))]
            for b in range(blocks):
                options = [*wire.path_options(p["path"]), *tag,
                           (wire.BLOCK1, wire.block_value(b * block // unit, True, szx))]
                c.send(wire.PUT, _token(sent, 3), options, chunk)
                sent += 1
                # at most ``window`` blocks unanswered: we read what the server answers
                while sent - sum(counter.by_code.values()) > p["window"]:
                    if c.state() != "established" or time.monotonic() > deadline:
                        return
                    await asyncio.sleep(0.001)
                await c.drain(30.0)

    deadline = time.monotonic() + p["deadline"]
    t_start = ctx.elapsed()
    await asyncio.gather(*(upload_all(c, k) for c, k in zip(conns, counters, strict=True)))
    sent_at = ctx.elapsed()
    ctx.mark("sent")
    results["upload_seconds"] = round(sent_at - t_start, 1)
    # silence, but a Ping now and then so that no idle timeout ends the connections
    end = time.monotonic() + p["hold"]
    pings = 0
    timeline = []
    while time.monotonic() < end:
        for c in conns:
            if c.state() == "established":
                c.send(wire.PING)
                pings += 1
        timeline.append((round(ctx.elapsed(), 1), _open_count(conns)))
        await asyncio.sleep(min(p["ping_every"], max(0.0, end - time.monotonic())))
    ctx.mark("hold_end")
    states = _states(conns)
    await asyncio.sleep(0.2)
    codes: dict[str, int] = {}
    for k in counters:
        for code, n in k.codes().items():
            codes[code] = codes.get(code, 0) + n
    diagnostics = [d for k in counters for d in k.diagnostics][:5]
    _abort_all(conns)
    for task in pumps:
        task.cancel()
    expected = p["conns"] * p["uploads"] * blocks
    results.update({
        "connections": len(conns), "bert": bert, "blocks_per_upload": blocks,
        "blocks_sent": expected, "answers": codes, "pings_sent": pings,
        "other_answers": diagnostics, "states_at_end": states,
        "seconds_since_last_block_at_end": round(ctx.elapsed() - sent_at, 1),
        "checks": [("every block answered (2.31 or an error such as 5.03), or the connection "
                    "aborted with a diagnostic", sum(
                        n for c, n in codes.items() if not c.startswith("7.")) >= expected
                    or any(d.startswith("7.05") for d in diagnostics), f"{codes}")],
    })
    return results


# -- 3. slow WebSocket handshakes ---------------------------------------------------------

async def ws_handshakes(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Upgrade requests half sent, or dripped one byte at a time, on the --ws port
    (issue 12 item 3)."""
    port = ctx.port("ws")
    request, _ = wire.ws_upgrade_request(f"{ctx.host}:{port}")
    half = request[: len(request) // 2]
    gate = asyncio.Semaphore(p["parallel"])
    closed_after: list[float] = []
    closed_kind = {"half-sent": 0, "dripping": 0}
    connect_errors: list[str] = []
    socks = []
    stop = asyncio.Event()

    async def one(i: int) -> None:
        async with gate:
            try:
                sock = await wire.open_socket(ctx.host, port, ctx.source(i), timeout=5.0)
            except (OSError, TimeoutError) as error:
                connect_errors.append(f"{type(error).__name__}: {error}"[:80])
                return
        socks.append(sock)
        loop = asyncio.get_running_loop()
        opened = time.monotonic()
        drip = i % 2 == 1 if p["drip"] else False

        async def writer() -> None:
            try:
                if not drip:
                    await loop.sock_sendall(sock, half)
                    return
                for k in range(len(request) - 4):  # never the final CRLF CRLF
                    if stop.is_set():
                        return
                    await loop.sock_sendall(sock, request[k : k + 1])
                    try:
                        pause = p["drip_interval"] * random.uniform(0.8, 1.2)
                        await asyncio.wait_for(stop.wait(), pause)
                    except TimeoutError:
                        pass
            except OSError:
                return  # closed by the server: the reader notes it

        write_task = asyncio.create_task(writer())
        stopped = asyncio.create_task(stop.wait())
        closed = False
        try:
            for _ in range(1000):  # the server sends nothing before the handshake ends
                read = asyncio.create_task(loop.sock_recv(sock, 4096))
                done, _ = await asyncio.wait({read, stopped},
                                             return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    break
                try:
                    closed = not read.result()
                except OSError:
                    closed = True
                if closed:
                    break
        finally:
            write_task.cancel()
            stopped.cancel()
        if closed:
            closed_after.append(time.monotonic() - opened)
            closed_kind["dripping" if drip else "half-sent"] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(p["conns"])]
    t_connect = time.monotonic()
    while len(socks) + len(connect_errors) < p["conns"] and time.monotonic() - t_connect < 120:
        await asyncio.sleep(0.1)
    connect_s = time.monotonic() - t_connect
    ctx.mark("sent")
    timeline = []
    end = time.monotonic() + p["hold"]
    while time.monotonic() < end:
        timeline.append((round(ctx.elapsed(), 1), sum(
            1 for s in socks if wire.tcp_state(s) == "established")))
        await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
    ctx.mark("hold_end")
    still_open = sum(1 for s in socks if wire.tcp_state(s) == "established")
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    for s in socks:
        s.close()
    closed_after.sort()
    return {
        "connections": len(socks), "connect_errors": len(connect_errors),
        "first_connect_errors": sorted(set(connect_errors))[:3],
        "connect_seconds": round(connect_s, 1),
        "open_at_end": still_open, "closed_by_server": len(closed_after),
        "closed_by_kind": closed_kind,
        "closed_after_s": {"min": round(closed_after[0], 1), "median": round(
            statistics.median(closed_after), 1), "max": round(closed_after[-1], 1)}
        if closed_after else None,
        "open_timeline": timeline[:: max(1, len(timeline) // 10)],
        "checks": [("no handshake still open at the end", still_open == 0,
                    f"{still_open} of {len(socks)} open after {p['hold']:g} s")],
    }


# -- 4. Custody Pings behind slow requests ------------------------------------------------

async def custody(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Slow (asynchronous) requests, then a flood of Pings with the Custody option
    (RFC 8323 section 5.4.1) that must wait for them (issue 12 item 4)."""
    c = await ctx.open("tcp")
    c.send_csm()
    await c.read_csm()
    counter = FrameCounter()
    slow_tokens = {b"S" + _token(i) for i in range(p["slow"])}
    counter.watch = slow_tokens
    pump = asyncio.create_task(_pump(c, counter))
    path = wire.path_options(f"/slow?ms={p['slow_ms']}")
    c.write(b"".join(c.encode(wire.GET, t, path) for t in sorted(slow_tokens)))
    await c.drain(10)
    ctx.mark("slow_sent")
    ping = wire.tcp_frame(wire.PING, options=[(wire.CUSTODY, b"")])
    sent = 0
    step = 100_000
    t_pings = time.monotonic()
    while sent < p["pings"] and c.state() == "established":
        n = min(step, p["pings"] - sent)
        c.write(ping * n)
        sent += n
        if not await c.drain(p["deadline"]):
            break
    ctx.mark("sent")
    pings_s = time.monotonic() - t_pings
    deadline = time.monotonic() + p["deadline"]
    answered_at = pongs_at = None
    while time.monotonic() < deadline and not pump.done():
        if answered_at is None and len(counter.tokens) >= p["slow"]:
            answered_at = ctx.elapsed()
        if pongs_at is None and counter.count(wire.PONG) >= sent:
            pongs_at = ctx.elapsed()
        if answered_at is not None and pongs_at is not None:
            break
        await asyncio.sleep(0.05)
    ctx.mark("hold_end")
    ended = pump.result() if pump.done() else "still open"
    pump.cancel()
    c.abort()
    pongs = counter.count(wire.PONG)
    aborted = any(d.startswith("7.05") for d in counter.diagnostics)
    return {
        "slow_requests": p["slow"], "slow_answered": len(counter.tokens), "pings_sent": sent,
        "ping_bytes": sent * len(ping), "pings_send_seconds": round(pings_s, 1),
        "pongs": pongs, "answers": counter.codes(), "diagnostics": counter.diagnostics,
        "slow_answered_at_s": answered_at and round(answered_at, 1),
        "pongs_done_at_s": pongs_at and round(pongs_at, 1), "connection": ended,
        "checks": [
            ("every slow request answered, or the connection aborted with a diagnostic",
             len(counter.tokens) >= p["slow"] or aborted,
             f"{len(counter.tokens)}/{p['slow']}"),
            ("every Ping answered, or the connection aborted with a diagnostic",
             pongs >= sent or aborted, f"{pongs}/{sent} Pongs, {ended}"),
        ],
    }


# -- 5. WebSocket frame trickle -----------------------------------------------------------

async def ws_trickle(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """A 60 KB frame header then a byte every 2 s; a fragmented message continued a byte
    at a time; a fragmented message never finished (issue 12 item 5)."""
    variants = ["header-drip", "fragment-drip", "fragment-silent"]
    out: dict[str, Any] = {}

    async def one(kind: str, i: int) -> None:
        c = await ctx.open("ws", i)
        c.send_csm()
        await c.read_csm()
        t_open = time.monotonic()
        get = wire.ws_coap(wire.GET, b"\x01", wire.path_options("/hello"))
        if kind == "header-drip":
            # the header (with its masking key) of a frame whose payload never comes
            c.write(wire.ws_frame(b"", announce=p["frame_bytes"]))
        else:
            c.write(wire.ws_frame(get[:2], fin=False))

        async def drip() -> None:
            for _ in range(int(p["hold"] / p["drip_interval"]) + 1):
                await asyncio.sleep(p["drip_interval"])
                if kind == "header-drip":
                    c.write(b"\x00")
                elif kind == "fragment-drip":
                    c.write(wire.ws_frame(b"\x00", opcode=0, fin=False))

        dripper = asyncio.create_task(drip())
        try:
            async with asyncio.timeout(p["hold"]):
                while True:
                    await c.read()
        except Closed as why:
            out[kind] = {"closed_after_s": round(time.monotonic() - t_open, 1),
                         "how": str(why)[:120]}
        except TimeoutError:
            out[kind] = {"closed_after_s": None, "how": f"still open after {p['hold']:g} s"}
        finally:
            dripper.cancel()
            c.abort()

    await asyncio.gather(*(one(kind, i) for i, kind in enumerate(variants)))
    ctx.mark("hold_end")
    return {
        "variants": out,
        "checks": [(f"{kind} closed by the server", out.get(kind, {}).get("closed_after_s")
                    is not None, out.get(kind, {}).get("how", "?")) for kind in variants],
    }


# -- 6. observers that never read ---------------------------------------------------------

async def _fresh_observer(ctx: Ctx, path: str) -> tuple[bool, str]:
    """A new connection registers an observation: did it get the Observe option?"""
    try:
        c = await Conn.open(ctx.host, ctx.tcp, "tcp", source=ctx.check_source, timeout=5.0)
    except (OSError, TimeoutError) as error:
        return False, f"connect: {type(error).__name__}"
    try:
        c.send_csm()
        c.send(wire.GET, b"obs", [*wire.path_options(path), (wire.OBSERVE, b"")])
        async with asyncio.timeout(5.0):
            while True:
                msg: Msg = await c.read()
                if msg.token == b"obs":
                    registered = wire.option(msg.options, wire.OBSERVE) is not None
                    return registered, f"{msg.dotted} {'with' if registered else 'without'} Observe"
    except (Closed, TimeoutError) as error:
        return False, f"{type(error).__name__}: {error}"[:80]
    finally:
        c.abort()


async def observers(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Many connections observing /time that never read (issue 12 item 6)."""
    conns, errors = await _open_many(ctx, p["conns"], 16, rcvbuf=p["rcvbuf"])
    for c in conns:
        c.pause_reading()
        c.write(b"".join([wire.tcp_frame(wire.CSM)] + [
            wire.tcp_frame(wire.GET, _token(i), [*wire.path_options(p["path"]),
                                                 (wire.OBSERVE, b"")])
            for i in range(p["per_conn"])]))
    ctx.mark("sent")
    checks: list[tuple[float, bool, str]] = []
    timeline = []
    end = time.monotonic() + p["hold"]
    await asyncio.sleep(1.0)
    while True:
        registered, how = await _fresh_observer(ctx, p["path"])
        checks.append((round(ctx.elapsed(), 1), registered, how))
        timeline.append((round(ctx.elapsed(), 1), _open_count(conns)))
        left = end - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(p["check_every"], left))
    ctx.mark("hold_end")
    states = _states(conns)
    aborts = await _read_aborts(conns)
    _abort_all(conns)
    first_ok = next((t for t, ok, _ in checks if ok), None)
    last = checks[-1]
    return {
        "connections": len(conns), "connect_errors": errors[:3],
        "registrations_sent": len(conns) * p["per_conn"],
        "fresh_observer": {"checks": len(checks), "first_registered_at_s": first_ok,
                           "last": last[2], "first": checks[0][2]},
        "states_at_end": states, "abort_diagnostics": aborts,
        "open_timeline": timeline[:: max(1, len(timeline) // 10)],
        "checks": [("a fresh observer is registered by the end", last[1],
                    f"last check at {last[0]} s: {last[2]}; first success "
                    f"{first_ok if first_ok is not None else 'never'}"),
                   ("never-reading observers aborted", states.get("established", 0) == 0,
                    f"{states}")],
    }


# -- 7. floods (fairness) -----------------------------------------------------------------

def flood_buffer(kind: str) -> tuple[bytes, int, bytes]:
    """1 MiB of Pings, or 65,536 pipelined GET /hello with distinct tokens (640 KB); and
    the bytes that occur once in each answer (a Pong without token: 00 e3; the payload)."""
    if kind == "ping":
        n = 1 << 19
        return wire.tcp_frame(wire.PING) * n, n, wire.tcp_frame(wire.PONG)
    path = wire.path_options("/hello")
    n = 65536
    requests = b"".join(wire.tcp_frame(wire.GET, _token(i), path) for i in range(n))
    return requests, n, b"Hello, world!"


async def _count_answers(conn: Conn, marker: bytes, seen: list[int]) -> str:
    """Read until EOF counting ``marker`` (a C-speed count: a Python parser could not
    keep up with the server, and the flood would then be throttled by us, not by it).
    ``seen``: [answers, bytes, first bytes of the stream]."""
    tail = b""
    try:
        while True:
            data = await conn.reader.read(1 << 20)
            if not data:
                return "closed by the server (EOF)"
            chunk = tail + data
            seen[0] += chunk.count(marker)
            seen[1] += len(data)
            # the last len(marker) - 1 bytes cannot hold a whole marker: keep them, so a
            # marker cut by the read boundary is counted with the next read
            tail = chunk[-(len(marker) - 1) :]
    except (ConnectionError, OSError) as error:
        return f"closed by the server ({type(error).__name__})"


async def flood(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """One connection sending Pings or GET /hello as fast as it can, reading all answers
    (issue 12 item 7)."""
    c = await ctx.open("tcp")
    c.send_csm()
    await c.read_csm()
    seen = [0, 0]
    buf, per_buf, marker = flood_buffer(p["kind"])
    pump = asyncio.create_task(_count_answers(c, marker, seen))
    ctx.mark("sent")
    t0 = time.monotonic()
    end = t0 + p["duration"]
    sent = 0
    while time.monotonic() < end and not pump.done():
        c.write(buf)
        sent += per_buf
        if not await c.drain(max(0.1, end - time.monotonic())):
            break
    wall = time.monotonic() - t0
    answered = seen[0]
    ctx.mark("hold_end")
    ended = pump.result() if pump.done() else "open"
    pump.cancel()
    c.abort()
    return {
        "kind": p["kind"], "seconds": round(wall, 1), "sent": sent,
        "sent_per_s": round(sent / wall), "answered": answered,
        "answered_per_s": round(answered / wall), "received_bytes": seen[1],
        "connection": ended,
        "checks": [("flood connection served", answered > 0, f"{answered} answers")],
    }


# -- 8. half-close ------------------------------------------------------------------------

async def half_close(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """GET /hello pipelined (and one slow request) followed by a TCP FIN: are they
    answered before the server closes (issue 12 item 8)?"""
    tries = []
    hello = wire.path_options("/hello")
    slow = wire.path_options(f"/slow?ms={p['slow_ms']}")
    for t in range(p["tries"]):
        c = await ctx.open("tcp", t)
        counter = FrameCounter()
        counter.watch = {b"S"}
        data = [wire.tcp_frame(wire.CSM)]
        if p["slow_ms"] is not None:
            data.append(wire.tcp_frame(wire.GET, b"S", slow))
        data += [wire.tcp_frame(wire.GET, _token(i), hello) for i in range(p["gets"])]
        c.write(b"".join(data))
        c.writer.write_eof()
        try:
            async with asyncio.timeout(p["timeout"]):
                ended = await _pump(c, counter)
        except TimeoutError:
            ended = f"no EOF within {p['timeout']:g} s"
        c.abort()
        answered = counter.count(wire.CONTENT) - counter.tokens.get(b"S", 0)
        tries.append((answered, counter.tokens.get(b"S", 0), ended))
    ctx.mark("hold_end")
    full = sum(1 for a, s, _ in tries if a >= p["gets"] and (p["slow_ms"] is None or s))
    none = sum(1 for a, _, _ in tries if a == 0)
    return {
        "tries": len(tries), "gets_per_try": p["gets"], "tries_fully_answered": full,
        "tries_with_no_answer": none, "answered_min": min(a for a, _, _ in tries),
        "answered_max": max(a for a, _, _ in tries),
        "slow_answered": sum(s for _, s, _ in tries), "endings": sorted({e for *_, e in tries}),
        "checks": [("every try answered in full before the close", full == len(tries),
                    f"{full}/{len(tries)} tries")],
    }


# -- the registry -------------------------------------------------------------------------

@dataclass
class Attack:
    name: str
    item: str
    what: str
    run: Callable[[Ctx, dict[str, Any]], Awaitable[dict[str, Any]]]
    params: dict[str, Any]
    small: dict[str, Any]
    peak_mib: float | None = 64.0  # peak server ΔRSS allowed (None: not judged)
    held_mib: float | None = None  # ΔRSS allowed at the end of the hold
    held_after: float = 0.0  # the held check needs a hold of at least this many seconds
    bound: str = ""
    transports: tuple[str, ...] = ("tcp",)

    def parameters(self, scale: str, overrides: dict[str, Any]) -> dict[str, Any]:
        p = dict(self.params)
        if scale == "small":
            p.update(self.small)
        p.update(overrides)
        return p

    def deadline(self, p: dict[str, Any]) -> float:
        """Seconds this attack may take in all (the runner stops it after that)."""
        return (p.get("hold", 0) + p.get("duration", 0) + p.get("deadline", 0)
                + p.get("tries", 0) * p.get("timeout", 0) + 120)


_AMP = {"clients": 1, "requests": 500, "path": "/big", "mms": 4 * 1024 * 1024, "bert": False,
        "transport": "tcp", "hold": 20.0}
_AMP_SMALL = {"requests": 50, "hold": 5.0}
_AMP_BOUND = ("output queued per connection bounded (~1 MiB + one message); the server "
              "stops processing what it read; 10 such clients < 64 MiB in all")

ATTACKS: dict[str, Attack] = {a.name: a for a in [
    Attack("amplify", "1", "1 client: CSM with Max-Message-Size 4 MiB, 500 pipelined GET "
           "/big (1 MiB each), never reads", amplify, _AMP, _AMP_SMALL, bound=_AMP_BOUND),
    Attack("amplify-3000", "1", "the same with 3,000 GET /big", amplify,
           {**_AMP, "requests": 3000}, {**_AMP_SMALL, "requests": 100}, bound=_AMP_BOUND),
    Attack("amplify-10", "1", "10 such clients at once (500 GET /big each)", amplify,
           {**_AMP, "clients": 10}, {**_AMP_SMALL, "clients": 3}, bound=_AMP_BOUND),
    Attack("amplify-bert", "1", "BERT at the default Max-Message-Size 66,048: 64 KB of "
           "pipelined GET /big (8,192 requests with 2-byte tokens, each answered with a 64 "
           "KiB block)",
           amplify, {**_AMP, "mms": 66048, "bert": True, "request_bytes": 65536},
           {**_AMP_SMALL, "request_bytes": 6000}, bound=_AMP_BOUND),
    Attack("amplify-ws", "1", "amplify over coap+ws (500 GET /big, MMS 4 MiB)", amplify,
           {**_AMP, "transport": "ws"}, _AMP_SMALL, bound=_AMP_BOUND, transports=("ws",)),
    Attack("amplify-tls", "1", "amplify over coaps+tcp (500 GET /big, MMS 4 MiB)", amplify,
           {**_AMP, "transport": "tls"}, _AMP_SMALL, bound=_AMP_BOUND, transports=("tls",)),
    Attack("uploads", "2", "4 connections x 8 Block1 uploads x 15 MiB (BERT, 64 KiB "
           "blocks), never finished, then a Ping every 20 s", uploads,
           {"conns": 4, "uploads": 8, "size_mib": 15, "block_bytes": 65536, "path": "/store",
            "window": 16, "hold": 75.0, "ping_every": 20.0, "deadline": 300.0},
           {"conns": 1, "uploads": 2, "size_mib": 2, "hold": 5.0, "ping_every": 2.0},
           peak_mib=256.0, held_mib=64.0, held_after=62.0,
           bound="partial uploads expire on a timer (60 s) whatever the peer sends; a "
                 "server-wide and a per-connection budget (then 5.03 + Max-Age)"),
    Attack("ws-handshakes", "3", "1,800 WebSocket upgrade requests, half of them half "
           "sent, half dripped a byte every 2 s", ws_handshakes,
           {"conns": 1800, "drip": True, "drip_interval": 2.0, "hold": 50.0, "parallel": 32},
           {"conns": 60, "hold": 5.0},
           bound="a handshake timeout on --ws; connections count against the caps from "
                 "accept; descriptors never run out before the cap answers",
           transports=("ws",)),
    Attack("custody", "4", "250 slow requests (10 s), then 1,000,000 Custody Pings (3 MB)",
           custody, {"slow": 250, "slow_ms": 10_000, "pings": 1_000_000, "deadline": 90.0},
           {"slow": 20, "slow_ms": 2000, "pings": 20_000, "deadline": 20.0},
           bound="the Custody queue is bounded and O(1) per answer: a new client is still "
                 "served within a second"),
    Attack("ws-trickle", "5", "over coap+ws: a 60 KB frame header then a byte every 2 s; "
           "a fragmented message continued a byte every 2 s; one never continued",
           ws_trickle, {"frame_bytes": 61440, "drip_interval": 2.0, "hold": 45.0},
           {"hold": 5.0}, peak_mib=None,
           bound="--frame-timeout (30 s) covers WebSocket frames and unfinished messages",
           transports=("ws",)),
    Attack("observers", "6", "157 connections x 64 observations of /time, never read "
           "(4 KiB receive buffers)", observers,
           {"conns": 157, "per_conn": 64, "path": "/time", "rcvbuf": 4096, "hold": 120.0,
            "check_every": 5.0},
           {"conns": 4, "per_conn": 8, "hold": 5.0, "check_every": 2.0},
           bound="a peer that reads nothing for a write timeout while we owe it output is "
                 "aborted, its observations freed: a real observer is registered"),
    Attack("ping-flood", "7", "one connection sending Pings as fast as it can (reading "
           "the Pongs) for 20 s", flood, {"kind": "ping", "duration": 20.0},
           {"duration": 3.0},
           bound="a message budget per connection per reactor turn (fairness; the "
                 "throughput ratio is benchmarks/fairness.py)"),
    Attack("hello-flood", "7", "one connection pipelining GET /hello as fast as it can "
           "(reading the answers) for 20 s", flood, {"kind": "hello", "duration": 20.0},
           {"duration": 3.0},
           bound="a message budget per connection per reactor turn (fairness)"),
    Attack("half-close", "8", "2,000 pipelined GET /hello and one slow (500 ms) request, "
           "then a TCP FIN; 30 tries", half_close,
           {"tries": 30, "gets": 2000, "slow_ms": 500, "timeout": 10.0},
           {"tries": 3, "gets": 200},
           peak_mib=None, bound="answer what arrived before the FIN, then close"),
]}

#: What ``--attack all`` runs at once (amplify-3000 is left out: amplify-10 sends more).
CAMPAIGN = ["amplify-10", "amplify-bert", "amplify-ws", "amplify-tls", "uploads",
            "ws-handshakes", "custody", "ws-trickle", "observers", "ping-flood",
            "hello-flood", "half-close"]

#: In the campaign the short attacks last as long as the long ones (observers: 120 s).
CAMPAIGN_OVERRIDES: dict[str, dict[str, Any]] = {
    **{name: {"hold": 90.0} for name in ("amplify-10", "amplify-bert", "amplify-ws",
                                          "amplify-tls", "ws-handshakes", "ws-trickle")},
    "ping-flood": {"duration": 90.0},
    "hello-flood": {"duration": 90.0},
}
