"""``twistd coaptcp --workers N``: worker processes sharing the listening sockets.
"""

from __future__ import annotations

from coaptcp.workers.pool import (
    WorkerPool,
    WorkerProcessProtocol,
)

__all__ = [
    "WorkerPool",
    "WorkerProcessProtocol",
]
