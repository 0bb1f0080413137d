"""The resource directory's CoAP interface: ``/rd``, ``/rd/<key>``, ``/rd-lookup/ep`` and
``/rd-lookup/res`` (RFC 9176 sections 4.3, 5, 5.3 and 6).

:func:`install_directory` puts them into a resource tree; ``/.well-known/core`` then
lists ``</rd>;rt=core.rd``, ``</rd-lookup/ep>;rt=core.rd-lookup-ep`` and
``</rd-lookup/res>;rt=core.rd-lookup-res`` (section 4.3).

- ``POST /rd?ep=NAME[&d=SECTOR][&lt=SECONDS][&base=URI][&...]`` with the endpoint's
  links (Content-Format 40): 2.01 Created, Location-Path ``rd``, ``<key>``.  The same
  ``ep`` and ``d`` again replace that registration, at the same location (section 5).
- ``POST /rd/<key>[?lt=..&base=..]`` updates it (2.04; a link-format payload replaces
  its links), ``DELETE`` removes it (2.02), ``GET`` reads its links as registered
  (section 5.3).
- ``GET /rd-lookup/ep`` and ``GET /rd-lookup/res`` look up endpoints and resources, with
  the filters and paging of section 6.2; resource links come with their targets and
  anchors resolved against the registration's base (section 6.1).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from coaptcp.core.codes import Code
from coaptcp.core.linkformat import LINK_FORMAT
from coaptcp.core.options import Options
from coaptcp.directory.directory import ResourceDirectory
from coaptcp.directory.links import LinkFormatError, StoredLink, parse_links
from coaptcp.directory.lookup import (
    LookupBudget,
    LookupCache,
    LookupQuery,
    endpoint_lookup,
    format_resource_links,
    is_link_local_host,
    parse_lookup_query,
    resource_lookup,
)
from coaptcp.directory.peers import peer_host
from coaptcp.directory.policy import (
    Authorizer,
    DirectoryFull,
    DirectoryLimits,
    PayloadTooLarge,
    parse_registration_query,
)
from coaptcp.directory.registration import Registration
from coaptcp.server.request import CoapError, Request, Response
from coaptcp.server.resource import Resource

__all__ = [
    "DirectoryResource",
    "EndpointLookupResource",
    "RegistrationResource",
    "ResourceLookupResource",
    "install_directory",
    "links_of",
]


def links_of(
    request: Request, limits: DirectoryLimits, refused: dict[str, int] | None = None
) -> list[StoredLink]:
    """The links a registration or update carries (RFC 9176 section 4.2: link-format).

    4.15 for another Content-Format, 4.13 (with Size1) beyond ``max_payload`` bytes or
    ``max_links`` links, 4.00 for a payload that is not UTF-8 link-format.  A 4.13 is
    counted in ``refused`` (the directory's, by bound: ``"payload"``,
    ``"links per registration"``).
    """
    content_format = request.content_format
    if content_format is not None and content_format != LINK_FORMAT:
        raise CoapError(Code.UNSUPPORTED_CONTENT_FORMAT,
                        "registrations are application/link-format (Content-Format 40)")
    payload = request.payload
    if len(payload) > limits.max_payload:
        _count(refused, "payload")
        raise PayloadTooLarge(f"{len(payload)} bytes of links; at most {limits.max_payload} "
                              f"are accepted", limits.max_payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CoapError(Code.BAD_REQUEST, f"the links are not UTF-8: {error}") from None
    try:
        return parse_links(text, max_links=limits.max_links)
    except LinkFormatError as error:
        if str(error).startswith("more than"):
            _count(refused, "links per registration")
            raise PayloadTooLarge(f"{error}: at most {limits.max_links} links are accepted",
                                  limits.max_payload) from None
        raise CoapError(Code.BAD_REQUEST, f"the payload is not link-format: {error}") from None


def _count(refused: dict[str, int] | None, bound: str) -> None:
    if refused is not None:
        refused[bound] = refused.get(bound, 0) + 1


def _link_format(text: str, code: Code = Code.CONTENT) -> Response:
    return Response(code, text.encode("utf-8"), content_format=LINK_FORMAT)


def _check_accept(request: Request) -> None:
    accept = request.accept
    if accept is not None and accept != LINK_FORMAT:
        raise CoapError(Code.NOT_ACCEPTABLE, "lookups answer in application/link-format "
                                             "(Content-Format 40) only")


class DirectoryResource(Resource):
    """``/rd``: the registration interface (RFC 9176 section 5); its children are the
    registration resources."""

    link_attributes = {"rt": "core.rd", "ct": LINK_FORMAT}

    def __init__(self, directory: ResourceDirectory) -> None:
        super().__init__()
        self.directory = directory

    def render_POST(self, request: Request) -> Response:
        """Registration (section 5): 2.01 with the registration resource's location."""
        directory = self.directory
        query = parse_registration_query(request.query,
                                         max_attributes=directory.limits.max_attributes)
        links = links_of(request, directory.limits, directory.refused)
        registration = directory.register(request, query, links)
        return Response(Code.CREATED,
                        options=Options.build(location_path=(directory.path, registration.key)))

    def getChild(self, name: str, request: Request) -> Resource | None:
        """The registration resource ``name``, while it is registered (else 4.04)."""
        registration = self.directory.find_by_key(name)
        if registration is None:
            return None
        return RegistrationResource(self.directory, registration)


