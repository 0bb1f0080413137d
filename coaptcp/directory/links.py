"""Reading and writing the links a resource directory stores (RFC 6690 section 2, RFC
9176 sections 5 and 6.1, RFC 3986 section 5.2).

:func:`parse_links` reads a CoRE Link Format document into :class:`StoredLink` values,
keeping every parameter as it was written (its name, its value, whether it was quoted),
so that a lookup returns the links "equal to the originally submitted ones" (RFC 9176
section 6.1).  :func:`resolve_reference` resolves a URI reference against a base URI
(RFC 3986 section 5.2.2; the standard library's ``urljoin`` only knows the schemes it
lists, not ``coap``).  :func:`format_link` writes one link back, with its target and
anchor resolved against the registration's base.

Everything here is pure Python: no Twisted, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coaptcp.core.errors import CoapTcpError
from coaptcp.core.urisyntax import remove_dot_segments

__all__ = [
    "LIST_PARAMS",
    "LinkFormatError",
    "LinkParam",
    "StoredLink",
    "format_link",
    "format_links",
    "format_param",
    "is_absolute_uri",
    "is_link_local",
    "param_values",
    "parse_links",
    "resolve_reference",
    "split_reference",
]


class LinkFormatError(CoapTcpError, ValueError):
    """A payload that is not CoRE Link Format (RFC 6690 section 2); the message says
    where and why (it becomes the diagnostic of a 4.00)."""


#: ``ptokenchar`` of RFC 6690 section 2: what an unquoted parameter value may hold.
_PTOKEN_CHARS = frozenset(
    "!#$%&'()*+-./:<=>?@[]^_`{|}~"
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
#: Whitespace tolerated between links and parameters.  RFC 6690 allows none, but
#: documents are often written one link per line (as in the RFCs' own examples).
_SPACES = re.compile(r"[ \t\r\n]*")
#: ``parmname`` of RFC 5988 section 5 (a ``token`` without a few separators), plus ``*``
#: for the ``ext-name-star`` form of RFC 8288 (``title*=UTF-8'de'...``), and
#: ``ptoken``: expressions, so that the parser matches tokens, not characters, in Python.
_PARMNAME = re.compile(r"[!#$&+\-.^_`|~*0-9A-Za-z]+")
_PTOKEN = re.compile(r"[!#$%&'()*+\-./:<=>?@\[\]^_`{|}~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f]")
_NOT_IN_REFERENCE = re.compile(r'[\x00-\x20\x7f<"]')
#: Values written unquoted by :func:`format_param` (a plain token, as in ``ep=node1``).
_PLAIN = re.compile(r"^[A-Za-z0-9._-]+$")
#: RFC 3986 appendix B: the generic split of a URI reference.
_SPLIT = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


@dataclass(frozen=True, slots=True)
class LinkParam:
    """One link parameter as written: ``;name``, ``;name=value`` or ``;name="value"``.

    ``name`` is lower case (parameter names are case-insensitive, RFC 8288 section 3);
    ``value`` is ``None`` for a parameter without one (``;obs``).
    """

    name: str
    value: str | None
    quoted: bool = False


#: Parameters whose values are space-separated lists, matched value by value in lookups
#: (``relation-types`` of RFC 6690 section 2; ``ct`` lists Content-Formats the same way,
#: RFC 7252 section 7.2.1).
LIST_PARAMS = frozenset({"rel", "rev", "rt", "if", "ct"})


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One link of a registration: its target reference and its parameters, in order."""

    target: str
    params: tuple[LinkParam, ...] = ()

    def values(self, name: str) -> list[str]:
        """The values of parameter ``name`` (list-valued ones split at spaces); a
        parameter without a value counts as the empty string."""
        found: list[str] = []
        for param in self.params:
            if param.name == name:
                if param.value is None:
                    found.append("")
                elif name in LIST_PARAMS:
                    found.extend(param.value.split())
                else:
                    found.append(param.value)
        return found

    @property
    def anchor(self) -> str | None:
        """The ``anchor`` parameter's value, if the link has one."""
        for param in self.params:
            if param.name == "anchor":
                return param.value or ""
        return None


