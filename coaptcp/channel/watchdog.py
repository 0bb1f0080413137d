"""One connection's watchdog: release it when idle, Ping it when silent (RFC 8323 5.4, 5.5).

RFC 8323 leaves it to the application when to close a connection (section 5.5) and how to
find out that its peer is gone (section 5.4: a Ping, answered by a Pong).  A
:class:`Watchdog` does both on one timer, for anything that implements :class:`Watched`
(a :class:`~coaptcp.channel.Channel` does; a client's pool of connections could too):

- it is given the two periods (``idle_timeout``, ``keepalive_interval``, either ``None``
  for off) and the ``pong_timeout``;
- its owner writes ``watchdog.last_activity = reactor.seconds()`` whenever the peer is
  heard (an attribute, not a method: it is written on every read);
- :meth:`Watchdog.start` arms it, :meth:`Watchdog.stop` disarms it for good;
- once idle for ``idle_timeout`` with nothing in flight it calls
  :meth:`Watched.watchdog_idle` (release); once silent for ``keepalive_interval`` it
  sends one Ping with :meth:`Watched.ping`, and a Pong missing after ``pong_timeout``
  calls :meth:`Watched.watchdog_no_pong` (abort).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import CancelledError, TimeoutError

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

__all__ = ["Watchdog", "Watched", "cancel_calls"]


def cancel_calls(*calls: Any) -> None:
    """Cancel each of ``calls`` (``IDelayedCall`` or ``None``) that is still pending."""
    for call in calls:
        if call is not None and call.active():
            call.cancel()


class Watched(Protocol):
    """What a :class:`Watchdog` needs from the connection it watches."""

    def watchdog_busy(self) -> bool:
        """Whether work is in flight (requests, observations): then it is not idle."""

    def watchdog_may_ping(self) -> bool:
        """Whether a keepalive Ping may go now (not once a Release was sent or received:
        then only the work in flight is finished, RFC 8323 section 5.5)."""

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """Send a Ping that fails with ``TimeoutError`` after ``timeout`` seconds."""

    def watchdog_idle(self, idle: float) -> None:
        """Nothing happened for ``idle`` seconds, and nothing is in flight: release."""

    def watchdog_no_pong(self, timeout: float) -> None:
        """A keepalive Ping got no Pong within ``timeout`` seconds: the peer is gone."""


class Watchdog:
    """The idle and keepalive timer of one connection; see the module's description.

    :param watched: the connection.
    :param reactor: provides ``callLater`` and ``seconds``.
    :param idle_timeout: seconds without activity and work in flight before a release.
    :param keepalive_interval: seconds of silence before a Ping.
    :param pong_timeout: seconds a keepalive Ping waits for its Pong.
    :ivar last_activity: when the peer was last heard (the owner keeps it up to date).
    """

    __slots__ = (
        "_call",
        "_idle_timeout",
        "_keepalive_interval",
        "_ping",
        "_pong_timeout",
        "_reactor",
        "_watched",
        "last_activity",
    )

    def __init__(
        self,
        watched: Watched,
        reactor: IReactorTime,
        *,
        idle_timeout: float | None,
        keepalive_interval: float | None,
        pong_timeout: float,
    ) -> None:
        self._watched: Watched | None = watched
        self._reactor = reactor
        self._idle_timeout = idle_timeout
        self._keepalive_interval = keepalive_interval
        self._pong_timeout = pong_timeout
        self._call: Any = None
        self._ping: Deferred[float] | None = None
        self.last_activity = reactor.seconds()

    def start(self) -> None:
        """Arm the timer (for the shorter period; nothing if both are off)."""
        period = self.first_check
        if period is not None and self._watched is not None:
            delay = period - (self._reactor.seconds() - self.last_activity)
            if delay <= 0:
                delay = period  # overdue but busy: look again a whole period later
            self._call = self._reactor.callLater(delay, self.check)

    @property
    def started(self) -> bool:
        """Whether the timer is armed."""
        return self._call is not None

    @property
    def first_check(self) -> float | None:
        """Seconds from the last activity to the first check (``None``: both periods off)."""
        periods = [p for p in (self._idle_timeout, self._keepalive_interval) if p is not None]
        return min(periods) if periods else None

    @property
    def has_periods(self) -> bool:
        """Whether there is anything to watch (an idle timeout or a keepalive)."""
        return self._idle_timeout is not None or self._keepalive_interval is not None

    def stop(self) -> None:
        """No more checks: cancel the timer and let go of the connection.  A keepalive
        Ping already sent still reports a missing Pong (the connection may be closing,
        with its Pong still due)."""
        self._watched = None
        cancel_calls(self._call)
        self._call = None

    def check(self) -> None:
        """Check now (what the timer does when it fires), then arm the timer again.

        A watchdog started late (:meth:`start` looks a whole period ahead when already
        overdue) should be started with this instead."""
        if self._call is not None:
            cancel_calls(self._call)
        self._call = None
        watched = self._watched
        if watched is None:
            return
        idle = self._reactor.seconds() - self.last_activity
        idle_timeout = self._idle_timeout
        if idle_timeout is not None and idle >= idle_timeout and not watched.watchdog_busy():
            watched.watchdog_idle(idle)
            return
        interval = self._keepalive_interval
        if (
            interval is not None
            and idle >= interval
            and self._ping is None
            and watched.watchdog_may_ping()
        ):
            self._ping = ping = watched.ping(timeout=self._pong_timeout)
            ping.addCallbacks(self._pong_arrived, self._pong_missing, errbackArgs=(watched,))
            self.last_activity = self._reactor.seconds()
        self.start()

    def _pong_arrived(self, rtt: float) -> None:
        self._ping = None

    def _pong_missing(self, failure: Failure, watched: Watched) -> None:
        self._ping = None
        if failure.check(TimeoutError, CancelledError):
            watched.watchdog_no_pong(self._pong_timeout)
