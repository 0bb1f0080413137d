"""Human-readable payloads and options, for the command line on a terminal.

:func:`pretty_payload` shows JSON indented, CBOR in diagnostic notation (RFC 8949 section
8), link-format one link per line (RFC 6690), text as text and anything else as a hex dump.
:func:`describe_option` names an option and decodes its value by its format (RFC 7252
section 5.10).
"""

from __future__ import annotations

import json

from coaptcp.cli.cbordiag import CborError, diagnose
from coaptcp.core.mediatypes import content_format_name
from coaptcp.core.options import OPTION_SPECS, OptionFormat, OptionNumber, decode_uint

__all__ = ["describe_option", "hexdump", "pretty_payload", "split_links"]

_JSON_FORMATS = frozenset({50, 51, 52, 110, 111, 256})
_CBOR_FORMATS = frozenset({60, 61, 112, 113, 257})
_CBOR_SEQUENCE_FORMATS = frozenset({63})
_LINK_FORMAT = 40


def split_links(document: str) -> list[str]:
    """Split a link-format document at the commas between links (RFC 6690 section 2).

    Commas inside ``<...>`` targets and quoted attribute values do not split.
    """
    links: list[str] = []
    start = 0
    in_target = in_quotes = escaped = False
    for i, c in enumerate(document):
        if escaped:
            escaped = False
        elif in_quotes:
            if c == "\\":
                escaped = True
            elif c == '"':
                in_quotes = False
        elif in_target:
            in_target = c != ">"
        elif c == "<":
            in_target = True
        elif c == '"':
            in_quotes = True
        elif c == ",":
            links.append(document[start:i].strip())
            start = i + 1
    links.append(document[start:].strip())
    return [link for link in links if link]


def hexdump(data: bytes) -> str:
    """16 bytes a line: offset, hex, and the printable ASCII characters."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hex_part:<47}  {text}")
    return "\n".join(lines)


def _text(payload: bytes) -> str | None:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        return None
    return text


def pretty_payload(payload: bytes, content_format: int | None) -> str:
    """The payload as text for a terminal, ending without a newline.

    Falls back to plain text, then to a hex dump, when the payload does not parse as its
    Content-Format says.
    """
    if not payload:
        return ""
    if content_format in _JSON_FORMATS:
        try:
            value = json.loads(payload)
        except ValueError:
            pass
        else:
            return json.dumps(value, indent=2, ensure_ascii=False)
    elif content_format in _CBOR_FORMATS or content_format in _CBOR_SEQUENCE_FORMATS:
        try:
            return diagnose(
                payload, sequence=content_format in _CBOR_SEQUENCE_FORMATS, pretty=True
            )
        except CborError:
            pass
    elif content_format == _LINK_FORMAT:
        text = _text(payload)
        if text is not None:
            return "\n".join(split_links(text))
    text = _text(payload)
    if text is not None:
        return text.rstrip("\n")
    return hexdump(payload)


def describe_option(number: int, value: bytes) -> str:
    """``Name: value``, the value decoded by the option's format (RFC 7252 section 3.2)."""
    spec = OPTION_SPECS.get(number)
    name = spec.name if spec is not None else f"Option {number}"
    if number in (OptionNumber.CONTENT_FORMAT, OptionNumber.ACCEPT):
        format_number = decode_uint(value)
        return f"{name}: {format_number} ({content_format_name(format_number)})"
    if number in (OptionNumber.BLOCK1, OptionNumber.BLOCK2):
        block = decode_uint(value)
        size = 1024 if block & 7 == 7 else 1 << ((block & 7) + 4)
        more = "more" if block & 8 else "last"
        return f"{name}: block {block >> 4}, {more}, size {size}" + (
            " (BERT)" if block & 7 == 7 else ""
        )
    if spec is None or spec.format is OptionFormat.OPAQUE:
        return f"{name}: {value.hex() if value else '(empty)'}"
    if spec.format is OptionFormat.EMPTY:
        return f"{name}"
    if spec.format is OptionFormat.UINT:
        return f"{name}: {decode_uint(value)}"
    try:
        return f"{name}: {value.decode('utf-8')!r}"
    except UnicodeDecodeError:
        return f"{name}: {value.hex()} (not UTF-8)"
