"""Registering with a resource directory: what is sent and what the answers mean (RFC 9176).

Pure helpers for :class:`~coaptcp.callhome.CallHome`:

- :class:`Directory` reads the call-home URI, ``coap+tcp://backend/rd?ep=node1``: its path
  names the directory's registration resource, its query the registration parameters
  (``ep``, and any of ``d``, ``lt``, ``base`` or endpoint attributes, RFC 9176 section
  5); it builds the URIs of the registration (``POST /rd?ep=..&lt=..``, section 5.3), of
  its updates and of its removal (``POST`` and ``DELETE`` to the location the directory
  gave, sections 5.3.1 and 5.3.2);
- :func:`registration_location` reads the answer to a registration: 2.01 Created with
  Location-Path, or :class:`RegistrationRefused`;
- :class:`Registration` is what a device holds once registered;
- :func:`links_of` writes a site's links in link-format (RFC 6690), the payload of the
  registration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.linkformat import LINK_FORMAT, format_links
from coaptcp.core.uri import CoapUri, parse_uri
from coaptcp.server.resource import Site, WellKnownCore

if TYPE_CHECKING:
    from coaptcp.server.request import Response

__all__ = [
    "DEFAULT_LIFETIME",
    "LINK_FORMAT",
    "MAX_LIFETIME",
    "MAX_NAME_BYTES",
    "REFRESH_AT",
    "CallHomeError",
    "Directory",
    "NotRegistered",
    "Registration",
    "RegistrationRefused",
    "links_of",
    "refresh_delay",
    "refusal",
    "registration_location",
]

#: The lifetime of a registration that gives none, in seconds (RFC 9176 section 5: 25 h).
DEFAULT_LIFETIME = 90_000
#: The largest ``lt`` (RFC 9176 section 5: 1 to 4294967295 seconds).
MAX_LIFETIME = 4_294_967_295
#: The longest endpoint name, in UTF-8 bytes (RFC 9176 section 5).
MAX_NAME_BYTES = 63
#: The part of the lifetime after which a registration is updated: the rest (a tenth) is
#: left for the update to arrive and, should it fail, for retries (RFC 9176 section
#: 5.3.1 asks for the update before the lifetime ends).
REFRESH_AT = 0.9


class CallHomeError(CoapTcpError):
    """Base class of the errors of :mod:`coaptcp.callhome`."""


class NotRegistered(CallHomeError):
    """The device has no registered connection to its back end now (it is connecting,
    backing off, or stopped)."""


class RegistrationRefused(CallHomeError):
    """The directory answered a registration (or an update) with something other than
    success (RFC 9176 section 5.3: 4.00, 4.03, 5.03, ...).

    :ivar code: the response code.
    :ivar diagnostic: the diagnostic payload, as text (may be empty).
    :ivar retry_after: for 5.03 Service Unavailable, the Max-Age the directory asks us to
        wait (RFC 7252 section 5.9.3.4), else ``None``.
    """

    def __init__(self, code: Code, diagnostic: str, retry_after: int | None = None) -> None:
        text = f"the directory answered {code.dotted}"
        super().__init__(f"{text}: {diagnostic}" if diagnostic else text)
        self.code = code
        self.diagnostic = diagnostic
        self.retry_after = retry_after


def _check_lifetime(value: object, what: str) -> int:
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"{what} must be a whole number of seconds, not {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number of seconds, not {value!r}")
    if not 1 <= value <= MAX_LIFETIME:
        raise ValueError(f"{what} must be between 1 and {MAX_LIFETIME} seconds, not {value}")
    return value


@dataclass(frozen=True)
class Directory:
    """Where and as whom a device registers (RFC 9176 section 5.3), from its URI.

    Made by :meth:`from_uri`.

    :ivar uri: the registration resource with the registration's query, ``lt`` included.
    :ivar endpoint: the endpoint name (``ep``); ``None`` over TLS without one, when the
        directory takes the name from the device's certificate or PSK identity.
    :ivar lifetime: the registration's lifetime (``lt``), seconds.
    """

    uri: CoapUri
    endpoint: str | None
    lifetime: int

    @classmethod
    def from_uri(cls, uri: str | CoapUri, lifetime: int | None = None) -> Directory:
        """Read a call-home URI such as ``coap+tcp://backend/rd?ep=node1``.

        ``lifetime`` gives ``lt`` unless the URI has one (both, differing, is an error);
        without either it is :data:`DEFAULT_LIFETIME`.  Raises ``ValueError``
        (:class:`~coaptcp.core.uri.UriError` for a bad URI) for a datagram scheme (a
        device calls home over a connection: ``coap+tcp``, ``coaps+tcp``, ``coap+ws``,
        ``coaps+ws``), no path, no ``ep`` outside TLS, a repeated ``ep`` or ``lt``, an
        empty or too long name, or a lifetime out of 1 to 4294967295 seconds.
        """
        target = uri if isinstance(uri, CoapUri) else parse_uri(uri)
        if target.datagram:
            raise ValueError(
                f"{target.scheme}:// has no connection to call home over; use coap+tcp, "
                "coaps+tcp, coap+ws or coaps+ws"
            )
        if not target.path:
            raise ValueError(
                f"{target}: give the path of the directory's registration resource, "
                f"as in {target.origin_uri}/rd?ep=NAME"
            )
        endpoint: str | None = None
        given_lifetime: int | None = None
        rest: list[str] = []
        for argument in target.query:
            name, _, value = argument.partition("=")
            if name == "ep":
                if endpoint is not None:
                    raise ValueError(f"{target}: ep is given more than once")
                if not value:
                    raise ValueError(f"{target}: ep is empty")
                if len(value.encode("utf-8")) > MAX_NAME_BYTES:
                    raise ValueError(f"{target}: ep is longer than {MAX_NAME_BYTES} bytes")
                endpoint = value
                rest.append(argument)
            elif name == "lt":
                if given_lifetime is not None:
                    raise ValueError(f"{target}: lt is given more than once")
                given_lifetime = _check_lifetime(value, "lt")
            else:
                rest.append(argument)
        if endpoint is None and not target.secure:
            raise ValueError(
                f"{target}: name the endpoint with ?ep=NAME (only over TLS may the "
                "directory take the name from the certificate or PSK identity)"
            )
        if lifetime is not None:
            lifetime = _check_lifetime(lifetime, "the lifetime")
            if given_lifetime is not None and given_lifetime != lifetime:
                raise ValueError(
                    f"{target}: lt={given_lifetime} differs from the lifetime {lifetime}"
                )
        chosen = lifetime if lifetime is not None else given_lifetime
        if chosen is None:
            chosen = DEFAULT_LIFETIME
        registration = dataclasses.replace(target, query=(*rest, f"lt={chosen}"))
        return cls(registration, endpoint, chosen)

    @property
    def origin(self) -> str:
        """The back end's endpoint, ``coap+tcp://host:port`` (one connection)."""
        return self.uri.origin_uri

    def location_uri(self, location: Iterable[str]) -> CoapUri:
        """The URI of the registration resource at the Location-Path ``location``, for its
        updates and removal (RFC 9176 sections 5.3.1, 5.3.2)."""
        return dataclasses.replace(self.uri, path=tuple(location), query=())

    def resolve(self, reference: str) -> CoapUri:
        """A path (``/sensors/temp?u=C``) on the back end, or a URI of the same endpoint,
        as a URI; ``ValueError`` for another endpoint (it is not on our connection)."""
        if "://" in reference:
            target = parse_uri(reference)
            if target.origin != self.uri.origin:
                raise ValueError(
                    f"{reference} is not on the back end we call home to ({self.origin})"
                )
            return target
        if not reference.startswith("/"):
            raise ValueError(f"a path on the back end starts with '/', not {reference!r}")
        return parse_uri(self.origin + reference)


