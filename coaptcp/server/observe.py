"""Observable resources (RFC 7641, as updated for reliable transports by RFC 8323 section 7).

Subclass :class:`ObservableResource` and call :meth:`~ObservableResource.notify` whenever
its state changes: every observer gets a notification, a fresh rendering of ``GET`` with
the token of its registration.  A GET with Observe=0 registers, Observe=1 with the same
token deregisters (RFC 8323 section 7.4), an error response ends the observation, and a
closed connection removes all of its observations.

Notifications always carry an Observe value that increases (and is never empty on the
wire, although RFC 8323 section 7.1 allows it: deployed clients drop empty ones) and a
Max-Age (RFC 7641 section 4.2).  A slow reader
is not sent a queue of old states: while its transport cannot take more, its observations
are only marked stale, and it gets the latest state once it catches up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from twisted.logger import Logger

from coaptcp.core.options import OptionNumber, Options, encode_uint
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from coaptcp.core.message import Message
    from coaptcp.server.resource import Site

__all__ = [
    "DEFAULT_MAX_OBSERVERS",
    "SEQUENCE_MODULUS",
    "ObservableResource",
    "ObservationRegistry",
    "Observer",
    "ObserverConnection",
    "mark_notification",
    "observe_request",
]

_OBSERVE = int(OptionNumber.OBSERVE)
_MAX_AGE = int(OptionNumber.MAX_AGE)

#: Observe values are 24-bit sequence numbers (RFC 7641 section 3.4).
SEQUENCE_MODULUS = 1 << 24
#: Observers one resource accepts before it answers further registrations without
#: registering them (RFC 7641 section 4.1 lets a server decline).
DEFAULT_MAX_OBSERVERS = 10_000


class ObserverConnection(Protocol):
    """What an :class:`Observer` needs from its connection (a
    :class:`~coaptcp.channel.Channel`, which keeps it by token)."""

    def make_request(self, message: Message) -> Request:
        """A :class:`Request` for ``message`` as received on this connection."""

    def notify(self, observation: Observer) -> None:
        """Send ``observation`` a fresh notification (RFC 7641 section 4.2)."""


@dataclass(eq=False)
class Observer:
    """One observer: the registering GET, on its connection, for one resource."""

    resource: ObservableResource
    channel: ObserverConnection
    message: Message
    rendering: bool = False
    stale: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def token(self) -> bytes:
        """The token of the registration, repeated in every notification."""
        return self.message.token

    def new_request(self) -> Request:
        """A fresh :class:`Request` equal to the registering GET, for re-rendering."""
        return self.channel.make_request(self.message)


class ObservableResource(Resource):
    """A resource clients can observe (RFC 7641); call :meth:`notify` on every change.

    :attr:`max_age` is put on notifications that do not set their own Max-Age.
    """

    observable: ClassVar[bool] = True
    max_age: ClassVar[int] = 60
    max_observers: ClassVar[int] = DEFAULT_MAX_OBSERVERS
    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._observations: dict[tuple[int, bytes], Observer] = {}
        self._sequence = 0
        self._full_logged = False

    # -- observers ------------------------------------------------------------------------

    @property
    def observer_count(self) -> int:
        """How many observations are registered."""
        return len(self._observations)

    def observations(self) -> Iterator[Observer]:
        """The registered observations."""
        return iter(list(self._observations.values()))

    def next_sequence(self) -> int:
        """The next Observe value: increasing, 24 bits, never 0 (never empty on the wire)."""
        self._sequence = self._sequence % (SEQUENCE_MODULUS - 1) + 1
        return self._sequence

    def add_observer(self, channel: ObserverConnection, message: Message) -> Observer | None:
        """Register the GET ``message`` on ``channel``; ``None`` when declined (full)."""
        key = (id(channel), message.token)
        if key not in self._observations and len(self._observations) >= self.max_observers:
            if not self._full_logged:  # once until there is room again
                self._full_logged = True
                self.log.warn(
                    "Not registering further observers of {resource}: {count} already",
                    resource=self,
                    count=len(self._observations),
                )
            return None
        self._full_logged = False
        observation = Observer(self, channel, message)
        self._observations[key] = observation
        self.observer_added(observation)
        return observation

    def remove_observer(self, channel: ObserverConnection, token: bytes) -> Observer | None:
        """Deregister one observation; returns it, or ``None`` if it was not registered."""
        observation = self._observations.pop((id(channel), token), None)
        if observation is not None:
            self.observer_removed(observation)
        return observation

    def observer_added(self, observation: Observer) -> None:
        """Hook: an observer registered (start producing updates, say)."""

    def observer_removed(self, observation: Observer) -> None:
        """Hook: an observer went away (stop producing updates when none is left)."""

    def notify(self) -> None:
        """The state changed: send every observer a notification (RFC 7641 section 4.2)."""
        for observation in self.observations():
            observation.channel.notify(observation)

    def handle_observe(
        self, site: Site, request: Request, observe: int
    ) -> Response | Deferred[Response]:
        """Register on Observe=0, deregister on Observe=1; see :func:`observe_request`."""
        return observe_request(site, self, request, observe)


class ObservationRegistry:
    """What a connection must offer for observations: the
    :class:`~coaptcp.channel.Channel` implements it."""

    __slots__ = ()

    def add_observation(self, resource: ObservableResource, request: Request) -> bool:
        """Register ``request`` (a GET with Observe=0); false when declined."""
        raise NotImplementedError

    def remove_observation(self, resource: ObservableResource, token: bytes) -> None:
        """Deregister the observation with ``token``, if any."""
        raise NotImplementedError


def mark_notification(response: Response, resource: ObservableResource) -> None:
    """Give ``response`` the resource's next Observe value and a Max-Age (RFC 7641 4.2)."""
    sequence = resource.next_sequence()
    items = response.options.items
    if not any(number == _OBSERVE or number == _MAX_AGE for number, _ in items):
        # The common case, once per notification: neither is there yet; both go in,
        # in one pass (option numbers stay sorted).
        observe = (_OBSERVE, encode_uint(sequence))
        max_age = (_MAX_AGE, encode_uint(resource.max_age))
        merged = [pair for pair in items if pair[0] < _OBSERVE]
        merged.append(observe)
        merged += [pair for pair in items if _OBSERVE < pair[0] < _MAX_AGE]
        merged.append(max_age)
        merged += [pair for pair in items if pair[0] > _MAX_AGE]
        response.options = Options._from_sorted(tuple(merged))
        return
    options = response.options.replace(OptionNumber.OBSERVE, sequence)
    if options.max_age is None:
        options = options.replace(OptionNumber.MAX_AGE, resource.max_age)
    response.options = options


def observe_request(
    site: Site, resource: Resource, request: Request, observe: int
) -> Response | Deferred[Response]:
    """Answer a GET carrying Observe: register on 0 (if the answer is a success),
    deregister on 1 (RFC 7641 sections 3.1 and 3.6, RFC 8323 section 7.4)."""
    registry = request.channel
    if not isinstance(resource, ObservableResource) or not isinstance(
        registry, ObservationRegistry
    ):
        return site.render_resource(resource, request)
    if observe == 1:
        registry.remove_observation(resource, request.token)
        return site.render_resource(resource, request)

    def registered(response: Response) -> Response:
        if observe == 0 and response.code.is_successful:
            if registry.add_observation(resource, request):
                mark_notification(response, resource)
        return response

    result = site.render_resource(resource, request)
    if isinstance(result, Response):
        return registered(result)
    return result.addCallback(registered)
