"""One registration of a resource directory: an endpoint, its links and who made it
(RFC 9176 sections 3.3, 5 and 6.4).

A :class:`Registration` is what a back end finds with
:meth:`~coaptcp.directory.ResourceDirectory.find`: the endpoint's name and sector, its
base URI, its links (as registered, and resolved against the base), its endpoint
attributes, when it expires, the peer's address and TLS identity, and, when it was made
over a connection (TCP, TLS, WebSockets), that connection.  Over a connection the
registration also offers :meth:`~Registration.request`, :meth:`~Registration.observe`
and :meth:`~Registration.ping`: the device that called in is reachable over the
connection it opened (RFC 8323 section 3.3: either side may send requests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, fail, succeed

from coaptcp.core.codes import Code
from coaptcp.core.errors import CoapTcpError
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.directory.links import (
    LinkParam,
    StoredLink,
    format_link,
    format_param,
    is_link_local,
    resolve_reference,
)
from coaptcp.server.request import Response

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

    from coaptcp.channel.observing import ChannelObservation

__all__ = ["ENDPOINT_TYPE", "EndpointConnection", "NotConnected", "Registration"]

#: The resource type of the links an endpoint lookup returns (RFC 9176 section 6.4).
ENDPOINT_TYPE = "core.rd-ep"


class NotConnected(CoapTcpError):
    """The registration was not made over a connection (UDP), or it is gone: there is no
    connection to send a request on."""


class EndpointConnection(Protocol):
    """What a registration uses of the connection it was made over (a
    :class:`~coaptcp.channel.Channel` provides it)."""

    def when_closed(self) -> Deferred[None]:
        """Fires once the connection has closed."""
        ...

    def request(
        self, method: Code, options: Options = ..., payload: bytes = ..., *,
        timeout: float | None = ...,
    ) -> Deferred[Response]:
        """Send a request to the peer (RFC 8323 section 3.3)."""
        ...

    def ping(self, *, custody: bool = ..., timeout: float | None = ...) -> Deferred[float]:
        """Send a Ping (RFC 8323 section 5.4)."""
        ...

    def observe(
        self, options: Options, *, on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
    ) -> ChannelObservation:
        """Observe a resource of the peer (RFC 7641, RFC 8323 section 7)."""
        ...


class Registration:
    """A registration resource's state (RFC 9176 section 3.3).

    :ivar endpoint: the endpoint name (``ep``); :ivar sector: its sector (``d``) or
        ``None``.
    :ivar key: the last segment of its location (``/rd/<key>``); :ivar location: the
        whole path.
    :ivar base: the base URI its links are resolved against; :ivar base_given: whether
        the registrant gave it (``base=``) or it was made from its address (section 5);
        :ivar link_local: whether its host is a link-local address (section 6.1).
    :ivar lifetime: seconds it lives without an update; :ivar expires_at: when it ends,
        on the directory's reactor clock.
    :ivar links: its links as registered; :ivar attributes: its endpoint attributes
        (``et`` and other parameters, section 9.3), as ``(name, value)`` pairs.
    :ivar peer: the address it was last registered or updated from; :ivar identity:
        the TLS identity names of that peer (see
        :func:`~coaptcp.directory.policy.identity_names`).
    :ivar connection: the connection it was made over, or ``None`` (UDP); it ends with it.
    :ivar gone_reason: why it ended, once it has (``None`` while it is registered).
    """

    __slots__ = (
        "__weakref__",
        "_gone_waiters",
        "_resolved",
        "_resolved_text",
        "attributes",
        "base",
        "base_given",
        "connection",
        "endpoint",
        "expires_at",
        "gone_reason",
        "identity",
        "key",
        "lifetime",
        "link_local",
        "links",
        "location",
        "peer",
        "peer_host",
        "sector",
    )

    def __init__(self, endpoint: str, sector: str | None, key: str, location: str) -> None:
        self.endpoint = endpoint
        self.sector = sector
        self.key = key
        self.location = location
        self.base = ""
        self.base_given = False
        self.link_local = False
        self.lifetime = 0
        self.expires_at: float = 0.0
        self.links: tuple[StoredLink, ...] = ()
        self.attributes: tuple[tuple[str, str | None], ...] = ()
        self.peer: IAddress | None = None
        self.peer_host: str | None = None
        self.identity: tuple[str, ...] = ()
        self.connection: EndpointConnection | None = None
        self.gone_reason: str | None = None
        self._resolved: tuple[str, ...] | None = None
        self._resolved_text: tuple[str, ...] | None = None
        self._gone_waiters: list[Deferred[str]] = []

    def __repr__(self) -> str:
        sector = f" d={self.sector}" if self.sector is not None else ""
        return f"<Registration {self.location} ep={self.endpoint}{sector} base={self.base}>"

    @property
    def alive(self) -> bool:
        """Whether it is still registered."""
        return self.gone_reason is None

    # -- links ----------------------------------------------------------------------------

    def set_links(self, links: Iterable[StoredLink]) -> None:
        """Replace the links (a registration or an update with a payload)."""
        self.links = tuple(links)
        self._resolved = self._resolved_text = None

    def set_base(self, base: str, given: bool) -> None:
        """Set the base URI; relative references are resolved anew (section 5.3.1)."""
        if base != self.base:
            self._resolved = self._resolved_text = None
            self.link_local = is_link_local(base)
        self.base = base
        self.base_given = given

    def resolved_targets(self) -> tuple[str, ...]:
        """Each link's target resolved against the base, in order (computed once per
        change of links or base)."""
        if self._resolved is None:
            base = self.base
            self._resolved = tuple(resolve_reference(base, link.target) for link in self.links)
        return self._resolved

    def resolved_link(self, index: int) -> str:
        """Link ``index`` in link-format with its target and anchor resolved, as a
        resource lookup shows it (section 6.1; written once per change)."""
        if self._resolved_text is None:
            base = self.base
            self._resolved_text = tuple(format_link(link, base) for link in self.links)
        return self._resolved_text[index]

    def resolved_anchor(self, link: StoredLink) -> str | None:
        """``link``'s anchor resolved against the base, if it has one."""
        anchor = link.anchor
        return None if anchor is None else resolve_reference(self.base, anchor)

    def link_format(self, resolved: bool = False) -> str:
        """The links in link-format: as registered, or resolved (as a resource lookup
        shows them, section 6.1)."""
        base = self.base if resolved else None
        return ",".join(format_link(link, base) for link in self.links)

    def endpoint_params(self) -> list[LinkParam]:
        """The target attributes of this registration's link in an endpoint lookup
        (section 6.4): ``ep``, ``d``, ``base``, ``rt=core.rd-ep`` and its endpoint
        attributes; the lifetime is not shown."""
        params = [LinkParam("ep", self.endpoint)]
        if self.sector is not None:
            params.append(LinkParam("d", self.sector))
        params.append(LinkParam("base", self.base))
        params.append(LinkParam("rt", ENDPOINT_TYPE))
        params.extend(LinkParam(name, value) for name, value in self.attributes)
        return params

    def endpoint_link(self) -> str:
        """This registration's link in an endpoint lookup (section 6.4)."""
        return f"<{self.location}>" + "".join(
            format_param(param.name, param.value) for param in self.endpoint_params()
        )

    def attribute_values(self, name: str) -> list[str]:
        """The values a lookup filter on ``name`` compares with at the endpoint level:
        ``ep``, ``d``, ``base``, ``href`` (the registration's path) and the endpoint
        attributes (section 6.2)."""
        if name == "ep":
            return [self.endpoint]
        if name == "d":
            return [] if self.sector is None else [self.sector]
        if name == "base":
            return [self.base]
        if name == "href":
            return [self.location]
        return ["" if value is None else value
                for attribute, value in self.attributes if attribute == name]

    # -- its end --------------------------------------------------------------------------

    def when_gone(self) -> Deferred[str]:
        """A Deferred that fires with the reason once the registration has ended
        (removed, expired, its connection closed)."""
        if self.gone_reason is not None:
            return succeed(self.gone_reason)
        d: Deferred[str] = Deferred(self._forget_waiter)
        self._gone_waiters.append(d)
        return d

    def _forget_waiter(self, d: Deferred[str]) -> None:
        if d in self._gone_waiters:
            self._gone_waiters.remove(d)

    def ended(self, reason: str) -> None:
        """Mark it ended (the directory calls this once) and fire :meth:`when_gone`."""
        self.gone_reason = reason
        self.connection = None
        waiters, self._gone_waiters = self._gone_waiters, []
        for d in waiters:
            d.callback(reason)

    # -- the peer, over the connection it called in on ------------------------------------

    def _connection(self) -> EndpointConnection:
        if self.connection is None:
            why = self.gone_reason or "it was registered over UDP, not over a connection"
            raise NotConnected(f"{self.endpoint} is not connected: {why}")
        return self.connection

    def request(
        self,
        method: Code,
        path: str | Sequence[str] = (),
        payload: bytes = b"",
        *,
        query: Sequence[str] = (),
        options: Options = EMPTY_OPTIONS,
        timeout: float | None = None,
    ) -> Deferred[Response]:
        """Send a request to the endpoint over the connection it registered on.

        ``path`` is ``"/sensors/temp"`` or its segments; ``query`` the Uri-Query items;
        ``options`` more options (Content-Format, Accept, ...).  Fails with
        :class:`NotConnected` without a connection, and with
        :class:`~coaptcp.ConnectionClosedError` when it closes first.
        """
        try:
            connection = self._connection()
        except NotConnected:
            return fail()
        return connection.request(Code(method), _with_uri(options, path, query), payload,
                                  timeout=timeout)

    def observe(
        self,
        path: str | Sequence[str],
        *,
        on_notification: Callable[[Response], None],
        on_end: Callable[[BaseException | None], None],
        query: Sequence[str] = (),
        options: Options = EMPTY_OPTIONS,
    ) -> ChannelObservation:
        """Observe one of the endpoint's resources over its connection (RFC 7641, RFC
        8323 section 7); see :meth:`coaptcp.Channel.observe`.  Raises
        :class:`NotConnected` without a connection."""
        return self._connection().observe(
            _with_uri(options, path, query), on_notification=on_notification, on_end=on_end
        )

    def ping(self, *, timeout: float | None = None) -> Deferred[float]:
        """Ping the endpoint over its connection; fires with the round-trip time
        (RFC 8323 section 5.4)."""
        try:
            connection = self._connection()
        except NotConnected:
            return fail()
        return connection.ping(timeout=timeout)


def _with_uri(options: Options, path: str | Sequence[str], query: Sequence[str]) -> Options:
    segments = [s for s in path.split("/") if s] if isinstance(path, str) else list(path)
    items: list[tuple[int, bytes | str | int]] = [
        (number, value) for number, value in options
        if number not in (OptionNumber.URI_PATH, OptionNumber.URI_QUERY)
    ]
    items.extend((OptionNumber.URI_PATH, segment) for segment in segments)
    items.extend((OptionNumber.URI_QUERY, argument) for argument in query)
    return Options(items)

