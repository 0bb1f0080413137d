"""CoAP URIs for the reliable transports (RFC 8323 section 8; RFC 7252 sections 6.4, 6.5).

:func:`parse_uri` checks a ``coap+tcp``, ``coaps+tcp``, ``coap+ws`` or ``coaps+ws`` URI and
splits it into the parts the decomposition algorithm of RFC 7252 section 6.4 (as changed by
RFC 8323 section 8.5) works on; :meth:`CoapUri.request_options` then finishes the algorithm
for a given destination and returns the Uri-Host, Uri-Port, Uri-Path and Uri-Query options.
:func:`compose_uri` is the reverse (RFC 7252 section 6.5, RFC 8323 section 8.6)::

    >>> uri = parse_uri("coap+ws://example.org/sensors/temperature?u=Cel")
    >>> uri.port, uri.path, uri.query
    (80, ('sensors', 'temperature'), ('u=Cel',))
    >>> websocket_url(uri.scheme, uri.host, uri.port)
    'ws://example.org/.well-known/coap'

Everything here is pure Python: no Twisted, no I/O, no name resolution.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.urisyntax import (
    ARGUMENT_SAFE,
    PATH_CHARS,
    QUERY_CHARS,
    REG_NAME_CHARS,
    SEGMENT_SAFE,
    UNRESERVED,
    UriError,
    check_chars,
    iri_to_uri,
    percent_decode,
    percent_encode,
    remove_dot_segments,
)

__all__ = [
    "DEFAULT_PORTS",
    "SCHEMES",
    "WEBSOCKET_PATH",
    "CoapUri",
    "Scheme",
    "UriError",
    "compose_uri",
    "parse_uri",
    "remove_dot_segments",
    "websocket_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The well-known path of the WebSocket endpoint (RFC 8323 sections 4.1 and 8.3).
WEBSOCKET_PATH = "/.well-known/coap"


@dataclass(frozen=True)
class Scheme:
    """One URI scheme (RFC 7252 section 6, RFC 8323 section 8): its default port and
    transport."""

    name: str
    default_port: int
    secure: bool
    websocket: bool
    datagram: bool = False


#: The schemes: ``coap`` and ``coaps`` over UDP and DTLS (RFC 7252 sections 6.1, 6.2),
#: and the four of RFC 8323 (sections 8.1-8.4).  RFC 8323 moved the default port of
#: ``coaps+tcp`` from 443 (draft -07) to 5684 (draft -09 onwards).
SCHEMES: Mapping[str, Scheme] = {
    "coap": Scheme("coap", 5683, secure=False, websocket=False, datagram=True),
    "coaps": Scheme("coaps", 5684, secure=True, websocket=False, datagram=True),
    "coap+tcp": Scheme("coap+tcp", 5683, secure=False, websocket=False),
    "coaps+tcp": Scheme("coaps+tcp", 5684, secure=True, websocket=False),
    "coap+ws": Scheme("coap+ws", 80, secure=False, websocket=True),
    "coaps+ws": Scheme("coaps+ws", 443, secure=True, websocket=True),
}

#: Default port per scheme name.
DEFAULT_PORTS: Mapping[str, int] = {name: s.default_port for name, s in SCHEMES.items()}

_KNOWN = ", ".join(f"{name}://" for name in SCHEMES)

#: RFC 3986 appendix B, the generic splitting of a URI reference.
_SPLIT = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")

#: Length limits of the options a URI turns into (RFC 7252 section 5.10).
_MAX_HOST = 255
_MAX_SEGMENT = 255
_MAX_ARGUMENT = 255


def _parse_ip(text: str) -> IPAddress | None:
    """An IP address from text, with or without IPv6 brackets; ``None`` for a name."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_text(address: IPAddress) -> str:
    """The address as it is written in a URI host: RFC 5952 form in brackets for IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        text = str(address)
        if "%" in text:  # a zone identifier is written %25zone (RFC 6874)
            text = text.replace("%", "%25", 1)
        return f"[{text}]"
    return str(address)


@dataclass(frozen=True)
class CoapUri:
    """A parsed ``coap+tcp``, ``coaps+tcp``, ``coap+ws`` or ``coaps+ws`` URI.

    Made by :func:`parse_uri`.  The fields hold what RFC 7252 section 6.4 steps 1 to 9
    derive without knowing the destination:

    :ivar scheme: the scheme, lowercase.
    :ivar host: where to connect: an IP address as text (IPv6 without brackets, RFC 5952
        form) or a registered name, lowercase and percent-decoded.
    :ivar port: the port given, or the scheme's default (step 6).
    :ivar path: the Uri-Path values, percent-decoded (step 8); empty for ``""`` and ``"/"``.
    :ivar query: the Uri-Query values, percent-decoded (step 9).
    :ivar uri_host: the Uri-Host value the host component stands for: lowercase and
        percent-decoded, IPv6 literals in brackets (step 5).
    :ivar ip: the host as an address when it is an IP literal, else ``None``.
    """

    scheme: str
    host: str
    port: int
    path: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    uri_host: str = ""
    ip: IPAddress | None = None

    @classmethod
    def parse(cls, text: str) -> CoapUri:
        """Same as :func:`parse_uri`."""
        return parse_uri(text)

    @property
    def secure(self) -> bool:
        """Whether the scheme uses TLS (``coaps+tcp``, ``coaps+ws``)."""
        return SCHEMES[self.scheme].secure

    @property
    def websocket(self) -> bool:
        """Whether the scheme is one of the WebSocket ones (RFC 8323 section 4)."""
        return SCHEMES[self.scheme].websocket

    @property
    def datagram(self) -> bool:
        """Whether the scheme runs over UDP (``coap``) or DTLS (``coaps``), RFC 7252 6."""
        return SCHEMES[self.scheme].datagram

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``: the CoAP endpoint, one connection each (section 8)."""
        return (self.scheme, self.host, self.port)

    @property
    def origin_uri(self) -> str:
        """The endpoint as a URI with an empty path, e.g. ``coap+tcp://[::1]:5683``.

        The port is always written, so messages name exactly where we connect.
        """
        host = _ip_text(self.ip) if self.ip is not None else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def transport_default_host(self) -> str | None:
        """The default value of Uri-Host on this scheme's transport (RFC 8323 section 8.4).

        For TCP and TLS it is the destination IP address: the host itself when it is an
        IP literal, and no name otherwise (a registered name is resolved to an address,
        which the name never equals).  Over TLS a name sent as SNI may also become the
        default, but only "if SNI is negotiated", which a client cannot confirm; so a name
        still gets an explicit Uri-Host, which is never wrong.  For WebSockets the default
        is the host of the handshake's Host header, which is always this URI's host, so
        no Uri-Host is needed (as in the draft's examples, RFC 8323 appendix A.1).
        """
        if self.websocket:
            return self.uri_host
        return self.uri_host if self.ip is not None else None

    def request_options(
        self,
        destination_host: str | None = None,
        destination_port: int | None = None,
    ) -> Options:
        """Finish the decomposition (RFC 7252 section 6.4 steps 5 and 7, RFC 8323 8.5).

        :param destination_host: the request's default Uri-Host: the destination IP
            address, or the name the transport announces (SNI, WebSocket Host header).
            By default, :meth:`transport_default_host`.
        :param destination_port: the destination TCP port; by default :attr:`port`,
            so a direct request carries no Uri-Port.
        :returns: Uri-Host (unless the host is the default), Uri-Port (unless the port is
            the destination port), then Uri-Path and Uri-Query.
        """
        if destination_host is None:
            destination_host = self.transport_default_host()
        if destination_port is None:
            destination_port = self.port
        items: list[tuple[int, str | int]] = []
        if not self._host_is(destination_host):
            items.append((OptionNumber.URI_HOST, self.uri_host))
        if self.port != destination_port:
            items.append((OptionNumber.URI_PORT, self.port))
        items.extend((OptionNumber.URI_PATH, segment) for segment in self.path)
        items.extend((OptionNumber.URI_QUERY, argument) for argument in self.query)
        return Options(items)

    def _host_is(self, destination: str | None) -> bool:
        if destination is None:
            return False
        if self.ip is not None:
            return _parse_ip(destination) == self.ip
        return destination.lower() == self.uri_host

    def __str__(self) -> str:
        """The URI in its composed form (RFC 7252 section 6.5): escapes normalized,
        dot segments removed, the default port left out."""
        host = _ip_text(self.ip) if self.ip is not None else _compose_host(self.uri_host)
        return _compose(self.scheme, host, self.port, self.path, self.query)


