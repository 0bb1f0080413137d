"""The resource tree apps subclass, as in ``twisted.web`` (RFC 7252 sections 5.8-5.10).

A :class:`Resource` answers ``render_GET``, ``render_POST``, ``render_PUT``,
``render_DELETE``, ``render_FETCH``, ``render_PATCH`` and ``render_iPATCH``; each returns a
:class:`Response`, a :class:`~twisted.internet.defer.Deferred` firing with one, or is an
``async def``.  Raise :class:`CoapError` to answer with an error code and a diagnostic
payload.  :class:`Site` walks the tree for each request and turns every outcome into a
response: 4.04, 4.05 (for methods the resource lacks), 4.02 (an unrecognized critical
option), 5.05 (proxy options) and 5.00 (an exception, which is logged).  A GET with
Observe goes to :meth:`Resource.handle_observe`, which
:class:`~coaptcp.server.observe.ObservableResource` overrides (RFC 7641).

:class:`Request`, :class:`Response`, :class:`CoapError` and :data:`RenderResult` are
defined in :mod:`coaptcp.server.request` and importable from here too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterator, Mapping
from typing import TYPE_CHECKING, ClassVar, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.core.codes import Code
from coaptcp.core.linkformat import LINK_FORMAT, AttributeValue, Link, filter_links, format_links
from coaptcp.core.mediatypes import content_format_name
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber
from coaptcp.core.validation import PROXY_OPTIONS, CriticalOptionCheck
from coaptcp.server.request import CoapError, RenderResult, Request, Response, uri_not_utf8

if TYPE_CHECKING:
    from coaptcp.server.counts import AnswerMeter, EventCounts

__all__ = [
    "UNDERSTOOD_OPTIONS",
    "CoapError",
    "RenderResult",
    "Request",
    "Resource",
    "Response",
    "Site",
    "WellKnownCore",
    "bad_option_answer",
]


#: Request options the dispatcher processes itself or hands to resources; any other
#: critical option in a request gets 4.02 (RFC 7252 section 5.4.1).
UNDERSTOOD_OPTIONS = frozenset(
    {
        OptionNumber.IF_MATCH,
        OptionNumber.URI_HOST,
        OptionNumber.ETAG,
        OptionNumber.IF_NONE_MATCH,
        OptionNumber.OBSERVE,
        OptionNumber.URI_PORT,
        OptionNumber.URI_PATH,
        OptionNumber.CONTENT_FORMAT,
        OptionNumber.MAX_AGE,
        OptionNumber.URI_QUERY,
        OptionNumber.HOP_LIMIT,
        OptionNumber.ACCEPT,
        OptionNumber.SIZE1,
        OptionNumber.SIZE2,
        OptionNumber.PROXY_URI,
        OptionNumber.PROXY_SCHEME,
        OptionNumber.NO_RESPONSE,
        OptionNumber.BLOCK1,
        OptionNumber.BLOCK2,
        OptionNumber.REQUEST_TAG,
    }
)

#: The check of every request's critical options against :data:`UNDERSTOOD_OPTIONS`.
_CRITICAL_OPTION_CHECK = CriticalOptionCheck(UNDERSTOOD_OPTIONS)
_CHECK_CRITICAL_OPTIONS = _CRITICAL_OPTION_CHECK.first_problem


def bad_option_answer(message: Message) -> Message | None:
    """4.02 Bad Option for a request ``message`` with an unrecognized critical option
    (RFC 7252 section 5.4.1: unknown, not understood here, a bad length or repeated), as
    :meth:`Site.handle` answers, or for a Uri-Host, Uri-Path or Uri-Query value that is
    not UTF-8 (section 3.2), as the channels answer; ``None`` when its options are fine.

    The block-wise layers ask it before they hold a Block1 block (RFC 7959 section 2.5):
    the Site sees an upload only at its last block.
    """
    options = message.options
    if options._checked is not _CRITICAL_OPTION_CHECK:  # not found fine before
        problem = _CHECK_CRITICAL_OPTIONS(options)
        if problem is not None:
            return Message(Code.BAD_OPTION, message.token, payload=problem[1].encode("utf-8"))
    diagnostic = uri_not_utf8(options)
    if diagnostic is not None:
        return Message(Code.BAD_OPTION, message.token, payload=diagnostic.encode("utf-8"))
    return None


_METHOD_NAMES: Mapping[Code, str] = {
    Code.GET: "GET",
    Code.POST: "POST",
    Code.PUT: "PUT",
    Code.DELETE: "DELETE",
    Code.FETCH: "FETCH",
    Code.PATCH: "PATCH",
    Code.IPATCH: "iPATCH",
}

_RENDER_ATTRIBUTES: Mapping[Code, str] = {
    code: f"render_{name}" for code, name in _METHOD_NAMES.items()
}

_PROXY_URI = 35  # Proxy-Uri (35) and Proxy-Scheme (39) come after every other option
_GET = Code.GET  # a global: an Enum attribute costs ten times as much to look up
_CONTENT = Code.CONTENT
_ACCEPT = 17  # Accept (RFC 7252 section 5.10.4)


class Resource:
    """A node of the resource tree (RFC 7252 section 5.10.1 paths).

    Subclass and define ``render_GET(self, request)`` and friends.  Class attribute
    :attr:`link_attributes` gives this resource's entry in ``/.well-known/core``, for
    example ``{"rt": "temperature", "ct": 0, "title": "Room"}``; set :attr:`listed` to
    false to keep it out.
    """

    link_attributes: ClassVar[Mapping[str, AttributeValue]] = {}
    listed: ClassVar[bool] = True
    #: Whether GET with Observe registers observers (see :mod:`coaptcp.server.observe`); shown
    #: as ``obs`` in ``/.well-known/core``.
    observable: ClassVar[bool] = False
    isLeaf: ClassVar[bool] = False
    #: Whether this resource's answers are another server's, forwarded as they came (a
    #: reverse proxy's or a device mount's, RFC 7252 section 5.7): the site then passes a
    #: 2.05 in another Content-Format than the request's Accept as it is, where it
    #: answers 4.06 for its own resources (section 5.10.4; the origin had the Accept).
    forwards_answers: ClassVar[bool] = False

    def __init__(self) -> None:
        self.children: dict[str, Resource] = {}

    def putChild(self, path: str | bytes, child: Resource) -> None:
        """Make ``child`` answer for the Uri-Path segment ``path`` below this resource."""
        if isinstance(path, bytes):
            path = path.decode("utf-8")
        if "/" in path:
            raise ValueError(f"a child name is one path segment, not {path!r}")
        self.children[path] = child

    def getChild(self, name: str, request: Request) -> Resource | None:
        """Return a dynamic child for ``name``; the default has none (4.04)."""
        return None

    def getChildWithDefault(self, name: str, request: Request) -> Resource | None:
        """A static child if there is one, else :meth:`getChild`."""
        child = self.children.get(name)
        if child is not None:
            return child
        return self.getChild(name, request)

    def allowed_methods(self) -> list[str]:
        """The names of the methods this resource renders."""
        return [name for name in _METHOD_NAMES.values() if hasattr(self, f"render_{name}")]

    def render(self, request: Request) -> RenderResult:
        """Dispatch to ``render_<METHOD>``; a missing one is 4.05 (RFC 7252 section 5.9.2.6)."""
        attribute = _RENDER_ATTRIBUTES.get(request.method)
        handler = getattr(self, attribute, None) if attribute else None
        if handler is None:
            allowed = ", ".join(self.allowed_methods()) or "none"
            raise CoapError(
                Code.METHOD_NOT_ALLOWED,
                f"{_method_label(request.method)} not allowed here; allowed: {allowed}",
            )
        result: RenderResult = handler(request)
        return result

    def handle_observe(
        self, site: Site, request: Request, observe: int
    ) -> Response | Deferred[Response]:
        """Answer a GET carrying Observe=``observe`` (RFC 7641 section 2).

        A resource that cannot be observed renders it as a plain GET;
        :class:`~coaptcp.server.observe.ObservableResource` registers and deregisters.
        """
        return site.render_resource(self, request)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Resource]]:
        """Yield ``(path, resource)`` for this resource's static subtree (for discovery)."""
        for name, child in sorted(self.children.items()):
            path = f"{prefix}/{name}"
            yield path, child
            yield from child.walk(path)


