"""Reordering of Observe notifications at the client (RFC 7641 sections 3.4 and 4.4).

Over UDP notifications can arrive out of order.  The Observe value is a 24-bit sequence
number; an incoming notification (V2, received at local time T2) is fresher than the
freshest one so far (V1, received at T1) when::

    (V1 < V2 and V2 - V1 < 2**23) or (V1 > V2 and V1 - V2 > 2**23) or (T2 > T1 + 128 s)

The third clause lets a client resynchronise after a silence; section 4.4 makes it safe by
forbidding a server to advance the value by 2**23 or more within 256 seconds.  Equal
values are not fresher (a duplicate).
"""

from __future__ import annotations

__all__ = [
    "OBSERVE_MODULUS",
    "OBSERVE_REORDER_TIME",
    "OBSERVE_WINDOW",
    "NotificationOrder",
    "observe_newer",
]

#: Observe values are 24-bit (RFC 7641 section 3.4).
OBSERVE_MODULUS = 1 << 24
#: Half the sequence space: the window of "newer" values.
OBSERVE_WINDOW = 1 << 23
#: After this many seconds any notification is fresher (RFC 7641 section 3.4).
OBSERVE_REORDER_TIME = 128.0


def observe_newer(v1: int, v2: int) -> bool:
    """Whether Observe value ``v2`` is newer than ``v1`` in 24-bit serial arithmetic.

    Values are taken modulo 2**24 (a uint option of up to 3 bytes; longer values keep
    their low 24 bits, RFC 7641 section 3.4).
    """
    v1 %= OBSERVE_MODULUS
    v2 %= OBSERVE_MODULUS
    return (v1 < v2 and v2 - v1 < OBSERVE_WINDOW) or (v1 > v2 and v1 - v2 > OBSERVE_WINDOW)


class NotificationOrder:
    """The freshest notification of one observation so far, and the freshness test.

    The first notification (usually the response to the registration) is always fresh.
    """

    __slots__ = ("received", "value")

    def __init__(self) -> None:
        self.value: int | None = None
        self.received = 0.0

    def accept(self, value: int, now: float) -> bool:
        """Whether a notification with Observe ``value`` received at ``now`` is fresher;
        if so it becomes the freshest (RFC 7641 section 3.4)."""
        if (
            self.value is None
            or now > self.received + OBSERVE_REORDER_TIME
            or observe_newer(self.value, value)
        ):
            self.value = value % OBSERVE_MODULUS
            self.received = now
            return True
        return False