def parse_uri(text: str) -> CoapUri:
    """Check and split a URI (RFC 7252 section 6.4 as changed by RFC 8323 section 8.5).

    Non-ASCII characters are accepted as in an IRI and read as UTF-8 (RFC 3987).  Raises
    :class:`UriError` with a message naming the problem: not absolute, an unknown scheme,
    no ``//host``, userinfo, a fragment, a bad port, a malformed escape, a character not
    allowed where it is, an escape that is not UTF-8, or a value too long for its option.
    """
    if not isinstance(text, str):
        raise TypeError(f"a URI is a str, not {type(text).__name__}")
    original = text
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, as os.fsdecode leaves them in argv
            raise UriError(original, "the URI is not UTF-8 text") from None
    uri = iri_to_uri(text)
    # Step 1: an absolute URI.
    match = _SPLIT.match(uri)
    assert match is not None  # the expression matches every string
    scheme_text, authority, path, query, fragment = match.groups()
    if scheme_text is None or not _SCHEME.match(scheme_text):
        raise UriError(original, f"not an absolute URI; write scheme://host/path ({_KNOWN})")
    # Step 3 (RFC 7252 section 6.4, RFC 8323 section 8.5): one of the schemes we speak.
    scheme = scheme_text.lower()
    if scheme not in SCHEMES:
        raise UriError(original, f"unknown scheme {scheme_text!r}; coaptcp speaks {_KNOWN}")
    # Step 4: no fragment.
    if fragment is not None:
        raise UriError(original, "a fragment ('#...') is not allowed in a CoAP URI")
    if authority is None:
        raise UriError(original, f"{scheme} URIs need '//' and a host: {scheme}://host/path")
    if "@" in authority:
        raise UriError(original, "userinfo ('user@') is not allowed in a CoAP URI")
    host_text, port_text = _split_authority(original, authority)
    check_chars(original, path, frozenset(PATH_CHARS), "path")
    if query is not None:
        check_chars(original, query, frozenset(QUERY_CHARS), "query")
    # Step 2: reference resolution; for an absolute URI it removes dot segments.
    path = remove_dot_segments(path)
    # Step 5 (the part that needs no destination): the host, lowercase, then decoded.
    ip: IPAddress | None
    if host_text.startswith("["):
        ip = _parse_ip_literal(original, host_text)
        host = str(ip)
    else:
        if not host_text:
            raise UriError(original, "the host is empty")
        check_chars(original, host_text, frozenset(REG_NAME_CHARS), "host")
        ip = ipaddress.IPv4Address(host_text) if _IPV4.match(host_text) else None
    uri_host = percent_decode(original, host_text.lower(), "host")
    if ip is None:
        if not uri_host:
            raise UriError(original, "the host is empty")
        host = uri_host
    else:
        host = str(ip)
    if len(uri_host.encode("utf-8")) > _MAX_HOST:
        raise UriError(original, f"the host is longer than {_MAX_HOST} bytes")
    # Step 6: the port.
    port = SCHEMES[scheme].default_port
    if port_text:
        if not port_text.isdigit() or not port_text.isascii():
            raise UriError(original, f"the port {port_text!r} is not a number")
        port = int(port_text)
        if not 0 < port <= 65535:
            raise UriError(original, f"the port {port} is out of range (1-65535)")
    # Step 8: the path; "" and "/" give no Uri-Path.
    segments: tuple[str, ...] = ()
    if path not in ("", "/"):
        segments = tuple(percent_decode(original, s, "path segment") for s in path[1:].split("/"))
        for segment in segments:
            if len(segment.encode("utf-8")) > _MAX_SEGMENT:
                raise UriError(original, f"a path segment is longer than {_MAX_SEGMENT} bytes")
    # Step 9: the query, split at '&'.
    arguments: tuple[str, ...] = ()
    if query is not None:
        arguments = tuple(percent_decode(original, a, "query argument") for a in query.split("&"))
        for argument in arguments:
            if len(argument.encode("utf-8")) > _MAX_ARGUMENT:
                raise UriError(original, f"a query argument is longer than {_MAX_ARGUMENT} bytes")
    return CoapUri(scheme, host, port, segments, arguments, uri_host, ip)


