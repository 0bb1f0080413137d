"""How long a device waits before calling home again: jittered exponential back-off.

RFC 8323 leaves reconnection to the application (section 3 intro: "the client ...
re-establishes the connection"), and RFC 9176 section 4 asks registrants not to flood a
directory.  A fleet that loses its back end at once (a restart, a network outage) must
not come back at once: each device waits ``min(max_delay, initial * factor ** n)``
seconds after its ``n``-th consecutive failure, shortened by a random part of up to
``jitter`` of it, so the attempts of many devices spread over time and the delay never
grows beyond ``max_delay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_BACKOFF", "Backoff"]


@dataclass(frozen=True)
class Backoff:
    """The delays between attempts to call home (see the module's description).

    :ivar initial: seconds before the first retry (at most; jitter shortens it).
    :ivar factor: how much each further failure multiplies the delay (1 keeps it fixed).
    :ivar max_delay: the longest delay, whatever the number of failures.
    :ivar jitter: the part of each delay that is random, from 0 (none: every device
        retries at the same moments) to 1 (anywhere between 0 and the delay).
    :ivar reset_after: seconds a registered connection must last for its loss to count
        as a first failure again; a back end that accepts devices and drops them at
        once keeps them backing off instead of reconnecting at the initial rate.
    """

    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.5
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "max_delay", "jitter", "reset_after"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        if self.initial <= 0:
            raise ValueError("initial must be positive")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if self.max_delay < self.initial:
            raise ValueError("max_delay must be at least initial")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.reset_after < 0:
            raise ValueError("reset_after cannot be negative")

    def ceiling(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures before any jitter (0 for the
        first retry): ``min(max_delay, initial * factor ** failures)``."""
        if failures < 0:
            raise ValueError("failures cannot be negative")
        try:
            grown = self.initial * self.factor**failures
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, grown)

    def delay(self, failures: int, random: Callable[[], float]) -> float:
        """A delay after ``failures`` consecutive failures: the :meth:`ceiling` shortened
        by ``jitter * random()`` of it, so within ``[ceiling * (1 - jitter), ceiling]``.

        :param random: gives a number in ``[0, 1)`` (``random.random``, or a fixed one in
            tests).
        """
        ceiling = self.ceiling(failures)
        return ceiling * (1.0 - self.jitter * min(max(random(), 0.0), 1.0))


#: The back-off a :class:`~coaptcp.callhome.CallHome` uses unless given another: 1 s,
#: doubling up to 5 minutes, half of it random.
DEFAULT_BACKOFF = Backoff()
