"""Replay corpus files or directories through a fuzz target, without atheris.

    python fuzz/replay.py TARGET PATH [PATH ...]

TARGET is ``decoder``, ``connection`` or ``protocol``; each PATH is an input file or a
directory of them.  Every input runs once through the target's ``test_one_input``; the
first failure is printed with its file name and the command exits 1.  Under coverage.py
this measures what a corpus reaches (see fuzz/README.md)::

    python -m coverage run --include='*/coaptcp/*' fuzz/replay.py decoder fuzz/corpus/decoder
    python -m coverage report
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import fuzzlib  # noqa: F401  (puts the checkout on sys.path)

TARGETS = ("decoder", "connection", "protocol")


def inputs(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file())
        else:
            out.append(path)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in TARGETS:
        print(__doc__, file=sys.stderr)
        return 2
    module = __import__(f"fuzz_{argv[0]}")
    files = inputs(argv[1:])
    for path in files:
        try:
            module.test_one_input(path.read_bytes())
        except Exception:
            print(f"{path}: FAILED", file=sys.stderr)
            traceback.print_exc()
            return 1
    print(f"{argv[0]}: {len(files)} inputs replayed, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
