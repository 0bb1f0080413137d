"""The entry point of one worker process of ``twistd coaptcp --workers N``.

:mod:`coaptcp.tap.workers` starts each worker as
``python -c WORKER_BOOTSTRAP --log-format=json coaptcp [options]``, which calls
:func:`main` here: that is ``python -m twisted`` (Twisted's ``twist`` runner) with two
things done before Twisted loads:

* ``LISTEN_PID`` is set to this process's pid, so that the listening sockets the parent
  passed at file descriptors 3, 4, ... (``LISTEN_FDS``, ``LISTEN_FDNAMES``, the systemd
  socket-activation protocol) are adopted by the worker's ``systemd:`` endpoints;
* when ``COAPTCP_WORKER`` is set, SIGINT is ignored (a terminal's Ctrl-C reaches the
  whole process group; the parent then stops its workers), and the worker stops itself
  (SIGTERM: stop listening, release the connections) once its stdin, a pipe from the
  parent, reaches end of file: the parent is gone, and no worker outlives it.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from collections.abc import Sequence
from typing import BinaryIO

__all__ = ["main"]


def stop_with_parent(stream: BinaryIO) -> threading.Thread:
    """SIGTERM this process when ``stream`` (the parent's pipe) reaches end of file."""

    def watch() -> None:
        try:
            while stream.read(4096):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="coaptcp-parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``twist`` with ``argv`` as one worker."""
    if "LISTEN_FDS" in os.environ:
        os.environ["LISTEN_PID"] = str(os.getpid())
    if os.environ.get("COAPTCP_WORKER") is not None:
        # A Ctrl-C in a terminal reaches the whole process group: the parent stops the
        # workers itself (SIGTERM), and a worker stopped twice would log a traceback.
        # Twisted leaves an ignored SIGINT alone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_with_parent(sys.stdin.buffer)
    sys.argv = ["twist", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("twisted", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
