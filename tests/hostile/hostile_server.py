"""Start the real ``twistd coaptcp`` (the installed package) with any arguments, for the
hostile tests that need more than the module-wide ``coap_server`` of conftest.py: several
listeners, TLS, short timeouts, or a lowered descriptor limit.

The child starts with default signal handling (SIGINT back to SIG_DFL), optionally with
``RLIMIT_NOFILE`` set to ``nofile`` for both its soft and hard limit (so it cannot raise
it), and is stopped with SIGTERM (SIGKILL past a deadline).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import childproc
import pytest
from hostile_wire import log_problems

START_DEADLINE = 30.0
STOP_DEADLINE = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Twistd:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def open_descriptors(self) -> int | None:
        """How many descriptors the server holds now (Linux), or ``None``."""
        try:
            return len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except OSError:
            return None


def _child_setup(nofile: int | None) -> None:
    # The signals tests send as by default, whatever the test runner inherited (a runner
    # started in the background ignores SIGINT).
    childproc.default_signals()
    if nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


@contextlib.contextmanager
def twistd(
    workdir: Path,
    args: Sequence[str],
    ports: Sequence[int],
    *,
    nofile: int | None = None,
    pythonpath: str | None = None,
    reactor: str | None = None,
) -> Iterator[Twistd]:
    """``python -m twisted coaptcp ARGS`` in ``workdir``, once every port accepts.

    On exit it is stopped, and its whole log must show no traceback.  ``pythonpath``
    lets ``--resource`` find a test module (the package is always the installed one);
    ``reactor`` is twist's ``--reactor`` (``epoll``, ``poll``, ``select``).
    """
    log_path = workdir / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    with open(log_path, "wb") as log_file:
        process = childproc.popen(
            # ``python -m twisted`` is ``twist``: always in the foreground; text logs, as
            # twistd -n writes them, so that tracebacks show as text.
            [sys.executable, "-m", "twisted", "--log-format=text", "--log-file=-",
             *([f"--reactor={reactor}"] if reactor else []), "coaptcp", *args],
            cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, preexec_fn=lambda: _child_setup(nofile),
        )
    server = Twistd(process, log_path)
    try:
        deadline = time.monotonic() + START_DEADLINE
        for port in ports:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"twistd exited with {process.returncode}:\n{server.log()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"twistd did not listen on {port} in time:\n{server.log()}")
                    time.sleep(0.05)  # bounded polling for the port to open
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_DEADLINE)
    problems = log_problems(server.log())
    if problems:
        pytest.fail("server log shows unhandled errors:\n" + server.log())
