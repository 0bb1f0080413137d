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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from coaptcp.core.codes import Code
from coaptcp.directory.links import StoredLink, format_link
from coaptcp.directory.peers import is_link_local
from coaptcp.directory.registration import ENDPOINT_TYPE, Registration
from coaptcp.server.request import CoapError

__all__ = [
    "LookupQuery",
    "endpoint_lookup",
    "format_resource_links",
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
    local = _is_link_local_address(requester)
    for registration in registrations:
        if local or not is_link_local(registration.base):
            yield registration


def _is_link_local_address(host: str | None) -> bool:
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
    """The registrations an endpoint lookup returns, in order, before paging (6.4)."""
    found = []
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
    return found


def resource_lookup(
    registrations: Iterable[Registration],
    query: LookupQuery,
    *,
    by_name: Callable[[str], list[Registration]] | None = None,
    requester: str | None = None,
) -> list[tuple[Registration, int]]:
    """The links a resource lookup returns, as ``(registration, index)``, in order,
    before paging (6.1)."""
    found = []
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
    return found


def format_resource_links(results: Iterable[tuple[Registration, int]]) -> str:
    """The links of a resource lookup, targets and anchors resolved (6.1)."""
    return ",".join(
        format_link(registration.links[i], registration.base) for registration, i in results
    )
