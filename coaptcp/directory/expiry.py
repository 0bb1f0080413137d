"""Deadlines of many registrations on one timer (RFC 9176 section 5.3: a registration
ends when its lifetime passes without an update).

A registration's deadline moves on every update, which is a registrant's routine
refresh.  Moving one ``DelayedCall`` per registration would work too, but the reactor
keeps those in one heap and a refresh would reorder it; here a refresh pushes a new entry
and the old one is dropped when it comes up (lazy deletion).  :class:`ExpiryQueue` holds
the entries, is pure, and is bounded: once stale entries outnumber the live ones it is
rebuilt from the live ones alone.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ExpiryQueue"]

T = TypeVar("T")


class ExpiryQueue(Generic[T]):
    """Items by deadline, where an item's current deadline is read from it.

    :param deadline_of: an item's current deadline, or ``None`` once it needs none (it was
        removed); an entry whose deadline differs from it is stale and skipped.
    """

    def __init__(self, deadline_of: Callable[[T], float | None]) -> None:
        self._deadline_of = deadline_of
        self._heap: list[tuple[float, int, T]] = []
        self._count = 0  # tie-breaker: items themselves need not be comparable
        self._live: dict[int, T] = {}

    def __len__(self) -> int:
        """Entries held, stale ones included (at most about twice the live items)."""
        return len(self._heap)

    def push(self, item: T, deadline: float) -> None:
        """``item`` is due at ``deadline`` now (its earlier entries become stale)."""
        self._live[id(item)] = item
        self._count += 1
        heapq.heappush(self._heap, (deadline, self._count, item))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def discard(self, item: T) -> None:
        """``item`` needs no deadline any more."""
        self._live.pop(id(item), None)
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def next_deadline(self) -> float | None:
        """The earliest deadline of an item still due, or ``None``."""
        heap = self._heap
        while heap:
            deadline, _, item = heap[0]
            if id(item) in self._live and self._deadline_of(item) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[T]:
        """Remove and return the items whose deadline is ``now`` or earlier."""
        due: list[T] = []
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return due
            _, _, item = heapq.heappop(self._heap)
            self._live.pop(id(item), None)
            due.append(item)

    def _compact(self) -> None:
        entries = []
        for item in self._live.values():
            deadline = self._deadline_of(item)
            if deadline is not None:
                self._count += 1
                entries.append((deadline, self._count, item))
        heapq.heapify(entries)
        self._heap = entries