def parse_links(text: str, *, max_links: int | None = None) -> list[StoredLink]:
    """Parse a link-format document (RFC 6690 section 2); an empty one has no links.

    Raises :class:`LinkFormatError` for anything that is not link-format, and for more
    than ``max_links`` links.
    """
    links: list[StoredLink] = []
    end = len(text)
    i = _skip_space(text, 0)
    if i == end:
        return links
    while True:
        if text[i] != "<":
            raise LinkFormatError(f"expected '<' at offset {i}, found {text[i]!r}")
        close = text.find(">", i + 1)
        if close < 0:
            raise LinkFormatError(f"the link target at offset {i} lacks its closing '>'")
        target = text[i + 1 : close]
        _check_reference(target, i)
        i, params = _parse_params(text, close + 1)
        links.append(StoredLink(target, params))
        if max_links is not None and len(links) > max_links:
            raise LinkFormatError(f"more than {max_links} links")
        i = _skip_space(text, i)
        if i == end:
            return links
        if text[i] != ",":
            raise LinkFormatError(f"expected ',' or ';' at offset {i}, found {text[i]!r}")
        i = _skip_space(text, i + 1)
        if i == end:
            raise LinkFormatError("the document ends with ','")


def _skip_space(text: str, i: int) -> int:
    if i < len(text) and text[i] in " \t\r\n":  # rare: most documents have no spaces
        return _SPACES.match(text, i).end()  # type: ignore[union-attr]  # always matches
    return i


def _check_reference(reference: str, offset: int) -> None:
    bad = _NOT_IN_REFERENCE.search(reference)
    if bad is not None:
        raise LinkFormatError(
            f"the link target at offset {offset} holds {bad.group()!r}, which a URI "
            f"reference may not"
        )


def _parse_params(text: str, i: int) -> tuple[int, tuple[LinkParam, ...]]:
    """The ``;name[=value]`` parameters from offset ``i``; returns where they end."""
    params: list[LinkParam] = []
    end = len(text)
    while True:
        j = _skip_space(text, i)
        if j == end or text[j] != ";":
            return j, tuple(params)
        i = _skip_space(text, j + 1)
        found = _PARMNAME.match(text, i)
        if found is None:
            raise LinkFormatError(f"expected a parameter name at offset {i}")
        name = found.group().lower()
        i = _skip_space(text, found.end())
        if i == end or text[i] != "=":
            params.append(LinkParam(name, None))
            continue
        i = _skip_space(text, i + 1)
        if i < end and text[i] == '"':
            i, value = _parse_quoted(text, i)
            params.append(LinkParam(name, value, quoted=True))
            continue
        found = _PTOKEN.match(text, i)
        if found is None:
            raise LinkFormatError(f"expected a value for {name!r} at offset {i}")
        params.append(LinkParam(name, found.group()))
        i = found.end()


def _parse_quoted(text: str, i: int) -> tuple[int, str]:
    """A ``quoted-string`` starting at the quote at ``i`` (RFC 2616 section 2.2)."""
    found = _QUOTED.match(text, i)
    if found is None:
        raise LinkFormatError("a quoted value lacks its closing '\"'")
    raw = found.group(1)
    control = _CONTROL.search(raw)
    if control is not None:
        raise LinkFormatError(
            f"a control character in a quoted value at offset {i + 1 + control.start()}")
    value = _QUOTED_PAIR.sub(r"\1", raw) if "\\" in raw else raw
    return found.end(), value


# -- URI references (RFC 3986 section 5) --------------------------------------------------


def split_reference(
    reference: str,
) -> tuple[str | None, str | None, str, str | None, str | None]:
    """``(scheme, authority, path, query, fragment)`` of a URI reference (RFC 3986
    appendix B); absent parts are ``None``, an absent path is ``""``."""
    match = _SPLIT.match(reference)
    assert match is not None  # the expression matches every string
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


