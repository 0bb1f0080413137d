"""Requests and responses as resources see them (RFC 7252 sections 5.4, 5.5, 5.8-5.10).

A :class:`Request` is made for every request received; a render method returns a
:class:`Response` (or a Deferred or coroutine giving one: a :data:`RenderResult`), or
raises :class:`CoapError` to answer with an error code and a diagnostic payload.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Union

from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IAddress

    from coaptcp.server.tlsinfo import TLSInfo

__all__ = [
    "APPLICATION_JSON",
    "TEXT_PLAIN",
    "CoapError",
    "RenderResult",
    "Request",
    "Response",
    "uri_not_utf8",
]

#: Content-Format numbers used by the helpers below (RFC 7252 section 12.3).
TEXT_PLAIN = 0
APPLICATION_JSON = 50


#: Option lists holding only a Content-Format, for the formats used most.
_CONTENT_FORMAT_ONLY: dict[int, Options] = {
    number: EMPTY_OPTIONS.replace(OptionNumber.CONTENT_FORMAT, number)
    for number in (TEXT_PLAIN, 40, 42, APPLICATION_JSON, 60)
}


_TEXT_PLAIN_ONLY = _CONTENT_FORMAT_ONLY[TEXT_PLAIN]
_new_object = object.__new__


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
        uri = options._uri  # decoded once per Options instance (they never change)
        if uri is None:
            uri = options._uri = _decode_uri(options)
        host, self.path, self.query = uri
        self.host = host or default_host
        self.prepath: list[str] = []
        self.postpath: list[str] = [*self.path]

    path: tuple[str, ...]
    query: tuple[str, ...]

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


def uri_not_utf8(options: Options) -> str | None:
    """A diagnostic when a Uri-Host, Uri-Path or Uri-Query value of ``options`` is not
    UTF-8 (they are strings, RFC 7252 section 3.2: a non-conforming critical option,
    4.02), else ``None``; the values decoded are kept, as a :class:`Request` keeps them."""
    if options._uri is None:
        try:
            options._uri = _decode_uri(options)
        except UnicodeDecodeError as error:
            return f"a Uri-Host, Uri-Path or Uri-Query value is not UTF-8: {error}"
    return None


def _decode_uri(options: Options) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """Uri-Host (the first), Uri-Path and Uri-Query, in one pass over the options."""
    path: list[str] = []
    query: list[str] = []
    host = None
    for number, value in options.items:
        if number == _URI_PATH:
            path.append(value.decode())
        elif number == _URI_QUERY:
            query.append(value.decode())
        elif number == _URI_HOST and host is None:
            host = value.decode()
    return host, tuple(path), tuple(query) if query else ()


#: What a render method returns: a :class:`Response`, or a Deferred or an awaitable
#: (a coroutine) that gives one.
RenderResult = Union[Response, "Deferred[Response]", Awaitable[Response]]
