"""Observations a calling-home device holds on its back end, kept across reconnects.

RFC 8323 section 7.4: an observation ends with its connection.  A device behind NAT
loses its connection now and then and calls home again; what it observed on the back end
(its configuration, a command queue) must follow it.  A :class:`BackendObservation` is
one such observation: :class:`~coaptcp.callhome.CallHome` registers it (GET with
Observe=0, RFC 7641 section 3.1) on each new registered connection, and again after a
registration update for one whose registration failed on a live connection (no answer in
time); the callback sees every notification of every registration.  It ends for good
only when the back end ends it (a response without Observe, or an error, which the
callback gets first) or when it is cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from coaptcp.client.client import Client
    from coaptcp.client.observe import Observation
    from coaptcp.core.options import Options
    from coaptcp.core.uri import CoapUri
    from coaptcp.server.request import Response

__all__ = ["DEFAULT_MAX_OBSERVATIONS", "BackendObservation"]

#: Observations one device may hold on its back end (each holds a token and a callback).
DEFAULT_MAX_OBSERVATIONS = 64


class BackendObservation:
    """An observation of a back-end resource, registered again on every new connection.

    Made by :meth:`coaptcp.callhome.CallHome.observe`.

    :ivar uri: the observed resource.
    :ivar notifications: the responses delivered (over every registration).
    :ivar registrations: how many times the GET was sent to register (once per
        connection, and again after an interrupted registration).
    :ivar end_reason: why it ended, in words (``None`` while it lasts).
    """

    log = Logger()

    def __init__(
        self,
        uri: CoapUri,
        options: Options,
        callback: Callable[[Response], object],
        forget: Callable[[BackendObservation], None],
        timeout: float | None,
    ) -> None:
        self.uri = uri
        self.options = options
        self.notifications = 0
        self.registrations = 0
        self.end_reason: str | None = None
        self._callback = callback
        self._forget = forget
        self._timeout = timeout
        self._current: Observation | None = None
        self._ended = False
        self._end_waiters: list[Deferred[None]] = []

    @property
    def ended(self) -> bool:
        """Whether it is over: ended by the back end, or cancelled."""
        return self._ended

    @property
    def active(self) -> bool:
        """Whether it is registered (or being registered) on the current connection."""
        return self._current is not None

    def when_ended(self) -> Deferred[None]:
        """Fires (with ``None``) once it has ended for good."""
        if self._ended:
            return succeed(None)
        d: Deferred[None] = Deferred(self._end_waiters.remove)
        self._end_waiters.append(d)
        return d

    def cancel(self) -> Deferred[None]:
        """Stop observing; deregisters on the current connection (GET with Observe=1,
        RFC 8323 section 7.4) and fires once that is answered (or at once when not
        registered)."""
        current, self._current = self._current, None
        self._end("cancelled")
        if current is None:
            return succeed(None)
        return current.cancel()

    # -- from the CallHome ----------------------------------------------------------------

    def start(self, client: Client) -> None:
        """Register on ``client``'s connection to the back end (a new registration)."""
        if self._ended or self._current is not None:
            return
        current = client.observe(
            self.uri,
            options=self.options,
            callback=self._deliver,
            timeout=self._timeout,
        )
        self._current = current
        self.registrations += 1
        current.when_ended().addBoth(self._current_ended, current)

    def detach(self) -> None:
        """The connection is being let go (the device stops): forget the registration
        without ending; the next :meth:`start` registers again."""
        self._current = None

    # -- internals ------------------------------------------------------------------------

    def _deliver(self, response: Response) -> None:
        self.notifications += 1
        try:
            self._callback(response)
        except Exception:
            self.log.failure("Call-home observation callback failed for {uri}", uri=str(self.uri))

    def _current_ended(self, result: Any, current: Observation) -> None:
        if current is not self._current:
            return  # cancelled or detached: nothing to do
        self._current = None
        if isinstance(result, Failure):
            # The connection went, or the registration got no answer in time: it is
            # registered again on the next connection (or after the next update).
            self.log.debug("Call-home observation of {uri} interrupted: {error}",
                           uri=str(self.uri), error=result.getErrorMessage())
            return
        self._end(current.end_reason or "the back end ended the observation")

    def _end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.end_reason = reason
        self._forget(self)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(None)
