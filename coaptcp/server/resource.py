"""The resource tree apps subclass, as in ``twisted.web`` (RFC 7252 sections 5.8-5.10).

A :class:`Resource` answers ``render_GET``, ``render_POST``, ``render_PUT``,
``render_DELETE``, ``render_FETCH``, ``render_PATCH`` and ``render_iPATCH``; each returns a
:class:`Response`, a :class:`~twisted.internet.defer.Deferred` firing with one, or is an
``async def``.  Raise :class:`CoapError` to answer with an error code and a diagnostic
payload.  :class:`Site` walks the tree for each request and turns every outcome into a
response: 4.04, 4.05 (for methods the resource lacks), 4.02 (an unrecognized critical
option), 5.05 (proxy options) and 5.00 (an exception, which is logged).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.linkformat import LINK_FORMAT, AttributeValue, Link, filter_links, format_links
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.core.validation import PROXY_OPTIONS, CriticalOptionCheck

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

    from coaptcp.server.tlsinfo import TLSInfo

__all__ = [
    "UNDERSTOOD_OPTIONS",
    "CoapError",
    "RenderResult",
    "Request",
    "Resource",
    "Response",
    "Site",
    "WellKnownCore",
]

#: Content-Format numbers used by the helpers below (RFC 7252 section 12.3).
TEXT_PLAIN = 0
APPLICATION_JSON = 50

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
_CHECK_CRITICAL_OPTIONS = CriticalOptionCheck(UNDERSTOOD_OPTIONS).first_problem

_METHOD_NAMES: Mapping[Code, str] = {
    Code.GET: "GET",
    Code.POST: "POST",
    Code.PUT: "PUT",
    Code.DELETE: "DELETE",
    Code.FETCH: "FETCH",
    Code.PATCH: "PATCH",
    Code.IPATCH: "iPATCH",
}


#: Option lists holding only a Content-Format, for the formats used most.
_CONTENT_FORMAT_ONLY: dict[int, Options] = {
    number: EMPTY_OPTIONS.replace(OptionNumber.CONTENT_FORMAT, number)
    for number in (TEXT_PLAIN, 40, 42, APPLICATION_JSON, 60)
}


_TEXT_PLAIN_ONLY = _CONTENT_FORMAT_ONLY[TEXT_PLAIN]
_new_object = object.__new__

_RENDER_ATTRIBUTES: Mapping[Code, str] = {
    code: f"render_{name}" for code, name in _METHOD_NAMES.items()
}


class Response:
    """A CoAP response: a code, options and a payload (RFC 7252 section 5.9).

    :param content_format: sets the Content-Format option when given.
    """

    __slots__ = ("code", "options", "payload")

    def __init__(
        self,
        code: Code = Code.CONTENT,
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        options: Options = EMPTY_OPTIONS,
    ) -> None:
        self.code = code if type(code) is Code else Code(code)
        self.payload = payload
        if content_format is not None:
            if options is EMPTY_OPTIONS and content_format in _CONTENT_FORMAT_ONLY:
                options = _CONTENT_FORMAT_ONLY[content_format]  # the common case, prebuilt
            else:
                options = options.replace(OptionNumber.CONTENT_FORMAT, content_format)
        self.options = options

    @classmethod
    def text(cls, text: str, code: Code = Code.CONTENT) -> Response:
        """A ``text/plain;charset=utf-8`` response."""
        if cls is not Response or type(code) is not Code:
            return cls(code, text.encode("utf-8"), options=_TEXT_PLAIN_ONLY)
        response = _new_object(cls)  # what __init__ would do, without two calls
        response.code = code
        response.payload = text.encode()
        response.options = _TEXT_PLAIN_ONLY
        return response

    @classmethod
    def json(cls, value: Any, code: Code = Code.CONTENT) -> Response:
        """An ``application/json`` response."""
        body = json.dumps(value, separators=(",", ":")).encode("utf-8")
        return cls(code, body, content_format=APPLICATION_JSON)

    @property
    def content_format(self) -> int | None:
        """The Content-Format option, if any."""
        return self.options.content_format

    def __repr__(self) -> str:
        return f"Response({self.code}, {self.options!r}, payload={self.payload[:40]!r})"


class CoapError(CoapTcpError):
    """Raise from a render method to answer with ``code`` and a diagnostic payload.

    The diagnostic payload is UTF-8 text for humans (RFC 7252 section 5.5.2).
    """

    def __init__(self, code: Code, diagnostic: str = "") -> None:
        super().__init__(f"{Code(code)}: {diagnostic}" if diagnostic else str(Code(code)))
        self.code = Code(code)
        self.diagnostic = diagnostic

    def response(self) -> Response:
        """The error response this exception stands for."""
        return Response(self.code, self.diagnostic.encode("utf-8"))


_URI_HOST, _URI_PATH, _URI_QUERY = 3, 11, 15
_PROXY_URI = 35  # Proxy-Uri (35) and Proxy-Scheme (39) come after every other option
_GET = Code.GET  # a global: an Enum attribute costs ten times as much to look up


class Request:
    """A request as a resource sees it.

    :ivar method: the request code (:attr:`Code.GET`, ...).
    :ivar path: the Uri-Path segments; :ivar prepath: the ones already walked;
        :ivar postpath: the ones still to walk (as in ``twisted.web``).
    :ivar query: the Uri-Query arguments.
    :ivar host: Uri-Host, or the transport's default (the destination IP, the SNI name
        or the WebSocket Host header, RFC 8323 section 8).
    :ivar peer: the peer's address; :ivar secure: whether the connection uses TLS.
    :ivar tls: on TLS, who the peer is (:class:`~coaptcp.server.tlsinfo.TLSInfo`: its certificate's
        subject and SAN, or its PSK identity; the SNI name), for authorization
        (RFC 8323 section 9); ``None`` otherwise.

    Apps may set attributes of their own on a request (it has a ``__dict__``); the
    ones above are slots, as one request is made for every message received.
    """

    __slots__ = (
        "__dict__",
        "channel",
        "host",
        "message",
        "method",
        "options",
        "path",
        "payload",
        "peer",
        "postpath",
        "prepath",
        "query",
        "secure",
        "tls",
        "token",
    )

    def __init__(
        self,
        method: Code,
        token: bytes,
        options: Options,
        payload: bytes,
        *,
        peer: IAddress | None = None,
        default_host: str | None = None,
        secure: bool = False,
        tls: TLSInfo | None = None,
        channel: object = None,
        message: Message | None = None,
    ) -> None:
        self.message = message if message is not None else Message(method, token, options, payload)
        self.method = method
        self.token = token
        self.options = options
        self.payload = payload
        self.peer = peer
        self.secure = secure
        self.tls = tls
        self.channel = channel
        self._take_uri(options, default_host)

    @classmethod
    def received(
        cls,
        message: Message,
        peer: IAddress | None,
        default_host: str | None,
        secure: bool,
        tls: TLSInfo | None,
        channel: object,
    ) -> Request:
        """The request for ``message`` as received from ``peer`` on ``channel``.

        The same as the constructor with those arguments, without keyword arguments:
        the channel makes one request for every message it receives, and a call with
        keywords costs twice as much.
        """
        self = _new_object(cls)
        self.message = message
        self.method = message.code
        self.token = message.token
        self.options = options = message.options
        self.payload = message.payload
        self.peer = peer
        self.secure = secure
        self.tls = tls
        self.channel = channel
        self._take_uri(options, default_host)
        return self

    def _take_uri(self, options: Options, default_host: str | None) -> None:
        path: list[str] = []
        query: list[str] = []
        host = None
        for number, value in options.items:  # one pass over the options
            if number == _URI_PATH:
                path.append(value.decode())
            elif number == _URI_QUERY:
                query.append(value.decode())
            elif number == _URI_HOST and host is None:
                host = value.decode()
        self.path: tuple[str, ...] = tuple(path)
        self.query: tuple[str, ...] = tuple(query) if query else ()
        self.host = host or default_host
        self.prepath: list[str] = []
        self.postpath: list[str] = path

    @property
    def content_format(self) -> int | None:
        """The request's Content-Format option."""
        return self.options.content_format

    @property
    def accept(self) -> int | None:
        """The request's Accept option."""
        return self.options.accept

    def text(self) -> str:
        """The payload decoded as UTF-8 (raises :class:`CoapError` 4.00 if it is not)."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CoapError(Code.BAD_REQUEST, f"payload is not UTF-8: {error}") from None

    def json(self) -> Any:
        """The payload parsed as JSON (raises :class:`CoapError` 4.00 if it is not)."""
        try:
            return json.loads(self.payload)
        except ValueError as error:
            raise CoapError(Code.BAD_REQUEST, f"payload is not JSON: {error}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} /{'/'.join(self.path)} token={self.token.hex()}>"


RenderResult = Union[Response, "Deferred[Response]", Awaitable[Response]]


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


class Site:
    """Routes requests into a resource tree and turns every outcome into a response.

    :param root: the tree's root (answers for the empty path).
    :param well_known_core: serve ``/.well-known/core`` unless the tree has its own.
    """

    log = Logger()

    def __init__(self, root: Resource, *, well_known_core: bool = True) -> None:
        self.root = root
        self._well_known: WellKnownCore | None = WellKnownCore(root) if well_known_core else None

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
            problem = _CHECK_CRITICAL_OPTIONS(request.options)
            if problem is not None:
                return Response(Code.BAD_OPTION, problem[1].encode("utf-8"))
            items = request.options.items
            if items and items[-1][0] >= _PROXY_URI:
                for number in PROXY_OPTIONS:
                    if number in request.options:
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
        from coaptcp.server.observe import observe_request  # observe builds on this module

        return observe_request(self, resource, request, observe)

    def render_resource(
        self, resource: Resource, request: Request
    ) -> Response | Deferred[Response]:
        """Render ``request`` on ``resource``, turning every outcome into a response."""
        try:
            result = resource.render(request)
        except CoapError as error:
            return error.response()
        except Exception:
            return self._internal_error(Failure(), request)
        if isinstance(result, Response):
            return result
        if inspect.isawaitable(result):
            result = Deferred.fromCoroutine(_await(result))
        if isinstance(result, Deferred):
            return result.addCallbacks(self._check_result, self._failed, errbackArgs=(request,))
        return self._internal_error(
            Failure(TypeError(f"render returned {type(result).__name__}, not a Response")),
            request,
        )

    def _check_result(self, result: object) -> Response:
        if isinstance(result, Response):
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


async def _await(awaitable: Awaitable[Response]) -> Response:
    return await awaitable
