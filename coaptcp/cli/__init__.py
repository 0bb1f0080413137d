"""``coaptcp-client``: the command-line client (``python -m coaptcp.cli`` runs it too).
"""

from __future__ import annotations

from coaptcp.cli.main import (
    main,
)

__all__ = [
    "main",
]
