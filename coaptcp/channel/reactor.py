"""The one place that falls back to Twisted's global reactor.

Every coaptcp API that needs a reactor takes ``reactor=None`` and passes it through
:func:`default_reactor`, so that tests can inject a ``MemoryReactorClock`` and nothing
imports the global reactor at module level (importing it installs the default reactor).
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_reactor"]


def default_reactor(reactor: Any = None) -> Any:
    """``reactor``, or the global reactor when it is ``None`` (imported only then)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor
