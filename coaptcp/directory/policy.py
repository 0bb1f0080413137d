"""Who may register as whom, and the directory's bounds (RFC 9176 sections 5, 7.1, 7.5,
8.2 and 8.4).

:class:`DirectoryLimits` bounds every table of the directory.  :func:`identity_names` reads
who a TLS peer is (its certificate's subject CN and DNS/URI subjectAltNames, or its PSK
identity; RFC 8323 section 9), and :func:`identity_matches` is the default rule: over TLS
the endpoint name must be one of them (RFC 9176 section 8.2 describes the attack it
stops: a device registering under another device's name).  An app passes a function of
its own (an :data:`Authorizer`) to decide otherwise.  :func:`parse_registration_query`
checks the registration parameters (``ep``, ``d``, ``lt``, ``base`` and the rest,
section 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.directory.links import is_absolute_uri, split_reference
from coaptcp.server.request import CoapError, Request, Response
from coaptcp.server.tlsinfo import TLSInfo

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "MAX_NAME_BYTES",
    "Authorizer",
    "DirectoryFull",
    "DirectoryLimits",
    "PayloadTooLarge",
    "RegistrationQuery",
    "identity_matches",
    "identity_names",
    "parse_registration_query",
]

#: Lifetime of a registration that gives none, in seconds (RFC 9176 section 5: 25 hours).
DEFAULT_LIFETIME = 90_000
#: The largest ``lt`` (RFC 9176 section 5: 1-4294967295).
MAX_LIFETIME = 4_294_967_295
#: The longest endpoint name or sector, in UTF-8 bytes (RFC 9176 section 5).
MAX_NAME_BYTES = 63


@dataclass(frozen=True)
class DirectoryLimits:
    """Every bound of a :class:`~coaptcp.directory.ResourceDirectory`.

    :ivar max_registrations: registrations held at once; a new one beyond gets 5.03
        with Max-Age (RFC 9176 section 4: a registrant retries after it).
    :ivar max_per_peer: registrations made from one IP address (a NAT gateway's devices
        share one); more get 5.03.
    :ivar max_payload: bytes of link-format one registration may carry; more get 4.13.
    :ivar max_links: links one registration may carry; more get 4.13.
    :ivar max_total_links: links held by all registrations together; a registration
        that would pass it gets 5.03.
    :ivar max_attributes: endpoint attributes (``et`` and other extra parameters) one
        registration may carry; more get 4.00.
    :ivar retry_after: the Max-Age of those 5.03 answers, in seconds.
    :ivar default_lifetime: the lifetime of a registration that gives no ``lt``.
    """

    max_registrations: int = 10_000
    max_per_peer: int = 100
    max_payload: int = 8192
    max_links: int = 256
    max_total_links: int = 200_000
    max_attributes: int = 16
    retry_after: int = 30
    default_lifetime: int = DEFAULT_LIFETIME

    def __post_init__(self) -> None:
        for name in ("max_registrations", "max_per_peer", "max_payload", "max_links",
                     "max_total_links", "max_attributes", "retry_after", "default_lifetime"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DirectoryLimits.{name} must be a positive integer")
        if self.default_lifetime > MAX_LIFETIME:
            raise ValueError(f"DirectoryLimits.default_lifetime exceeds {MAX_LIFETIME}")


class DirectoryFull(CoapError):
    """A bound of the directory is reached: 5.03 Service Unavailable with Max-Age, after
    which the registrant should retry (RFC 9176 section 4)."""

    def __init__(self, diagnostic: str, retry_after: int) -> None:
        super().__init__(Code.SERVICE_UNAVAILABLE, diagnostic)
        self.retry_after = retry_after

    def response(self) -> Response:
        """5.03 with the diagnostic and Max-Age."""
        return Response(self.code, self.diagnostic.encode("utf-8"),
                        options=Options([(OptionNumber.MAX_AGE, self.retry_after)]))


class PayloadTooLarge(CoapError):
    """A registration's links exceed a bound: 4.13 Request Entity Too Large, with Size1
    giving the largest payload accepted (RFC 7959 section 4)."""

    def __init__(self, diagnostic: str, max_size: int) -> None:
        super().__init__(Code.REQUEST_ENTITY_TOO_LARGE, diagnostic)
        self.max_size = max_size

    def response(self) -> Response:
        """4.13 with the diagnostic and Size1."""
        return Response(self.code, self.diagnostic.encode("utf-8"),
                        options=Options([(OptionNumber.SIZE1, self.max_size)]))


#: Decides whether ``request`` may register (or operate on the registration of) the
#: endpoint name and sector given: ``authorize(request, endpoint, sector)``.
Authorizer = Callable[[Request, str, "str | None"], bool]


def identity_names(tls: TLSInfo | None) -> tuple[str, ...]:
    """The names a TLS peer proved: its certificate's subject Common Names and its
    DNS and URI subjectAltNames, or its PSK identity (RFC 9176 section 7.5 stores the
    same); none without TLS or without a peer credential."""
    if tls is None:
        return ()
    names: list[str] = []
    if tls.peer_certificate is not None:
        names.extend(_common_names(tls.peer_certificate))
        for entry in tls.peer_san:
            kind, _, value = entry.partition(":")
            if kind in ("DNS", "URI") and value not in names:
                names.append(value)
    if tls.psk_identity is not None:
        names.append(tls.psk_identity.decode("utf-8", errors="backslashreplace"))
    return tuple(names)


def _common_names(certificate: x509.Certificate) -> list[str]:
    names = []
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        names.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return names


def identity_matches(request: Request, endpoint: str, sector: str | None) -> bool:
    """The default :data:`Authorizer`: over TLS with a peer credential the endpoint name
    must be one of the peer's :func:`identity_names`; without TLS, or over TLS without a
    client credential, any name is allowed (the peer proved nothing to compare with)."""
    names = identity_names(request.tls)
    return not names or endpoint in names


@dataclass
class RegistrationQuery:
    """The parameters of a registration or an update (RFC 9176 sections 5 and 5.3.1)."""

    endpoint: str | None = None
    sector: str | None = None
    lifetime: int | None = None
    base: str | None = None
    #: Other parameters (``et`` and extensions), stored as endpoint attributes in order.
    attributes: list[tuple[str, str | None]] = field(default_factory=list)


#: Query parameters that only lookups use (RFC 9176 section 9.3: "L" only).
_LOOKUP_ONLY = frozenset({"page", "count"})


def parse_registration_query(
    query: Sequence[str], *, max_attributes: int = DirectoryLimits.max_attributes
) -> RegistrationQuery:
    """Check the registration parameters of ``query`` (RFC 9176 section 5).

    Raises :class:`CoapError` 4.00 with a diagnostic for a repeated ``ep``, ``d``,
    ``lt`` or ``base``, a name longer than 63 bytes or holding a control character, an
    ``lt`` out of 1-4294967295, a ``base`` that is not a URI without a fragment, or more
    than ``max_attributes`` other parameters.
    """
    parsed = RegistrationQuery()
    seen: set[str] = set()
    for argument in query:
        name, equals, value = argument.partition("=")
        if not name:
            raise CoapError(Code.BAD_REQUEST, f"query argument {argument!r} has no name")
        if name in ("ep", "d", "lt", "base"):
            if name in seen:
                raise CoapError(Code.BAD_REQUEST, f"{name} is given more than once")
            seen.add(name)
            if name == "ep":
                parsed.endpoint = _check_name("ep", value)
            elif name == "d":
                parsed.sector = _check_name("d", value)
            elif name == "lt":
                parsed.lifetime = _check_lifetime(value)
            else:
                parsed.base = _check_base(value)
        elif name in _LOOKUP_ONLY:
            raise CoapError(Code.BAD_REQUEST, f"{name} is a lookup parameter, not one of a "
                                              f"registration")
        else:
            if len(parsed.attributes) >= max_attributes:
                raise CoapError(Code.BAD_REQUEST,
                                f"more than {max_attributes} endpoint attributes")
            parsed.attributes.append((name, value if equals else None))
    return parsed


def _check_name(name: str, value: str) -> str:
    """An endpoint name or sector (RFC 9176 section 5: at most 63 UTF-8 bytes, none of
    the characters 0-31 and 127-159)."""
    if not value:
        raise CoapError(Code.BAD_REQUEST, f"{name} is empty")
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise CoapError(Code.BAD_REQUEST, f"{name} is longer than {MAX_NAME_BYTES} bytes")
    for char in value:
        code = ord(char)
        if code < 32 or 127 <= code <= 159:
            raise CoapError(Code.BAD_REQUEST, f"{name} holds the control character "
                                              f"U+{code:04X}")
    return value


def _check_lifetime(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise CoapError(Code.BAD_REQUEST, f"lt must be a number of seconds, not {value!r}")
    lifetime = int(value)
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise CoapError(Code.BAD_REQUEST, f"lt must be between 1 and {MAX_LIFETIME}")
    return lifetime


def _check_base(value: str) -> str:
    """A base URI: absolute, without a fragment (RFC 9176 section 5: "scheme://authority"
    as a rule; a query SHOULD NOT be there, and we refuse it with the fragment)."""
    if not is_absolute_uri(value):
        raise CoapError(Code.BAD_REQUEST, f"base must be an absolute URI, not {value!r}")
    _, authority, _, query, fragment = split_reference(value)
    if query is not None or fragment is not None:
        raise CoapError(Code.BAD_REQUEST, "base must not have a query or a fragment")
    if authority is not None and "%" in authority and "[" in authority:
        raise CoapError(Code.BAD_REQUEST, "base must not carry an IPv6 zone identifier")
    for char in value:
        if char <= " " or char == "\x7f" or char in '<>"':
            raise CoapError(Code.BAD_REQUEST, f"base holds {char!r}")
    return value
