"""Runs the browser client's JavaScript unit tests (tests/webclient/*.test.mjs) with
node's built-in test runner and checks its summary: every test ran and passed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import childproc

HERE = Path(__file__).resolve().parent
NODE_TIMEOUT = 120.0


def test_javascript_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed; install Debian's nodejs (see README)"
    files = sorted(str(path) for path in HERE.glob("*.test.mjs"))
    assert files, "no JavaScript test files found"
    result = childproc.run(
        [node, "--test", "--test-reporter=tap", *files],
        capture_output=True, text=True, timeout=NODE_TIMEOUT, cwd=HERE,
    )
    output = result.stdout + result.stderr
    counts = {key: int(value) for key, value in re.findall(r"^# (tests|pass|fail) (\d+)$",
                                                            result.stdout, re.MULTILINE)}
    assert result.returncode == 0, output
    assert counts.get("fail") == 0, output
    assert counts.get("tests", 0) >= 30, output  # the suite has not silently shrunk
    assert counts["pass"] == counts["tests"], output
