"""Content-Format numbers and their media types (RFC 7252 section 12.3 and the IANA
"CoAP Content-Formats" registry, :mod:`coaptcp.core.contentformats`), with lookup by name for
the command line.
"""

from __future__ import annotations

from collections.abc import Mapping

from coaptcp.core.contentformats import REGISTRY, ContentFormatEntry

__all__ = ["CONTENT_FORMATS", "content_format_name", "parse_content_format"]

def _name(entry: ContentFormatEntry) -> str:
    if entry.coding:
        return f"{entry.media_type} ({entry.coding} coded)"
    return entry.media_type


#: Every registered Content-Format and its media type, from the IANA registry
#: (:mod:`coaptcp.core.contentformats`); a content-coded one says so, e.g. 11050 is
#: ``application/json (deflate coded)``.
CONTENT_FORMATS: Mapping[int, str] = {entry.number: _name(entry) for entry in REGISTRY}

#: Short names people type, mapped to numbers.
_ALIASES: Mapping[str, int] = {
    "text": 0,
    "text/plain": 0,
    "text/plain; charset=utf-8": 0,
    "link-format": 40,
    "link": 40,
    "xml": 41,
    "octet-stream": 42,
    "binary": 42,
    "exi": 47,
    "json": 50,
    "cbor": 60,
    "cbor-seq": 63,
    "senml+json": 110,
    "senml+cbor": 112,
    "senml+xml": 310,
}

_BY_NAME: Mapping[str, int] = {
    **{entry.media_type.replace(" ", "").lower(): entry.number
       for entry in REGISTRY if not entry.coding},
    **{name.replace(" ", "").lower(): number for name, number in _ALIASES.items()},
}


def parse_content_format(text: str) -> int:
    """A Content-Format number from a number or a media type name (any case).

    ``"50"``, ``"application/json"`` and ``"json"`` all give 50.  Raises
    :class:`ValueError` for an unknown name or a number outside 0-65535.
    """
    text = text.strip()
    if text.isdigit():
        number = int(text)
        if number > 0xFFFF:
            raise ValueError(f"content format {number} is out of range (0-65535)")
        return number
    number_for_name = _BY_NAME.get(text.replace(" ", "").lower())
    if number_for_name is None:
        known = ", ".join(sorted(_ALIASES))
        raise ValueError(
            f"unknown content format {text!r}; give a number, a media type such as "
            f"application/json, or one of: {known}"
        )
    return number_for_name


def content_format_name(number: int) -> str:
    """The media type of a Content-Format number, or ``"unknown"``."""
    return CONTENT_FORMATS.get(number, "unknown")
