"""Shared by every test directory.

This folder is on ``sys.path`` (pytest's rootdir-based ``prepend`` import mode puts a
conftest's folder there), so ``import childproc`` works; ``tests/support`` is put there
too, for the helpers that tests in several folders share (``import tls_helpers``), so
that they import the same whichever folders a run collects.
"""

import sys
from pathlib import Path

_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)