@dataclass
class Registration:
    """A registration the device holds (RFC 9176 section 5.3).

    :ivar endpoint: the endpoint name (``None`` when the directory chose it).
    :ivar location: the registration resource's path, as the directory gave it in
        Location-Path (``("rd", "1")``).
    :ivar lifetime: its lifetime in seconds.
    :ivar registered_at: when the directory accepted it (reactor seconds).
    :ivar refreshed_at: when it was last registered or updated (reactor seconds).
    :ivar connection: the connection it was made over, which also carries the back end's
        requests to the device (RFC 8323 section 3.3); a
        :class:`~coaptcp.client.connectors.ClientConnection`.
    :ivar updates: the updates (refreshes) the directory accepted.
    """

    endpoint: str | None
    location: tuple[str, ...]
    lifetime: int
    registered_at: float
    refreshed_at: float
    connection: Any = field(repr=False, default=None)
    updates: int = 0

    @property
    def path(self) -> str:
        """The location as a path, ``/rd/1``."""
        return "/" + "/".join(self.location)

    @property
    def expires_at(self) -> float:
        """When the directory forgets it unless updated (reactor seconds)."""
        return self.refreshed_at + self.lifetime


def refresh_delay(lifetime: int) -> float:
    """Seconds after a registration or update to send the next update: :data:`REFRESH_AT`
    of the lifetime (RFC 9176 section 5.3.1)."""
    return lifetime * REFRESH_AT


def _diagnostic(response: Response) -> str:
    text = response.payload[:200].decode("utf-8", errors="replace")
    return "".join(char if char.isprintable() else "?" for char in text)


def registration_location(response: Response) -> tuple[str, ...]:
    """The Location-Path of a successful registration (2.01 Created, RFC 9176 section
    5.3); raises :class:`RegistrationRefused` for any other answer, or a 2.01 without
    a location (which cannot be updated or removed)."""
    code = response.code
    if code == Code.CREATED:
        location = response.options.location_path
        if location:
            return location
        raise RegistrationRefused(code, "no Location-Path in the answer")
    raise refusal(response)


def refusal(response: Response) -> RegistrationRefused:
    """The :class:`RegistrationRefused` an unwanted answer stands for, with the Max-Age
    of a 5.03 as the time to wait."""
    retry_after = None
    if response.code == Code.SERVICE_UNAVAILABLE:
        max_age = response.options.max_age
        retry_after = 60 if max_age is None else max_age  # Max-Age's default (RFC 7252 5.10.5)
    return RegistrationRefused(response.code, _diagnostic(response), retry_after)


def links_of(site: Site | None) -> str:
    """The links of ``site``'s resources in link-format (RFC 6690), as its
    ``/.well-known/core`` lists them: the payload of a registration (RFC 9176 section
    5.3).  Empty for no site."""
    if site is None:
        return ""
    return format_links(WellKnownCore(site.root).links())
