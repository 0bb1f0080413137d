"""The resource directory's table of registrations (RFC 9176 sections 5 and 7).

:class:`ResourceDirectory` holds the registrations, by endpoint name and sector and by
location, and applies every rule a registration passes: who may register as whom (the
:data:`~coaptcp.directory.policy.Authorizer`, by default the TLS identity), a name held by
a live connection stays with it (the First-Come-First-Remembered policy of section 7.5,
with the connection as the credential), and the bounds of
:class:`~coaptcp.directory.policy.DirectoryLimits`.  A registration ends when it is
removed, when its lifetime passes without an update (one timer on the reactor clock for
all of them, see :mod:`coaptcp.directory.expiry`), or when the connection it was made over
closes.

Back ends use the same object: :meth:`~ResourceDirectory.find`,
:meth:`~ResourceDirectory.find_by_identity`, :meth:`~ResourceDirectory.when_registered`
and :meth:`~ResourceDirectory.add_listener` (called for every registration made and
ended).  :func:`~coaptcp.directory.install_directory` serves it at ``/rd`` and
``/rd-lookup``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from coaptcp.channel.reactor import default_reactor
from coaptcp.core.codes import Code
from coaptcp.directory.expiry import ExpiryQueue
from coaptcp.directory.links import StoredLink
from coaptcp.directory.peers import connection_of, default_base, peer_host
from coaptcp.directory.policy import (
    Authorizer,
    DirectoryFull,
    DirectoryLimits,
    RegistrationQuery,
    identity_matches,
    identity_names,
)
from coaptcp.directory.registration import EndpointConnection, Registration
from coaptcp.server.request import CoapError, Request

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

__all__ = ["GoneListener", "RegisteredListener", "ResourceDirectory"]

#: Called with each registration made (or made anew by a re-registration).
RegisteredListener = Callable[[Registration], None]
#: Called with each registration that ended, and why.
GoneListener = Callable[[Registration, str], None]


class ResourceDirectory:
    """The registrations of a resource directory (RFC 9176).

    :param reactor: the clock of the lifetimes (``callLater``, ``seconds``).
    :param limits: the bounds of the tables.
    :param authorize: decides who may use which endpoint name (default:
        :func:`~coaptcp.directory.policy.identity_matches`).
    :param path: the directory resource's path segment (locations are ``/<path>/<key>``).
    """

    log = Logger()

    def __init__(
        self,
        *,
        reactor: Any = None,
        limits: DirectoryLimits | None = None,
        authorize: Authorizer = identity_matches,
        path: str = "rd",
    ) -> None:
        self.reactor = default_reactor(reactor)
        self.limits = limits if limits is not None else DirectoryLimits()
        self.authorize = authorize
        self.path = path
        self._by_name: dict[str, dict[str | None, Registration]] = {}
        self._by_key: dict[str, Registration] = {}
        self._per_host: dict[str, int] = {}
        self._connections: dict[EndpointConnection, set[Registration]] = {}
        self._expiry: ExpiryQueue[Registration] = ExpiryQueue(_deadline_of)
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._total_links = 0
        self._registered_listeners: list[RegisteredListener] = []
        self._gone_listeners: list[GoneListener] = []
        self._name_waiters: dict[tuple[str, str | None], list[Deferred[Registration]]] = {}
        self._limits_logged: set[str] = set()
        #: Registrations refused for a bound, by bound (for monitoring).
        self.refused: dict[str, int] = {}
        #: Grows with every change of any registration (lookups can cache on it).
        self.version = 0

    # -- what a back end asks -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Registration]:
        """The registrations, oldest first (a snapshot: removing while iterating is fine)."""
        return iter(list(self._by_key.values()))

    @property
    def total_links(self) -> int:
        """Links held by all registrations together."""
        return self._total_links

    def registrations(self) -> list[Registration]:
        """The registrations, oldest first."""
        return list(self._by_key.values())

    def iter_registrations(self) -> Iterable[Registration]:
        """The registrations, oldest first, without a copy: for a caller that neither
        waits nor changes the directory while it iterates (a lookup)."""
        return self._by_key.values()

    def find(self, endpoint: str, sector: str | None = None) -> Registration | None:
        """The registration of ``endpoint`` in ``sector``, if there is one."""
        sectors = self._by_name.get(endpoint)
        return None if sectors is None else sectors.get(sector)

    def find_all(self, endpoint: str) -> list[Registration]:
        """The registrations of ``endpoint`` in every sector."""
        return list(self._by_name.get(endpoint, {}).values())

    def find_by_key(self, key: str) -> Registration | None:
        """The registration whose location ends in ``key``."""
        return self._by_key.get(key)

    def find_by_identity(self, name: str) -> list[Registration]:
        """The registrations made by a TLS peer that proved ``name`` (a certificate's CN
        or DNS/URI subjectAltName, or a PSK identity)."""
        return [r for r in self._by_key.values() if name in r.identity]

    def find_by_connection(self, connection: object) -> list[Registration]:
        """The registrations made over ``connection``."""
        return list(self._connections.get(connection, ()))  # type: ignore[call-overload]

    def when_registered(self, endpoint: str, sector: str | None = None) -> Deferred[Registration]:
        """Fires with the registration of ``endpoint`` once there is one (at once if
        there is one now)."""
        found = self.find(endpoint, sector)
        if found is not None:
            return succeed(found)
        key = (endpoint, sector)

        def cancelled(d: Deferred[Registration]) -> None:
            waiting = self._name_waiters.get(key, [])
            if d in waiting:
                waiting.remove(d)
            if not waiting:
                self._name_waiters.pop(key, None)

        d: Deferred[Registration] = Deferred(cancelled)
        self._name_waiters.setdefault(key, []).append(d)
        return d

    def add_listener(
        self,
        on_registered: RegisteredListener | None = None,
        on_gone: GoneListener | None = None,
    ) -> Callable[[], None]:
        """Call ``on_registered(registration)`` for each registration made (and made
        anew), ``on_gone(registration, reason)`` for each that ends; returns a function
        that removes them again."""
        if on_registered is not None:
            self._registered_listeners.append(on_registered)
        if on_gone is not None:
            self._gone_listeners.append(on_gone)

        def remove() -> None:
            if on_registered in self._registered_listeners:
                self._registered_listeners.remove(on_registered)  # type: ignore[arg-type]
            if on_gone in self._gone_listeners:
                self._gone_listeners.remove(on_gone)  # type: ignore[arg-type]

        return remove

    # -- the registration interface (RFC 9176 sections 5 and 5.3) -----------------------

    def register(
        self, request: Request, query: RegistrationQuery, links: list[StoredLink]
    ) -> Registration:
        """Register (or register anew) the endpoint ``query`` names with ``links``.

        Raises :class:`CoapError`: 4.00 without an endpoint name or a base, 4.03 when the
        peer may not use the name or a live connection holds it,
        :class:`~coaptcp.directory.policy.DirectoryFull` (5.03) at a bound.
        """
        endpoint = query.endpoint
        if endpoint is None:
            names = identity_names(request.tls)
            if len(names) != 1:
                raise CoapError(Code.BAD_REQUEST, "ep (the endpoint name) is required")
            endpoint = names[0]  # section 5: the one name the peer is authorized to use
        sector = query.sector
        if not self.authorize(request, endpoint, sector):
            raise CoapError(Code.FORBIDDEN, _not_authorized(request, endpoint))
        connection = connection_of(request)
        existing = self.find(endpoint, sector)
        if existing is not None and existing.connection is not None:
            if existing.connection is not connection:
                raise CoapError(
                    Code.FORBIDDEN,
                    f"endpoint name {endpoint!r} is registered by another connection, "
                    f"which is still open",
                )
        host = peer_host(request) or ""
        base = query.base if query.base is not None else default_base(request)
        if base is None:
            raise CoapError(Code.BAD_REQUEST, "base is required: the request's source has "
                                              "no IP address to make one from")
        self._check_room(existing, host, len(links))
        if existing is None:
            registration = Registration(endpoint, sector, self._new_key(), "")
            registration.location = f"/{self.path}/{registration.key}"
            self._by_key[registration.key] = registration
            self._by_name.setdefault(endpoint, {})[sector] = registration
            old_links = 0
        else:
            registration = existing
            old_links = len(existing.links)
        registration.set_links(links)
        self._total_links += len(links) - old_links
        registration.attributes = tuple(query.attributes)  # replaced: section 5
        registration.set_base(base, query.base is not None)
        self._bind(registration, request, connection, host)
        self._refresh(registration, query.lifetime or self.limits.default_lifetime)
        self.version += 1
        # A device's refresh by registering again is routine: only a new one is news.
        (self.log.debug if existing is not None else self.log.info)(
            "Registered {endpoint} at {location} from {peer} (base {base}, lifetime {lt} s)",
            endpoint=endpoint, location=registration.location, peer=host or request.peer,
            base=registration.base, lt=registration.lifetime,
        )
        self._announce(registration)
        return registration

    def update(
        self,
        registration: Registration,
        request: Request,
        query: RegistrationQuery,
        links: list[StoredLink] | None,
    ) -> None:
        """Update a registration (section 5.3.1): restart its lifetime (``lt`` if given),
        change its base or attributes, replace its links when ``links`` is given."""
        self.check_access(registration, request)
        if query.endpoint not in (None, registration.endpoint) or query.sector not in (
            None, registration.sector
        ):
            raise CoapError(Code.BAD_REQUEST, "an update cannot change ep or d; register anew")
        if links is not None:
            self._check_total_links(len(links) - len(registration.links))
            self._total_links += len(links) - len(registration.links)
            registration.set_links(links)
        if query.attributes:
            names = {name for name, _ in query.attributes}
            kept = [(n, v) for n, v in registration.attributes if n not in names]
            registration.attributes = (*kept, *query.attributes)
        if query.base is not None:
            registration.set_base(query.base, True)
        elif not registration.base_given:
            base = default_base(request)  # section 5.3.1: the update's source address
            if base is not None:
                registration.set_base(base, False)
        registration.peer = request.peer
        self._refresh(registration, query.lifetime or registration.lifetime)
        self.version += 1

    def check_access(self, registration: Registration, request: Request) -> None:
        """Raise 4.03 unless ``request`` may operate on ``registration``: one made over a
        connection only from that connection (section 7.5), and only by a peer the
        authorizer accepts for its name (section 8.2)."""
        if registration.connection is not None:
            if registration.connection is not connection_of(request):
                raise CoapError(Code.FORBIDDEN, f"{registration.location} belongs to another "
                                                f"connection")
        if not self.authorize(request, registration.endpoint, registration.sector):
            raise CoapError(Code.FORBIDDEN, _not_authorized(request, registration.endpoint))

    def remove(self, registration: Registration, reason: str = "removed") -> None:
        """End ``registration`` (a DELETE, its expiry, its connection's close, or the
        app's own decision); listeners and :meth:`Registration.when_gone` learn why."""
        if not registration.alive or self._by_key.get(registration.key) is not registration:
            return
        del self._by_key[registration.key]
        sectors = self._by_name[registration.endpoint]
        del sectors[registration.sector]
        if not sectors:
            del self._by_name[registration.endpoint]
        self._release_host(registration.peer_host)
        connection = registration.connection
        if connection is not None:
            self._connections.get(connection, set()).discard(registration)
        self._expiry.discard(registration)
        self._total_links -= len(registration.links)
        self.version += 1
        registration.ended(reason)
        self.log.info("{endpoint} ({location}) is gone: {reason}",
                      endpoint=registration.endpoint, location=registration.location,
                      reason=reason)
        for listener in list(self._gone_listeners):
            self._call(listener, registration, reason)
        self._arm()

    def close(self) -> None:
        """Stop the expiry timer (the registrations stay; a stopping server calls it)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timer_at = None

    # -- inside ---------------------------------------------------------------------------

    def _new_key(self) -> str:
        while True:
            key = os.urandom(4).hex()  # unguessable enough not to invite probing (8.2)
            if key not in self._by_key:
                return key

    def _check_room(self, existing: Registration | None, host: str, links: int) -> None:
        limits = self.limits
        if existing is None and len(self._by_key) >= limits.max_registrations:
            self._refuse("registrations", f"the directory holds {limits.max_registrations} "
                                          f"registrations, its limit")
        if existing is None or existing.peer_host != host:
            if self._per_host.get(host, 0) >= limits.max_per_peer:
                self._refuse("registrations per peer", f"{host or 'this peer'} holds "
                             f"{limits.max_per_peer} registrations, the limit for one address")
        self._check_total_links(links - (len(existing.links) if existing else 0))

    def _check_total_links(self, added: int) -> None:
        if added > 0 and self._total_links + added > self.limits.max_total_links:
            self._refuse("links", f"the directory holds {self._total_links} links; "
                                  f"{self.limits.max_total_links} is its limit")

    def _refuse(self, limit: str, diagnostic: str) -> None:
        self.refused[limit] = self.refused.get(limit, 0) + 1
        if limit not in self._limits_logged:
            self._limits_logged.add(limit)
            self.log.warn("Resource directory limit reached ({limit}): {diagnostic}; "
                          "answering 5.03", limit=limit, diagnostic=diagnostic)
        raise DirectoryFull(diagnostic, self.limits.retry_after)

    def _bind(self, registration: Registration, request: Request,
              connection: EndpointConnection | None, host: str) -> None:
        """Who the registration is from now: its peer, identity and connection."""
        registration.peer = request.peer
        registration.identity = identity_names(request.tls)
        if registration.peer_host != host:
            self._release_host(registration.peer_host)
            self._per_host[host] = self._per_host.get(host, 0) + 1
            registration.peer_host = host
        if registration.connection is not connection:
            registration.connection = connection
            if connection is not None:
                self._watch(connection).add(registration)

    def _release_host(self, host: str | None) -> None:
        if host is None:
            return
        count = self._per_host.get(host, 0) - 1
        if count > 0:
            self._per_host[host] = count
        else:
            self._per_host.pop(host, None)

    def _watch(self, connection: EndpointConnection) -> set[Registration]:
        """The registrations of ``connection``; the first asks to hear of its close.

        The entry stays until the connection closes, even when empty, so that a device
        registering again and again on one connection adds one waiter to it, not many.
        """
        held = self._connections.get(connection)
        if held is None:
            held = self._connections[connection] = set()
            connection.when_closed().addBoth(self._connection_closed, connection)
        return held

    def _connection_closed(self, result: object, connection: EndpointConnection) -> None:
        held = self._connections.pop(connection, set())
        why = getattr(connection, "close_reason", None) or "connection closed"
        for registration in list(held):
            if registration.connection is connection:
                self.remove(registration, f"its connection ended ({why})")

    def _refresh(self, registration: Registration, lifetime: int) -> None:
        registration.lifetime = lifetime
        registration.expires_at = self.reactor.seconds() + lifetime
        self._expiry.push(registration, registration.expires_at)
        self._arm()

    def _arm(self) -> None:
        """Keep the one timer at the earliest deadline (it may fire early: an entry that
        was refreshed since is skipped then)."""
        deadline = self._expiry.next_deadline()
        if deadline is None:
            self.close()
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        self.close()
        delay = max(0.0, deadline - self.reactor.seconds())
        self._timer = self.reactor.callLater(delay, self._expire)
        self._timer_at = deadline

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        for registration in self._expiry.pop_due(self.reactor.seconds()):
            self.remove(registration, f"its lifetime of {registration.lifetime} s passed "
                                      f"without an update")
        self._arm()

    def _announce(self, registration: Registration) -> None:
        for listener in list(self._registered_listeners):
            self._call(listener, registration)
        waiting = self._name_waiters.pop((registration.endpoint, registration.sector), [])
        for d in waiting:
            d.callback(registration)

    def _call(self, listener: Callable[..., None], *args: object) -> None:
        try:
            listener(*args)
        except Exception:
            self.log.failure("Resource directory listener {listener!r} failed",
                             listener=listener)


def _deadline_of(registration: Registration) -> float | None:
    return registration.expires_at if registration.alive else None


def _not_authorized(request: Request, endpoint: str) -> str:
    names = identity_names(request.tls)
    if names:
        return (f"this peer may not register as {endpoint!r}: its TLS identity is "
                f"{', '.join(repr(n) for n in names)}")
    return f"this peer may not register as {endpoint!r}"
