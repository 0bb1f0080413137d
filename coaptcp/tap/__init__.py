"""The ``twistd coaptcp`` plugin: :class:`Options` and :func:`makeService`.
"""

from __future__ import annotations

from coaptcp.tap.plugin import (
    CoapService,
    Options,
    makeService,
)

__all__ = [
    "CoapService",
    "Options",
    "makeService",
]