def _method_label(code: Code) -> str:
    return _METHOD_NAMES.get(code) or f"method {code.dotted}"


class WellKnownCore(Resource):
    """``/.well-known/core`` in CoRE Link Format with query filtering (RFC 6690)."""

    listed = False

    def __init__(self, root: Resource) -> None:
        super().__init__()
        self.root = root

    def links(self) -> list[Link]:
        """Every listed resource of the static tree that renders something."""
        links = []
        for path, resource in self.root.walk():
            if not resource.listed or not resource.allowed_methods():
                continue
            attributes = dict(resource.link_attributes)
            if resource.observable:
                attributes["obs"] = None
            links.append(Link(path, attributes))
        return links

    def render_GET(self, request: Request) -> Response:
        links = filter_links(self.links(), request.query)
        return Response(
            Code.CONTENT, format_links(links).encode("utf-8"), content_format=LINK_FORMAT
        )


_WELL_KNOWN_CORE = (".well-known", "core")
_GET_CHILD_WITH_DEFAULT = Resource.getChildWithDefault
_RENDER = Resource.render


class ProxyHandler(Protocol):
    """What answers the requests with Proxy-Uri or Proxy-Scheme a :class:`Site` gets
    (RFC 7252 section 5.7; :class:`coaptcp.proxy.ForwardProxy` is one)."""

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer a proxy request."""
        ...


class Site:
    """Routes requests into a resource tree and turns every outcome into a response.

    :param root: the tree's root (answers for the empty path).
    :param well_known_core: serve ``/.well-known/core`` unless the tree has its own.
    :param proxy: answers requests with Proxy-Uri or Proxy-Scheme; without one they get
        5.05 Proxying Not Supported (RFC 7252 section 5.10.2).
    """

    log = Logger()
    #: Where the connections serving this site count their rare events (Aborts sent,
    #: limits reached, notifications; :mod:`coaptcp.server.counts`): set by ``twistd
    #: coaptcp --metrics``; ``None``, counting nothing, otherwise.
    counts: EventCounts | None = None

    def __init__(
        self, root: Resource, *, well_known_core: bool = True, proxy: ProxyHandler | None = None
    ) -> None:
        self.root = root
        self.proxy = proxy
        self._well_known: WellKnownCore | None = WellKnownCore(root) if well_known_core else None

    def meter_for(self, channel: type, secure: bool) -> AnswerMeter | None:
        """What a connection of class ``channel`` (TLS or not) counts the requests it
        answers with, if it is to count them itself: ``None`` here, as nothing is
        counted; :class:`~coaptcp.metrics.MeteredSite` gives one with ``--metrics``."""
        return None

    def resolve(self, request: Request) -> Resource | None:
        """Walk ``request.postpath`` from the root; ``None`` when nothing answers."""
        resource: Resource | None = self.root
        if self._well_known is not None and request.path == _WELL_KNOWN_CORE:
            well_known = self.root.children.get(".well-known")
            if well_known is None or well_known.children.get("core") is None:
                request.prepath, request.postpath = list(request.path), []
                return self._well_known
        postpath = request.postpath
        prepath = request.prepath
        while postpath and resource is not None and not resource.isLeaf:
            name = postpath.pop(0)
            prepath.append(name)
            if type(resource).getChildWithDefault is _GET_CHILD_WITH_DEFAULT:
                # Resource.getChildWithDefault, inline (one call less per segment).
                child = resource.children.get(name)
                resource = child if child is not None else resource.getChild(name, request)
            else:
                resource = resource.getChildWithDefault(name, request)
        return resource

    def handle(self, request: Request) -> Response | Deferred[Response]:
        """Answer ``request``: a :class:`Response` now, or a Deferred firing with one."""
        try:
            options = request.options
            if options._checked is not _CRITICAL_OPTION_CHECK:  # not found fine before
                problem = _CHECK_CRITICAL_OPTIONS(options)
                if problem is not None:
                    return Response(Code.BAD_OPTION, problem[1].encode("utf-8"))
            items = options.items
            if items and items[-1][0] >= _PROXY_URI:
                for number in PROXY_OPTIONS:
                    if number in request.options:
                        if self.proxy is not None:
                            return self.proxy.handle(request)
                        return Response(
                            Code.PROXYING_NOT_SUPPORTED, b"this server is not a proxy"
                        )
            resource = self.resolve(request)
        except CoapError as error:
            return error.response()
        except Exception:
            return self._internal_error(Failure(), request)
        if resource is None:
            return Response(Code.NOT_FOUND, b"")
        if not resource.observable or request.method != _GET or request.channel is None:
            return self.render_resource(resource, request)
        observe = request.options.observe
        if observe is None:
            return self.render_resource(resource, request)
        return resource.handle_observe(self, request, observe)

    def render_resource(
        self, resource: Resource, request: Request
    ) -> Response | Deferred[Response]:
        """Render ``request`` on ``resource``, turning every outcome into a response."""
        try:
            if type(resource).render is _RENDER:
                # Resource.render, inline (one call less per request): render_<METHOD>,
                # or a missing one is 4.05
                attribute = _RENDER_ATTRIBUTES.get(request.method)
                handler = getattr(resource, attribute, None) if attribute else None
                result = resource.render(request) if handler is None else handler(request)
            else:
                result = resource.render(request)
        except CoapError as error:
            return error.response()
        except Exception:
            return self._internal_error(Failure(), request)
        if isinstance(result, Response):
            items = request.options.items  # sorted: Accept only if the last number is >= 17
            if (
                items
                and items[-1][0] >= _ACCEPT
                and result.code is _CONTENT
                and not resource.forwards_answers
            ):
                return _not_acceptable(result, request)
            return result
        if inspect.isawaitable(result):
            result = Deferred.fromCoroutine(_await(result))
        if isinstance(result, Deferred):
            return result.addCallbacks(
                self._check_result,
                self._failed,
                callbackArgs=(request, resource),
                errbackArgs=(request,),
            )
        return self._internal_error(
            Failure(TypeError(f"render returned {type(result).__name__}, not a Response")),
            request,
        )

    def _check_result(self, result: object, request: Request, resource: Resource) -> Response:
        if isinstance(result, Response):
            if result.code is _CONTENT and not resource.forwards_answers:
                return _not_acceptable(result, request)
            return result
        raise TypeError(f"render returned {type(result).__name__}, not a Response")

    def _failed(self, failure: Failure, request: Request) -> Response:
        if failure.check(CoapError):
            error = failure.value
            assert isinstance(error, CoapError)
            return error.response()
        return self._internal_error(failure, request)

    def _internal_error(self, failure: Failure, request: Request) -> Response:
        self.log.failure(
            "Error rendering {method} /{path}",
            failure,
            method=_method_label(request.method),
            path="/".join(request.path),
        )
        return Response(Code.INTERNAL_SERVER_ERROR, b"internal server error")


def _not_acceptable(result: Response, request: Request) -> Response:
    """``result``, or 4.06 when it is in another Content-Format than Accept asks for
    (RFC 7252 section 5.10.4); a response without Content-Format is left alone."""
    accept = request.options.accept
    if accept is None:
        return result
    given = result.options.content_format
    if given is None or given == accept:
        return result
    wanted = content_format_name(accept)
    return Response(Code.NOT_ACCEPTABLE, f"Accept {accept} ({wanted}) cannot be served; this "
                    f"resource answers in {given} ({content_format_name(given)})".encode())


async def _await(awaitable: Awaitable[Response]) -> Response:
    return await awaitable