def _split_authority(uri: str, authority: str) -> tuple[str, str]:
    """``host`` and ``port`` text of an authority (RFC 3986 section 3.2)."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UriError(uri, "an IPv6 literal host lacks its closing ']'")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UriError(uri, f"unexpected {rest!r} after the IPv6 literal host")
        return host, rest[1:]
    host, _, port = authority.partition(":")
    if "[" in host or "]" in host:
        raise UriError(uri, "'[' and ']' are only allowed around an IPv6 literal host")
    return host, port


def _parse_ip_literal(uri: str, text: str) -> ipaddress.IPv6Address:
    """An IP-literal host: ``[IPv6]`` or ``[IPv6%25zone]`` (RFC 3986 3.2.2, RFC 6874)."""
    inner = text[1:-1]
    if inner[:1].lower() == "v":
        raise UriError(uri, f"IPvFuture literal hosts are not supported: {text}")
    address_text, sep, zone = inner.partition("%25")
    if "%" in address_text:
        raise UriError(uri, f"the IPv6 zone identifier in {text} is written %25ZONE (RFC 6874)")
    if sep:
        if not zone:
            raise UriError(uri, f"the IPv6 zone identifier in {text} is empty")
        check_chars(uri, zone, frozenset(UNRESERVED), "IPv6 zone identifier")
        zone = percent_decode(uri, zone, "IPv6 zone identifier")
    try:
        address = ipaddress.IPv6Address(address_text)
    except ValueError:
        raise UriError(uri, f"{text} is not an IPv6 address") from None
    if sep:
        try:
            address = ipaddress.IPv6Address(f"{address}%{zone}")
        except ValueError:
            message = f"the IPv6 zone identifier {zone!r} in {text} is not usable"
            raise UriError(uri, message) from None
    return address


def _compose_host(host: str) -> str:
    """A Uri-Host value as a URI host (RFC 7252 section 6.5 step 2).

    Non-ASCII characters are percent-encoded; the result must be a reg-name, an
    IPv4address or an IP-literal, otherwise :class:`ValueError`.
    """
    encoded = iri_to_uri(host)
    if encoded.startswith("[") and encoded.endswith("]"):
        address_text, _, zone = encoded[1:-1].partition("%")
        try:
            address = ipaddress.IPv6Address(address_text)
        except ValueError:
            raise ValueError(f"Uri-Host {host!r} is not a valid IP-literal") from None
        return f"[{address}{'%25' + zone if zone else ''}]"
    if not encoded:
        raise ValueError("an empty Uri-Host is not a valid host")
    try:
        check_chars(host, encoded, frozenset(REG_NAME_CHARS), "host")
    except UriError as error:
        raise ValueError(f"Uri-Host {host!r} is not a valid reg-name: {error.problem}") from None
    return encoded


def _destination_host_text(destination_host: str) -> str:
    address = _parse_ip(destination_host)
    if address is not None:
        return _ip_text(address)
    return _compose_host(destination_host.lower())


def compose_uri(
    scheme: str,
    options: Options,
    *,
    destination_host: str | None,
    destination_port: int,
) -> str:
    """The URI a request stands for (RFC 7252 section 6.5 as changed by RFC 8323 8.6).

    :param scheme: one of the four schemes (``coaps+tcp`` when the request came over TLS,
        and so on: step 1).
    :param options: the request's options; Uri-Host, Uri-Port, Uri-Path and Uri-Query
        are used.
    :param destination_host: the default Uri-Host: the destination IP address (or the
        SNI name / WebSocket Host); needed when the options carry no Uri-Host.
    :param destination_port: the destination TCP port, used when there is no Uri-Port.
    :raises ValueError: for an unknown scheme or a Uri-Host that is not a valid host.
    """
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {_KNOWN}")
    # Steps 2-3: the host.
    uri_host = options.uri_host
    if uri_host is not None:
        host = _compose_host(uri_host)
    elif destination_host is not None:
        host = _destination_host_text(destination_host)
    else:
        raise ValueError("no Uri-Host option and no destination host to compose a URI from")
    # Steps 4-5: the port, written unless it is the scheme's default.
    port = options.uri_port
    if port is None:
        port = destination_port
    return _compose(scheme, host, port, options.uri_path, options.uri_query)


def _compose(
    scheme: str, host: str, port: int, path: Iterable[str], query: Iterable[str]
) -> str:
    """Steps 5 to 10 of RFC 7252 section 6.5: port, resource name, query."""
    url = f"{scheme}://{host}"
    if port != SCHEMES[scheme].default_port:
        url += f":{port}"
    resource = "".join("/" + percent_encode(s, SEGMENT_SAFE) for s in path)
    if not resource:
        resource = "/"
    for i, argument in enumerate(query):
        resource += ("?" if i == 0 else "&") + percent_encode(argument, ARGUMENT_SAFE)
    return url + resource


def websocket_url(scheme: str, host: str, port: int, path: str = WEBSOCKET_PATH) -> str:
    """The ``ws``/``wss`` URL of the CoAP endpoint for a WebSocket scheme (RFC 8323 8.3, 8.4).

    ``host`` is a name or an IP address (IPv6 without brackets); the port is left out
    when it is the default of ``ws`` (80) or ``wss`` (443), which are also the defaults
    of ``coap+ws`` and ``coaps+ws``.  ``path`` is the HTTP request target of the opening
    handshake: ``/.well-known/coap`` (section 8.3), unless a server is mounted elsewhere.
    """
    info = SCHEMES.get(scheme.lower())
    if info is None or not info.websocket:
        raise ValueError(f"{scheme!r} is not a CoAP-over-WebSockets scheme")
    if not path.startswith("/"):
        raise ValueError(f"the WebSocket path must start with '/', not {path!r}")
    address = _parse_ip(host)
    host_text = _ip_text(address) if address is not None else host
    ws = "wss" if info.secure else "ws"
    authority = host_text if port == info.default_port else f"{host_text}:{port}"
    return f"{ws}://{authority}{path}"
