"""What a request by URI is made of: its method, and the options its URI stands for.

Method names are those of RFC 7252 section 12.1.1 and RFC 8132 (FETCH, PATCH, iPATCH).
A URI gives Uri-Host, Uri-Port, Uri-Path and Uri-Query (RFC 7252 section 6.4; the
``coap+tcp`` schemes of RFC 8323 section 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options, OptionValue
from coaptcp.core.uri import CoapUri, parse_uri

__all__ = ["METHODS", "parse_method", "resolve_target"]

#: Request method names (RFC 7252 section 12.1.1, RFC 8132), as the CLI spells them.
METHODS: Mapping[str, Code] = {
    "GET": Code.GET,
    "POST": Code.POST,
    "PUT": Code.PUT,
    "DELETE": Code.DELETE,
    "FETCH": Code.FETCH,
    "PATCH": Code.PATCH,
    "IPATCH": Code.IPATCH,
}

#: The options a URI stands for (RFC 7252 section 6.4).
_URI_OPTIONS = frozenset(
    {OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.URI_PATH, OptionNumber.URI_QUERY}
)


def parse_method(method: str | int) -> Code:
    """A request method from a name (any case) or a code (RFC 7252 section 5.8)."""
    if isinstance(method, str):
        code = METHODS.get(method.upper())
        if code is None:
            names = ", ".join(METHODS)
            raise ValueError(f"unknown method {method!r}; expected one of {names}")
        return code
    code = Code(method)
    if not code.is_request:
        raise ValueError(f"{code} is not a request method")
    return code


def resolve_target(
    uri: str | CoapUri, options: Options | Iterable[tuple[int, OptionValue]]
) -> tuple[CoapUri, Options]:
    """The parsed URI and the options a request to it carries: the URI's (RFC 7252
    section 6.4), any of the same numbers in ``options`` replacing them, then the rest of
    ``options``.  Raises :class:`~coaptcp.core.uri.UriError` for a bad URI and
    :class:`ValueError` for an option number out of range."""
    target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
    derived = target.request_options()
    given = options if isinstance(options, Options) else Options(options)
    if not given:
        return target, derived
    for number, _ in given:
        if not 0 < number <= 0xFFFF:  # RFC 7252 section 3.1: a 16-bit number
            raise ValueError(f"option number {number} is out of range (1-65535)")
    replaced = {number for number, _ in given if number in _URI_OPTIONS}
    kept = [(n, v) for n, v in derived if n not in replaced]
    return target, Options([*kept, *given])