def is_absolute_uri(reference: str) -> bool:
    """Whether ``reference`` is a URI with a scheme, not a relative reference."""
    scheme = split_reference(reference)[0]
    return scheme is not None and _SCHEME.match(scheme) is not None


def is_link_local(base: str) -> bool:
    """Whether the host of ``base`` is a link-local IP address (fe80::/10,
    169.254.0.0/16): such a registration is shown only to lookups from a link-local
    address (RFC 9176 sections 6.1 and 6.4)."""
    authority = split_reference(base)[1]
    if not authority:
        return False
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host[1:].partition("]")[0].partition("%")[0]
    else:
        host = host.partition(":")[0]
    if ":" not in host:
        return host.startswith("169.254.")  # IPv4 link-local, or a name: not link-local
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


def resolve_reference(base: str, reference: str) -> str:
    """``reference`` resolved against ``base`` (RFC 3986 section 5.2.2, strict).

    A full URI comes back with only its dot segments removed; an empty reference gives
    the base without its fragment.
    """
    scheme, authority, path, query, fragment = split_reference(reference)
    if scheme is not None:
        return _recompose(scheme, authority, remove_dot_segments(path), query, fragment)
    b_scheme, b_authority, b_path, b_query, _ = split_reference(base)
    if authority is not None:
        return _recompose(b_scheme, authority, remove_dot_segments(path), query, fragment)
    if path == "":
        return _recompose(b_scheme, b_authority, b_path, query if query is not None else b_query,
                          fragment)
    if path.startswith("/"):
        merged = path
    elif b_authority is not None and b_path == "":
        merged = "/" + path
    else:
        merged = b_path[: b_path.rfind("/") + 1] + path
    return _recompose(b_scheme, b_authority, remove_dot_segments(merged), query, fragment)


def _recompose(
    scheme: str | None,
    authority: str | None,
    path: str,
    query: str | None,
    fragment: str | None,
) -> str:
    """RFC 3986 section 5.3."""
    result = f"{scheme}:" if scheme is not None else ""
    if authority is not None:
        result += f"//{authority}"
    result += path
    if query is not None:
        result += f"?{query}"
    if fragment is not None:
        result += f"#{fragment}"
    return result


# -- writing -------------------------------------------------------------------------------


def format_param(name: str, value: str | None, quoted: bool | None = None) -> str:
    """One parameter as ``;name``, ``;name=value`` or ``;name="value"``.

    ``quoted`` ``None`` quotes every value but a plain token (``ep=node1``,
    ``ct=40``); otherwise the value is written as it was received (quoted or not).
    """
    if value is None:
        return f";{name}"
    if quoted is None:
        quoted = _PLAIN.match(value) is None
    elif not quoted and (not value or any(c not in _PTOKEN_CHARS for c in value)):
        quoted = True
    if not quoted:
        return f";{name}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f';{name}="{escaped}"'


def format_link(link: StoredLink, base: str | None = None) -> str:
    """``link`` in link-format; with a ``base``, its target and anchor resolved against
    it (RFC 9176 section 6.1: a lookup shows them as full URIs)."""
    target = link.target if base is None else resolve_reference(base, link.target)
    parts = [f"<{target}>"]
    for param in link.params:
        if param.name == "anchor" and base is not None and param.value is not None:
            parts.append(format_param("anchor", resolve_reference(base, param.value), True))
        else:
            parts.append(format_param(param.name, param.value, param.quoted))
    return "".join(parts)


def format_links(links: Iterable[StoredLink], base: str | None = None) -> str:
    """Several links, comma-separated (RFC 6690 section 2)."""
    return ",".join(format_link(link, base) for link in links)


def param_values(params: Sequence[LinkParam], name: str) -> list[str]:
    """The values of ``name`` among ``params`` (as :meth:`StoredLink.values`)."""
    return StoredLink("", tuple(params)).values(name)
