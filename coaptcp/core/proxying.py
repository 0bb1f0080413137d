"""What a forward proxy does to a request before sending it on (RFC 7252 section 5.7).

Pure: :func:`forward_request` reads a request's Proxy-Uri, or Proxy-Scheme with its
Uri-Host, Uri-Port, Uri-Path and Uri-Query (section 5.10.2), into the URI to request
upstream, and chooses the options that travel with it:

- the options naming the target (``Proxy-*``, ``Uri-*``) do not travel: the URI says it all;
- block-wise options (Block1, Block2, Size1, Size2) do not either: each side of a proxy
  runs its own block-wise transfer (RFC 7959 section 2.10), with its own block sizes;
- Observe does not travel here (a proxied observation is a separate concern);
- every other safe-to-forward option travels unchanged (section 5.7.1), recognised or
  not; an unsafe option that is not recognised makes the request fail with 5.02 Bad
  Gateway (section 5.7.1);
- Hop-Limit (RFC 8768) travels decremented, starting at 16 when the request had none; a
  request whose Hop-Limit would reach 0 fails with 5.08 Hop Limit Reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.options import OPTION_SPECS, OptionNumber, Options, OptionValue, is_unsafe
from coaptcp.core.uri import SCHEMES, compose_uri

__all__ = [
    "DEFAULT_HOP_LIMIT",
    "ForwardedRequest",
    "ProxyRefusal",
    "forward_request",
    "is_proxy_request",
    "travelling_options",
]

#: The Hop-Limit a proxy puts on a request that carried none (RFC 8768 section 3).
DEFAULT_HOP_LIMIT = 16

_PROXY_URI = OptionNumber.PROXY_URI
_PROXY_SCHEME = OptionNumber.PROXY_SCHEME
_HOP_LIMIT = OptionNumber.HOP_LIMIT
#: Options that name the target (carried by the upstream URI) or are hop-by-hop.
_NOT_FORWARDED = frozenset(
    {
        OptionNumber.URI_HOST,
        OptionNumber.URI_PORT,
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        _PROXY_URI,
        _PROXY_SCHEME,
        _HOP_LIMIT,
        OptionNumber.OBSERVE,
        OptionNumber.BLOCK1,
        OptionNumber.BLOCK2,
        OptionNumber.SIZE1,
        OptionNumber.SIZE2,
    }
)


class ProxyRefusal(CoapTcpError):
    """A request the proxy answers itself, with :attr:`code` and a diagnostic payload."""

    def __init__(self, code: Code, diagnostic: str) -> None:
        super().__init__(f"{code}: {diagnostic}")
        self.code = code
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class ForwardedRequest:
    """The upstream side of a proxied request.

    :ivar uri: the URI to request, as the client asked for it (a ``coap``, ``coaps``,
        ``coap+tcp``, ``coaps+tcp``, ``coap+ws`` or ``coaps+ws`` URI).
    :ivar options: the options that travel with it (without ``Uri-*``, which the URI gives).
    """

    uri: str
    options: Options


def is_proxy_request(options: Options) -> bool:
    """Whether the request carries Proxy-Uri or Proxy-Scheme (RFC 7252 section 5.10.2)."""
    return _PROXY_URI in options or _PROXY_SCHEME in options


def forward_request(options: Options) -> ForwardedRequest:
    """The upstream URI and options for a request with Proxy-Uri or Proxy-Scheme.

    :raises ProxyRefusal: 4.00 without a target, 5.02 for an unrecognised unsafe option,
        5.08 when the Hop-Limit is used up.
    """
    proxy_uri = options.get_string(_PROXY_URI)
    if proxy_uri is not None:
        uri = proxy_uri  # takes precedence over any Uri-* option (section 5.10.2)
    else:
        scheme = options.get_string(_PROXY_SCHEME)
        if scheme is None:
            raise ProxyRefusal(Code.BAD_REQUEST, "neither Proxy-Uri nor Proxy-Scheme")
        uri = _uri_from_parts(scheme, options)
    return ForwardedRequest(uri, travelling_options(options))


def travelling_options(options: Options) -> Options:
    """The options a proxied request carries upstream (forward or reverse proxy): every
    option but those naming the target and the hop-by-hop ones, with Hop-Limit
    decremented (RFC 7252 section 5.7.1, RFC 8768 section 3).

    :raises ProxyRefusal: 5.02 for an unrecognised unsafe option, 5.08 when the
        Hop-Limit is used up.
    """
    hop_limit = options.get_uint(_HOP_LIMIT)
    remaining = (DEFAULT_HOP_LIMIT if hop_limit is None else hop_limit) - 1
    if remaining <= 0:
        raise ProxyRefusal(Code(0xA8), "the Hop-Limit is used up (a proxy loop?)")  # 5.08
    forwarded: list[tuple[int, OptionValue]] = []
    for number, value in options:
        if number in _NOT_FORWARDED:
            continue
        if is_unsafe(number) and number not in OPTION_SPECS:
            raise ProxyRefusal(Code.BAD_GATEWAY, f"unsafe option {number} is not recognised")
        forwarded.append((number, value))
    forwarded.append((_HOP_LIMIT, remaining))
    return Options(forwarded)


def _uri_from_parts(scheme: str, options: Options) -> str:
    """The URI of a Proxy-Scheme request (RFC 7252 section 6.5 on its ``Uri-*`` options)."""
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ProxyRefusal(Code.PROXYING_NOT_SUPPORTED, f"scheme {scheme!r} is not supported")
    if options.uri_host is None:
        raise ProxyRefusal(Code.BAD_REQUEST, "Proxy-Scheme without Uri-Host")
    try:
        return compose_uri(
            scheme, options, destination_host=None, destination_port=SCHEMES[scheme].default_port
        )
    except ValueError as error:
        raise ProxyRefusal(Code.BAD_REQUEST, str(error))
