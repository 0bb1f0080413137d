"""The lookup interface's filtering and paging (RFC 9176 sections 6.1, 6.2 and 6.4).

A lookup's query is a list of criteria, ``name=value`` with a trailing ``*`` as a prefix
wildcard (RFC 6690 section 4.1), plus ``page`` and ``count``.  Every criterion must
match.  A resource link matches a criterion when it has a matching attribute (``href``
and ``anchor`` compare with the resolved URIs) or when its endpoint does; an endpoint
matches when its own attributes do (``ep``, ``d``, ``base``, ``href`` for its
registration resource, ``rt=core.rd-ep``, its endpoint attributes) or when any of its
resource links does (section 6.2).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from coaptcp.core.codes import Code
from coaptcp.directory.links import StoredLink
from coaptcp.directory.registration import ENDPOINT_TYPE, Registration
from coaptcp.server.request import CoapError

__all__ = [
    "LookupBudget",
    "LookupCache",
    "LookupQuery",
    "endpoint_lookup",
    "format_resource_links",
    "is_link_local_host",
    "parse_lookup_query",
    "resource_lookup",
]


@dataclass
class LookupQuery:
    """A lookup's criteria (``(name, pattern)``; ``None``: the attribute is present)
    and its page (``count`` results from ``page * count``)."""

    criteria: list[tuple[str, str | None]] = field(default_factory=list)
    page: int | None = None
    count: int | None = None

    @property
    def needed(self) -> int | None:
        """How many results the page needs found (``None``: all of them)."""
        return None if self.count is None else ((self.page or 0) + 1) * self.count

    def paginate(self, results: Sequence[object]) -> Sequence[object]:
        """The page asked for (section 6.2: links ``page * count`` onwards, at most
        ``count``); everything without ``count``."""
        if self.count is None:
            return results
        start = (self.page or 0) * self.count
        return results[start : start + self.count]


def parse_lookup_query(query: Sequence[str]) -> LookupQuery:
    """Split a lookup's Uri-Query into criteria, ``page`` and ``count``; 4.00 for a
    ``page`` or ``count`` that is not a number, a repeated one, or ``page`` without
    ``count`` (section 6.2)."""
    parsed = LookupQuery()
    for argument in query:
        name, equals, value = argument.partition("=")
        if name in ("page", "count"):
            if getattr(parsed, name) is not None:
                raise CoapError(Code.BAD_REQUEST, f"{name} is given more than once")
            if not value.isascii() or not value.isdigit():
                raise CoapError(Code.BAD_REQUEST, f"{name} must be a number, not {value!r}")
            setattr(parsed, name, int(value))
        elif name:
            parsed.criteria.append((name, value if equals else None))
    if parsed.page is not None and parsed.count is None:
        raise CoapError(Code.BAD_REQUEST, "page cannot be used without count")
    return parsed


def _matches(pattern: str | None, values: Iterable[str]) -> bool:
    if pattern is None:
        return any(True for _ in values)
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return any(value.startswith(prefix) for value in values)
    return any(value == pattern for value in values)


def _link_values(registration: Registration, index: int, link: StoredLink,
                 name: str) -> list[str]:
    if name == "href":
        return [registration.resolved_targets()[index]]
    if name == "anchor":
        anchor = registration.resolved_anchor(link)
        return [] if anchor is None else [anchor]
    return link.values(name)


def _endpoint_values(registration: Registration, name: str, own: bool) -> list[str]:
    values = registration.attribute_values(name)
    if own and name == "rt":
        values.append(ENDPOINT_TYPE)
    return values


def _candidates(registrations: Iterable[Registration], criteria: Sequence[tuple[str, str | None]],
                by_name: Callable[[str], list[Registration]] | None,
                requester: str | None) -> Iterable[Registration]:
    """The registrations a lookup looks at: all, or those of the one endpoint name an
    exact ``ep`` criterion gives (found by name, not by a scan); link-local ones only for
    a link-local requester."""
    if by_name is not None:
        for name, pattern in criteria:
            if name == "ep" and pattern is not None and not pattern.endswith("*"):
                registrations = by_name(pattern)
                break
    local = is_link_local_host(requester)
    for registration in registrations:
        if local or not registration.link_local:
            yield registration


def is_link_local_host(host: str | None) -> bool:
    """Whether ``host`` (a requester's address) is link-local."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


def endpoint_lookup(
    registrations: Iterable[Registration],
    query: LookupQuery,
    *,
    by_name: Callable[[str], list[Registration]] | None = None,
    requester: str | None = None,
) -> list[Registration]:
    """The registrations an endpoint lookup returns, in order, before paging (6.4);
    it stops once the page asked for is complete."""
    found: list[Registration] = []
    needed = query.needed
    for registration in _candidates(registrations, query.criteria, by_name, requester):
        for name, pattern in query.criteria:
            if _matches(pattern, _endpoint_values(registration, name, own=True)):
                continue
            if not any(
                _matches(pattern, _link_values(registration, i, link, name))
                for i, link in enumerate(registration.links)
            ):
                break
        else:
            found.append(registration)
            if needed is not None and len(found) >= needed:
                break
    return found


def resource_lookup(
    registrations: Iterable[Registration],
    query: LookupQuery,
    *,
    by_name: Callable[[str], list[Registration]] | None = None,
    requester: str | None = None,
) -> list[tuple[Registration, int]]:
    """The links a resource lookup returns, as ``(registration, index)``, in order,
    before paging (6.1); it stops once the page asked for is complete."""
    found: list[tuple[Registration, int]] = []
    needed = query.needed
    for registration in _candidates(registrations, query.criteria, by_name, requester):
        # Criteria the endpoint itself meets hold for each of its links.
        open_criteria = [
            (name, pattern) for name, pattern in query.criteria
            if not _matches(pattern, _endpoint_values(registration, name, own=False))
        ]
        for i, link in enumerate(registration.links):
            if all(_matches(pattern, _link_values(registration, i, link, name))
                   for name, pattern in open_criteria):
                found.append((registration, i))
        if needed is not None and len(found) >= needed:
            break
    return found


def format_resource_links(results: Iterable[tuple[Registration, int]]) -> str:
    """The links of a resource lookup, targets and anchors resolved (6.1)."""
    return ",".join(registration.resolved_link(i) for registration, i in results)


class LookupCache:
    """The last lookup answers, for as long as no registration changed.

    A large answer travels block by block, and over UDP every block is a request of its
    own (RFC 7959 section 2.4) that would render the whole lookup again; so answers are
    kept by query and by the directory's version, which every change of a registration
    moves.  Bounded: ``max_entries`` answers, ``max_bytes`` in total, none larger than a
    quarter of that (the least recently used go first).
    """

    def __init__(self, max_entries: int = 16, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of the answers held."""
        return self._bytes

    def get(self, key: Hashable, version: int) -> bytes | None:
        """The answer kept for ``key`` at ``version``, if any."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] != version:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, version: int, payload: bytes) -> None:
        """Keep ``payload`` as the answer for ``key`` at ``version``."""
        self._drop(key)
        if len(payload) > self.max_bytes // 4:
            return
        self._entries[key] = (version, payload)
        self._bytes += len(payload)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


class LookupBudget:
    """The work the lookups of one directory may do: a lookup not answered from the
    cache examines every registration and link (sections 6.1, 6.2) at once, on the
    reactor, so what it costs comes out of a bucket of ``capacity`` that refills in
    ``refill_seconds``.  A lookup that does not fit waits (5.03 with Max-Age, RFC 9176
    section 4's answer for a directory at a bound); the bucket full always fits one
    lookup of a full directory.
    """

    def __init__(self, capacity: int, refill_seconds: float = 10.0) -> None:
        self.capacity = capacity
        self.rate = capacity / refill_seconds
        self.level = float(capacity)
        self._at: float | None = None
        #: Whether the last lookup was refused (a refusal episode, logged once).
        self.refusing = False

    def spend(self, cost: int, now: float) -> int | None:
        """Take ``cost`` (at most ``capacity``) at ``now``: ``None`` when taken, else the
        whole seconds until it fits."""
        if self._at is not None:
            self.level = min(self.capacity, self.level + (now - self._at) * self.rate)
        self._at = now
        cost = min(cost, self.capacity)
        if self.level >= cost:
            self.level -= cost
            self.refusing = False
            return None
        self.refusing = True
        return max(1, math.ceil((cost - self.level) / self.rate))
