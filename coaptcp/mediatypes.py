"""Content-Format numbers and their media types (RFC 7252 section 12.3 and the IANA
"CoAP Content-Formats" registry), with lookup by name for the command line.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CONTENT_FORMATS", "content_format_name", "parse_content_format"]

#: Registered Content-Formats (a selection of the IANA registry that covers what CoAP
#: servers commonly send).
CONTENT_FORMATS: Mapping[int, str] = {
    0: "text/plain;charset=utf-8",
    16: 'application/cose;cose-type="cose-encrypt0"',
    17: 'application/cose;cose-type="cose-mac0"',
    18: 'application/cose;cose-type="cose-sign1"',
    40: "application/link-format",
    41: "application/xml",
    42: "application/octet-stream",
    47: "application/exi",
    50: "application/json",
    51: "application/json-patch+json",
    52: "application/merge-patch+json",
    60: "application/cbor",
    61: "application/cwt",
    62: "application/multipart-core",
    63: "application/cbor-seq",
    96: 'application/cose;cose-type="cose-encrypt"',
    97: 'application/cose;cose-type="cose-mac"',
    98: 'application/cose;cose-type="cose-sign"',
    101: "application/cose-key",
    102: "application/cose-key-set",
    110: "application/senml+json",
    111: "application/sensml+json",
    112: "application/senml+cbor",
    113: "application/sensml+cbor",
    114: "application/senml-exi",
    115: "application/sensml-exi",
    256: "application/coap-group+json",
    257: "application/concise-problem-details+cbor",
    320: "application/senml+xml",
    321: "application/sensml+xml",
}

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
}

_BY_NAME: Mapping[str, int] = {
    **{name.replace(" ", "").lower(): number for number, name in CONTENT_FORMATS.items()},
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