class RegistrationResource(Resource):
    """``/rd/<key>``: one registration resource (RFC 9176 section 5.3)."""

    listed = False

    def __init__(self, directory: ResourceDirectory, registration: Registration) -> None:
        super().__init__()
        self.directory = directory
        self.registration = registration

    def render_GET(self, request: Request) -> Response:
        """The links as registered (section 5.3.3 leaves reading them to
        implementations); lookups show them to anyone, so this does too."""
        return _link_format(self.registration.link_format())

    def render_POST(self, request: Request) -> Response:
        """Registration update (section 5.3.1): 2.04."""
        directory = self.directory
        query = parse_registration_query(request.query,
                                         max_attributes=directory.limits.max_attributes)
        links = links_of(request, directory.limits, directory.refused) if request.payload else None
        directory.update(self.registration, request, query, links)
        return Response(Code.CHANGED)

    def render_DELETE(self, request: Request) -> Response:
        """Registration removal (section 5.3.2): 2.02."""
        self.directory.check_access(self.registration, request)
        self.directory.remove(self.registration, "removed by its registrant (DELETE)")
        return Response(Code.DELETED)


class _Lookup(Resource):
    """A lookup resource: its answers are kept while no registration changes, and the
    others are paid for from ``budget`` (:class:`~coaptcp.directory.lookup.LookupBudget`,
    by default one of its own)."""

    log = Logger()

    def __init__(self, directory: ResourceDirectory, budget: LookupBudget | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.cache = LookupCache()
        self.budget = budget if budget is not None else lookup_budget(directory)

    def render_GET(self, request: Request) -> Response:
        _check_accept(request)
        query = parse_lookup_query(request.query)
        directory = self.directory
        requester = peer_host(request)
        key = (request.query, is_link_local_host(requester))
        payload = self.cache.get(key, directory.version)
        if payload is None:
            refused = self._over_budget()
            if refused is not None:
                return refused
            payload = self.lookup(query, requester).encode("utf-8")
            self.cache.put(key, directory.version, payload)
        return Response(Code.CONTENT, payload, content_format=LINK_FORMAT)

    def lookup(self, query: LookupQuery, requester: str | None) -> str:
        """The answer to ``query``, in link-format."""
        raise NotImplementedError

    def _over_budget(self) -> Response | None:
        directory, budget = self.directory, self.budget
        episode = budget.refusing
        wait = budget.spend(directory.total_links + len(directory), directory.reactor.seconds())
        if wait is None:
            return None
        if not episode:
            self.log.warn("Resource directory lookups over their lookup budget ({links} "
                          "links in {count} registrations); answering 5.03 until it refills",
                          links=directory.total_links, count=len(directory))
        return DirectoryFull("too many lookups of a large directory; retry later", wait).response()


def lookup_budget(directory: ResourceDirectory) -> LookupBudget:
    """A lookup budget for ``directory``: the bucket full fits one lookup of the directory
    at its limits (every registration, every link), and refills in ten seconds."""
    limits = directory.limits
    return LookupBudget(limits.max_total_links + limits.max_registrations)


class EndpointLookupResource(_Lookup):
    """``/rd-lookup/ep``: endpoint lookup (RFC 9176 section 6.4)."""

    link_attributes = {"rt": "core.rd-lookup-ep", "ct": LINK_FORMAT}

    def lookup(self, query: LookupQuery, requester: str | None) -> str:
        directory = self.directory
        found = endpoint_lookup(directory.iter_registrations(), query, by_name=directory.find_all,
                                requester=requester)
        page: Any = query.paginate(found)
        return ",".join(r.endpoint_link() for r in page)


class ResourceLookupResource(_Lookup):
    """``/rd-lookup/res``: resource lookup (RFC 9176 section 6.1)."""

    link_attributes = {"rt": "core.rd-lookup-res", "ct": LINK_FORMAT}

    def lookup(self, query: LookupQuery, requester: str | None) -> str:
        directory = self.directory
        found = resource_lookup(directory.iter_registrations(), query, by_name=directory.find_all,
                                requester=requester)
        page: Any = query.paginate(found)
        return format_resource_links(page)


def install_directory(
    root: Resource,
    directory: ResourceDirectory | None = None,
    *,
    lookup_path: str = "rd-lookup",
    reactor: Any = None,
    limits: DirectoryLimits | None = None,
    authorize: Authorizer | None = None,
) -> ResourceDirectory:
    """Serve a resource directory in the tree below ``root``: ``/<directory.path>``
    (``/rd``) and ``/<lookup_path>/ep``, ``/<lookup_path>/res``.

    Without a ``directory``, one is made with ``reactor``, ``limits`` and ``authorize``.
    Raises :class:`ValueError` if ``root`` has children of those names already.
    """
    if directory is None:
        kwargs: dict[str, Any] = {"reactor": reactor, "limits": limits}
        if authorize is not None:
            kwargs["authorize"] = authorize
        directory = ResourceDirectory(**kwargs)
    for name in (directory.path, lookup_path):
        if name in root.children:
            raise ValueError(f"the resource tree has a /{name} already; the resource "
                             f"directory needs it")
    root.putChild(directory.path, DirectoryResource(directory))
    lookup = Resource()
    budget = lookup_budget(directory)
    lookup.putChild("ep", EndpointLookupResource(directory, budget))
    lookup.putChild("res", ResourceLookupResource(directory, budget))
    root.putChild(lookup_path, lookup)
    return directory
