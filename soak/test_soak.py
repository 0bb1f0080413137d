"""Soak test: thousands of connections against a real ``twistd coaptcp`` on loopback.

Not part of the default test run (``testpaths = tests``): run it with
``python -m pytest soak/ -s`` (see soak/README.md).  It starts the installed ``twistd``
with ``--resource soak_site.make_site``, then runs rounds of load (soakload.py): short
connections of every kind (hello, Release, block-wise upload and read-back, half-finished
uploads, Abort, garbage, frames cut short, peers that never send a CSM) and a set of
observers of /time held open together, some uploading while they observe.

Between rounds it waits (bounded) for the server to have closed every connection, then
asks ``/soak/stats`` what the process still holds.  At the end it checks that no
connection, observation, upload, pending request or timer is left, that the count of live
objects and the RSS (read from /proc/PID/status) came back to what they were after the
first (warm-up) round, that nothing unhandled was logged, and that SIGTERM stops the
server cleanly.

Sizes come from the environment: SOAK_ROUNDS (6), SOAK_CHURN (3000 short connections a
round), SOAK_HOLD (2000 observers held at once), SOAK_HOLD_SECONDS (3), SOAK_SILENT (50
a round), SOAK_CONCURRENCY (100).  SOAK_REPORT names a JSON file for the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SOAK_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SOAK_DIR))

import soakload  # noqa: E402

pytestmark = pytest.mark.soak

START_DEADLINE = 30.0
IDLE_DEADLINE = 60.0
STOP_DEADLINE = 30.0
ROUND_DEADLINE = 300.0
CSM_TIMEOUT = 2

#: Growth allowed between the warm-up round and the end: RSS may keep a little for heap
#: fragmentation and caches (8 MiB or 10 %, whichever is more); the live-object count a
#: few hundred (caches filled lazily), where a leak of one object per connection would
#: show as thousands.
RSS_SLACK_KB = 8 * 1024
RSS_SLACK_RATIO = 0.10
OBJECT_SLACK = 500


def _twistd() -> list[str]:
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _log_problems(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if "Traceback" in line or "Unhandled" in line or "CRITICAL" in line or "[ERROR]" in line
    ]


@pytest.fixture
def server(tmp_path: Path) -> Any:
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = dict(os.environ, PYTHONPATH=str(SOAK_DIR), PYTHONUNBUFFERED="1")
    command = [
        *_twistd(),
        "-n",
        "--pidfile=",
        f"--logfile={log_path}",
        "coaptcp",
        "--tcp",
        f"tcp:{port}:interface=127.0.0.1",
        "--resource",
        "soak_site.make_site",
        "--csm-timeout",
        str(CSM_TIMEOUT),
        "--max-connections-per-address",
        "20000",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            pytest.fail(f"twistd exited with {process.returncode}:\n{output}\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("twistd did not start listening in time")
            time.sleep(0.1)  # bounded polling for the port to open
    try:
        yield port, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)


async def _wait_idle(port: int) -> dict[str, int]:
    """Poll /soak/stats until the server holds nothing but the asking connection."""
    deadline = time.monotonic() + IDLE_DEADLINE
    while True:
        stats = await soakload.stats(port, trim=False)
        idle = (
            stats["connections"] == 1
            and stats["channels"] == 0
            and stats["observers"] == 0
            and stats["uploads"] == 0
        )
        if idle:
            return await soakload.stats(port, trim=True)
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not become idle: {stats}")
        await asyncio.sleep(0.2)  # bounded polling; the server closes asynchronously


async def _soak(port: int, pid: int) -> dict[str, Any]:
    rounds = soakload.env_int("SOAK_ROUNDS", 6)
    churn = soakload.env_int("SOAK_CHURN", 3000)
    hold = soakload.env_int("SOAK_HOLD", 2000)
    hold_seconds = float(os.environ.get("SOAK_HOLD_SECONDS", "3"))
    silent = soakload.env_int("SOAK_SILENT", 50)
    concurrency = soakload.env_int("SOAK_CONCURRENCY", 100)

    report: dict[str, Any] = {
        "rounds": [],
        "config": {
            "rounds": rounds,
            "churn": churn,
            "hold": hold,
            "hold_seconds": hold_seconds,
            "silent": silent,
            "concurrency": concurrency,
        },
    }
    start = await soakload.stats(port, trim=True)
    report["start"] = {**start, "rss_kb_proc": _rss_kb(pid)}
    failures: list[str] = []
    for number in range(rounds):
        began = time.monotonic()
        held_rss: list[int] = []
        result = await asyncio.wait_for(
            soakload.run_round(
                port,
                churn=churn,
                hold=hold,
                hold_seconds=hold_seconds,
                silent_count=silent,
                concurrency=concurrency,
                offset=number * 100_000,
                on_held=lambda held_rss=held_rss: held_rss.append(_rss_kb(pid)),
            ),
            ROUND_DEADLINE,
        )
        loaded_rss = _rss_kb(pid)
        after = await _wait_idle(port)
        failures += result.failures
        report["rounds"].append(
            {
                "connections": dict(result.connections),
                "connections_total": sum(result.connections.values()) + len(result.failures),
                "held_at_once": result.held,
                "notifications": result.notifications,
                "failures": len(result.failures),
                "seconds": round(time.monotonic() - began, 1),
                "rss_kb_proc_held": held_rss[0] if held_rss else None,
                "rss_kb_proc_loaded": loaded_rss,
                "after": {**after, "rss_kb_proc": _rss_kb(pid)},
            }
        )
    report["failures"] = failures[:50]
    return report


def test_soak(server: Any) -> None:
    port, process, log_path = server
    report = asyncio.run(_soak(port, process.pid))

    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("twistd did not stop within the deadline after SIGTERM")
    report["exit_code"] = code
    log = log_path.read_text(errors="replace")

    target = os.environ.get("SOAK_REPORT")
    if target:
        Path(target).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))

    assert not report["failures"], report["failures"]
    warm = report["rounds"][0]["after"]
    end = report["rounds"][-1]["after"]
    for key in ("channels", "observations", "observers", "uploads", "pending", "unanswered"):
        assert end[key] == 0, f"{key} left at the end: {end}"
    assert end["connections"] == 1 and end["addresses"] == 1, end  # the asking connection
    assert end["delayed_calls"] == report["start"]["delayed_calls"], (report["start"], end)
    assert end["gc_objects"] <= warm["gc_objects"] + OBJECT_SLACK, (warm, end)
    allowed = warm["rss_kb_proc"] + max(RSS_SLACK_KB, int(warm["rss_kb_proc"] * RSS_SLACK_RATIO))
    assert end["rss_kb_proc"] <= allowed, (
        f"RSS grew from {warm['rss_kb_proc']} KiB after the warm-up round to "
        f"{end['rss_kb_proc']} KiB at the end"
    )
    # twistd shuts down cleanly, then re-raises SIGTERM on itself (twisted.application.app
    # ._exitWithSignal), so its status is "killed by SIGTERM" after "Server Shut Down.".
    assert code in (0, -signal.SIGTERM), f"twistd exited with {code} after SIGTERM"
    assert "Server Shut Down." in log, log[-2000:]
    problems = _log_problems(log)
    assert not problems, "\n".join(problems)
