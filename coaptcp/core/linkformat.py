"""CoRE Link Format for ``/.well-known/core`` (RFC 6690 sections 2, 4.1 and 5).

Pure helpers: :func:`format_links` writes a link-format document from (path, attributes)
entries and :func:`matches_query` applies the query filtering of section 4.1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = ["LINK_FORMAT", "Link", "filter_links", "format_links", "matches_query"]

#: Content-Format number of application/link-format (RFC 6690 section 7.3).
LINK_FORMAT = 40

#: Attributes whose values are written without quotes (numbers, RFC 6690 section 3).
_UNQUOTED = frozenset({"ct", "sz"})

AttributeValue = str | int | bool | Sequence[str] | None


@dataclass(frozen=True)
class Link:
    """One link: a target path and its target attributes (``None``/``True`` = flag)."""

    path: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        """The attribute's values as strings; space-separated ones are split."""
        value = self.attributes.get(name)
        if value is None or value is True:
            return [""] if name in self.attributes else []
        if value is False:
            return []
        if isinstance(value, (str, int)):
            return str(value).split(" ") if isinstance(value, str) else [str(value)]
        return [str(v) for v in value]


def _format_attribute(name: str, value: AttributeValue) -> str:
    if value is None or value is True:
        return f";{name}"
    if value is False:
        return ""
    if isinstance(value, int):
        return f";{name}={value}"
    text = value if isinstance(value, str) else " ".join(value)
    if name in _UNQUOTED and text.isdigit():
        return f";{name}={text}"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f';{name}="{escaped}"'


def format_links(links: Iterable[Link]) -> str:
    """Serialize links as ``</a>;rt="x",</b>;obs`` (RFC 6690 section 2)."""
    return ",".join(
        "<"
        + quote(link.path, safe="/:@!$&'()*+,;=-._~")
        + ">"
        + "".join(_format_attribute(name, value) for name, value in link.attributes.items())
        for link in links
    )


def _value_matches(pattern: str, candidates: Iterable[str]) -> bool:
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return any(candidate.startswith(prefix) for candidate in candidates)
    return any(candidate == pattern for candidate in candidates)


def matches_query(link: Link, query: Sequence[str]) -> bool:
    """Whether ``link`` passes every ``name=value`` filter (RFC 6690 section 4.1).

    ``href`` compares with the path; a value ending in ``*`` is a prefix match.  A
    filter naming an attribute the link lacks excludes it.  Several filters must all hold.
    """
    for argument in query:
        name, _, pattern = argument.partition("=")
        if name == "href":
            candidates = [link.path]
        else:
            candidates = link.values(name)
        if not _value_matches(pattern, candidates):
            return False
    return True


def filter_links(links: Iterable[Link], query: Sequence[str]) -> list[Link]:
    """The links that pass :func:`matches_query`."""
    return [link for link in links if matches_query(link, query)]
