"""Stateless DTLS cookies (RFC 6347 section 4.2.1): proof that a ClientHello's source
address is real, at no cost to the server until it is shown.

A cookie is an HMAC of the peer's address and the current period under a secret drawn
when the socket is made.  A cookie is accepted in its own period and the next one, so it
is good for between one and two periods (:data:`COOKIE_PERIOD` seconds each): long
enough for any client to answer a HelloVerifyRequest, short enough that a ClientHello
captured with its cookie and replayed later no longer starts a handshake (section 4.2.1:
"the secret [should be] changed frequently").
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

__all__ = ["COOKIE_PERIOD", "CookieJar"]

#: Seconds of one cookie period.
COOKIE_PERIOD = 30.0
_COOKIE_BYTES = 16


class CookieJar:
    """Makes and checks the cookies of one coaps:// socket.

    :param clock: the time in seconds (the reactor's ``seconds``).
    :param period: seconds per cookie period (a cookie lives one to two periods).
    """

    def __init__(self, clock: Callable[[], float], period: float = COOKIE_PERIOD) -> None:
        if not period > 0:
            raise ValueError("the cookie period must be positive")
        self.clock = clock
        self.period = period
        self._secret = os.urandom(32)

    def _make(self, peer: object, period: int) -> bytes:
        message = f"{period}|{peer!r}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_COOKIE_BYTES]

    def _period(self) -> int:
        return int(self.clock() // self.period)

    def cookie(self, peer: object) -> bytes:
        """The cookie to send ``peer`` in a HelloVerifyRequest now."""
        return self._make(peer, self._period())

    def valid(self, peer: object, cookie: bytes) -> bool:
        """Whether ``cookie`` is one made for ``peer`` in this period or the last."""
        now = self._period()
        return any(hmac.compare_digest(cookie, self._make(peer, period))
                   for period in (now, now - 1))
