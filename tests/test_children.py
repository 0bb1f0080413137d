"""Every child process a test starts has the default SIGINT disposition (issue 13, item 5).

A test run started in the background by a script inherits SIGINT as ignored; a child
that inherits that never sees the SIGINT a test sends it.  ``childproc`` resets it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import childproc

TESTS = Path(__file__).resolve().parent

#: Ways of starting a process other than through childproc.
_SPAWNS = re.compile(
    r"subprocess\.(Popen|run|call|check_call|check_output)\(|os\.(system|spawn\w*|exec\w*|fork)\("
    r"|create_subprocess_\w+\(|spawnProcess\(|from subprocess import"
)


def signal_masks(pid: int) -> dict[str, int]:
    """The signal masks of a running process, from /proc (Linux)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("SigIgn", "SigBlk"):
            masks[name] = int(value.strip(), 16)
    return masks


def bit(number: int) -> int:
    return 1 << (number - 1)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """As in a test run started in the background by a script."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_child_gets_the_default_sigint_even_when_the_tests_ignore_it() -> None:
    sleeper = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    with sigint_ignored():
        plain = subprocess.Popen(sleeper, stdin=subprocess.PIPE)
        ours = childproc.popen(sleeper, stdin=subprocess.PIPE)
    try:
        # What the bug looked like: a plain child inherits the ignored SIGINT...
        assert signal_masks(plain.pid)["SigIgn"] & bit(signal.SIGINT)
        # ... while childproc's children have the default disposition for each signal.
        masks = signal_masks(ours.pid)
        for number in childproc.RESET_SIGNALS:
            assert not masks["SigIgn"] & bit(number), signal.Signals(number).name
            assert not masks["SigBlk"] & bit(number), signal.Signals(number).name
        ours.send_signal(signal.SIGINT)
        assert ours.wait(timeout=10) != 0  # it took the signal (KeyboardInterrupt)
    finally:
        for process in (plain, ours):
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_run_resets_the_signals_too() -> None:
    with sigint_ignored():
        result = childproc.run(
            [sys.executable, "-c",
             "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
            capture_output=True, text=True, timeout=30,
        )
    assert result.stdout.strip() == "True"


def test_no_test_starts_a_process_any_other_way() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("childproc.py", "test_children.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if _SPAWNS.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert offenders == [], "start processes with childproc.popen/run:\n" + "\n".join(offenders)
