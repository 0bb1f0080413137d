"""Child processes for tests, started with the default signal dispositions.

A test command started in the background by a script inherits SIGINT (and SIGQUIT) as
*ignored*, and ignored signals stay ignored across ``exec``: a CLI or server started from
such a test would never see the SIGINT the test sends it (Python installs its
KeyboardInterrupt handler, and Twisted its own, only where SIGINT was not ignored).
Every test that starts a process goes through :func:`popen` or :func:`run`, which reset
the signals tests send to their defaults in the child before it runs, and unblock them;
``tests/test_children.py`` checks both that and that no test spawns a process otherwise.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from typing import Any

__all__ = ["RESET_SIGNALS", "default_signals", "popen", "run"]

#: The signals a child gets back with their default disposition.
RESET_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def default_signals() -> None:
    """``preexec_fn``: default dispositions for :data:`RESET_SIGNALS`, none blocked."""
    for number in RESET_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RESET_SIGNALS)


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """:class:`subprocess.Popen` with :func:`default_signals` in the child."""
    kwargs.setdefault("preexec_fn", default_signals)
    return subprocess.Popen(list(argv), **kwargs)


def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """:func:`subprocess.run` with :func:`default_signals` in the child."""
    kwargs.setdefault("preexec_fn", default_signals)
    return subprocess.run(list(argv), **kwargs)
