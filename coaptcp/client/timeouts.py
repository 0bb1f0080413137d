"""Time limits on the client's requests and Pings (RFC 8323 sections 3.4 and 5.4).

A request's limit counts from the call, connection set-up included; a block-wise transfer
(RFC 7959, RFC 8323 section 6) restarts it with each block's answer.  Expiry cancels the
operation (which frees its token) and fails it with
:class:`~coaptcp.client.errors.RequestTimeout`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from coaptcp.client.errors import RequestTimeout

__all__ = ["check_seconds", "with_idle_timeout", "with_timeout"]

_T = TypeVar("_T")


def check_seconds(name: str, seconds: float | None) -> None:
    """A :class:`ValueError` unless ``seconds`` is ``None`` or a finite number >= 0."""
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{name} is a finite number of seconds >= 0 or None, not {seconds!r}")


def with_timeout(
    reactor: Any, d: Deferred[_T], timeout: float | None, what: str
) -> Deferred[_T]:
    """``d``, failing with :class:`RequestTimeout` (``"{what} within N s"``) when it has
    not fired after ``timeout`` seconds; ``d`` itself when ``timeout`` is ``None``."""
    if timeout is None:
        return d

    def on_timeout(result: Any, seconds: float) -> Any:
        if isinstance(result, Failure) and result.check(CancelledError):
            raise RequestTimeout(f"{what} within {seconds:g} s")
        return result

    return d.addTimeout(timeout, reactor, onTimeoutCancel=on_timeout)


def with_idle_timeout(
    reactor: Any,
    start: Callable[[Callable[[], None]], Coroutine[Any, Any, _T]],
    timeout: float | None,
    what: str,
) -> Deferred[_T]:
    """Run ``start(kick)``; fail with :class:`RequestTimeout` when ``timeout`` seconds
    pass without a call to ``kick`` (each block of a transfer calls it)."""
    calls: list[Any] = []
    expired: list[bool] = []

    def kick() -> None:
        if calls and calls[0].active():
            calls[0].reset(timeout)

    d = Deferred.fromCoroutine(start(kick))
    if timeout is None:
        return d

    def expire() -> None:
        expired.append(True)
        d.cancel()

    def finished(result: Any) -> Any:
        if calls[0].active():
            calls[0].cancel()
        if expired and isinstance(result, Failure) and result.check(CancelledError):
            raise RequestTimeout(f"{what} within {timeout:g} s")
        return result

    calls.append(reactor.callLater(timeout, expire))
    return d.addBoth(finished)
