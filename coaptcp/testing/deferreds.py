"""Reading a Deferred's outcome synchronously, for tests that drive a fake clock.

In memory nothing waits for the network: after :meth:`ConnectedPair.flush
<coaptcp.testing.memory.ConnectedPair.flush>` (or a ``clock.advance``) a request's
Deferred has either fired or it never will, so a test collects the outcome with
:func:`result_of` and asserts on it with :func:`success` or :func:`failure`::

    results = result_of(pair.client.request(Code.GET, options))
    pair.flush()
    response = success(results)
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["failure", "result_of", "success"]


def result_of(d: Deferred[Any]) -> list[Any]:
    """Collect what ``d`` fires with, a value or a :class:`Failure`, into a list.

    The list is empty until ``d`` fires.  The Failure is consumed: it is not logged as
    unhandled when the Deferred is garbage-collected.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def success(results: list[Any]) -> Any:
    """The one success value collected by :func:`result_of`; fails the test otherwise."""
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert not isinstance(value, Failure), value.getTraceback()
    return value


def failure(results: list[Any], *types: type[BaseException]) -> Failure:
    """The one :class:`Failure` collected by :func:`result_of`, checked against ``types``
    (any of them) when given; fails the test otherwise."""
    assert len(results) == 1, f"expected one result, got {results!r}"
    value = results[0]
    assert isinstance(value, Failure), f"expected a failure, got {value!r}"
    if types:
        assert value.check(*types), value.getTraceback()
    return value
