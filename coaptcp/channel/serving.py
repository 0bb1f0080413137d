"""The observations a :class:`~coaptcp.channel.Channel` serves: its side of RFC 7641, as
updated for reliable transports by RFC 8323 section 7.

The channel keeps its peer's observations by token (at most ``max_observations``; more
are declined, RFC 7641 section 4.1), renders a fresh notification on every change, ends an
observation on an error response (RFC 7641 section 3.2) and all of them with the
connection (RFC 8323 section 7.4).  While the peer reads slowly, observations are only
marked stale; each gets the latest state once it catches up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coaptcp.channel.base import ChannelBase
from coaptcp.server.observe import ObservationRegistry, mark_notification
from coaptcp.server.request import Request, Response

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from coaptcp.core.message import Message
    from coaptcp.server.observe import ObservableResource, Observer

__all__ = ["DEFAULT_MAX_OBSERVATIONS", "ServedObservations"]

#: Observations one connection may hold (RFC 7641 section 4.1 lets a server decline more).
DEFAULT_MAX_OBSERVATIONS = 64


class ServedObservations(ChannelBase, ObservationRegistry):
    """The peer's observations of our resources, by token (RFC 7641 section 4)."""

    __slots__ = ()

    def make_request(self, message: Message) -> Request:
        """A :class:`Request` for ``message`` as received on this connection.

        Raises :class:`UnicodeDecodeError` when a Uri-Host, Uri-Path or Uri-Query value
        is not UTF-8.
        """
        return Request.received(message, self.peer, self.default_host, self.secure, self.tls, self)

    @property
    def observation_count(self) -> int:
        """Observations registered on this connection."""
        return len(self._observations)

    def add_observation(self, resource: ObservableResource, request: Request) -> bool:
        """Register ``request`` as an observer of ``resource``; false when declined."""
        if self._lost:
            return False  # an async render finished after the connection went away
        token = request.token
        existing = self._observations.get(token)
        if existing is not None:
            existing.resource.remove_observer(self, token)
        elif len(self._observations) >= self.max_observations:
            self._log_limit_once(
                "max_observations",
                "Declining further observations from {peer}: {count} already",
                count=len(self._observations),
            )
            return False
        observation = resource.add_observer(self, request.message)
        if observation is None:
            self._observations.pop(token, None)
            return False
        self._observations[token] = observation
        return True

    def remove_observation(self, resource: ObservableResource, token: bytes) -> None:
        """Deregister the observation with ``token`` (RFC 8323 section 7.4)."""
        observation = self._observations.pop(token, None)
        if observation is not None:
            observation.resource.remove_observer(self, token)

    def notify(self, observation: Observer) -> None:
        """Send ``observation`` a fresh notification, or mark it stale while we are paused."""
        if self._lost or self._observations.get(observation.token) is not observation:
            return
        if self._paused or observation.rendering:
            observation.stale = True
            return
        observation.stale = False
        observation.rendering = True
        assert self.site is not None
        try:
            request = observation.new_request()
        except UnicodeDecodeError:  # it decoded when it registered; cannot happen
            self.remove_observation(observation.resource, observation.token)
            return
        result = self.site.render_resource(observation.resource, request)
        if isinstance(result, Response):
            self._send_notification(observation, result)
        else:
            result.addBoth(self._deferred_notification, observation)

    def _deferred_notification(self, result: Response | Failure, observation: Observer) -> None:
        self._send_notification(observation, self._response_or_error(result))

    def _send_notification(self, observation: Observer, response: Response) -> None:
        observation.rendering = False
        if self._lost or self._observations.get(observation.token) is not observation:
            return
        if response.code.is_successful:
            mark_notification(response, observation.resource)
        else:
            # An error response ends the observation (RFC 7641 section 3.2).
            self.remove_observation(observation.resource, observation.token)
        self._respond(observation.message, response)
        counts = self.counts
        if counts is not None:
            counts.notifications += 1
        # Not an answer to a read: the end of the turn will do, where every notification
        # of this change to this connection goes in one send (coaptcp.transport.eager).
        self._flush_soon()
        if observation.stale:
            self.notify(observation)

    def _drop_observations(self) -> None:
        """End every observation (the connection closes: RFC 8323 section 7.4)."""
        observations, self._observations = self._observations, {}
        for observation in observations.values():
            observation.resource.remove_observer(self, observation.token)
