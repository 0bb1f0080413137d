"""CBOR to diagnostic notation, for showing CBOR payloads (RFC 8949 sections 3 and 8).

:func:`diagnose` decodes one data item (or, with ``sequence=True``, a CBOR sequence, RFC
8742) and writes it in diagnostic notation: ``{"a": 1, "b": [2, 3]}``, ``h'0102'``,
``1(1363896240)``, ``[_ 1, 2]`` for indefinite lengths, ``simple(16)``, ``undefined``.
Malformed input raises :class:`CborError` naming the offset.  Nothing is evaluated: tags
are shown, not interpreted.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

from coaptcp.core.errors import CoapTcpError

__all__ = ["CborError", "diagnose"]

#: Nesting deeper than this is refused (a payload is data for humans, not a stack test).
MAX_DEPTH = 256
_INDENT = "  "
#: Containers whose one-line form is longer than this are shown over several lines.
_LINE = 72


class CborError(CoapTcpError, ValueError):
    """The bytes are not well-formed CBOR (RFC 8949 section 3 / appendix F)."""


@dataclass
class _Node:
    """A decoded item: its one-line text, or its parts for a multi-line layout."""

    text: str
    open: str = ""
    close: str = ""
    items: list[tuple[str, _Node]] | None = None  # (key prefix, value) per element

    def render(self, indent: str, pretty: bool) -> str:
        if not pretty or self.items is None or len(self.text) + len(indent) <= _LINE:
            return self.text
        inner = indent + _INDENT
        if all(node.items is None and not prefix for prefix, node in self.items):
            # An array of scalars: fill lines rather than one element per line.
            filled: list[str] = []
            line = ""
            for _, node in self.items:
                if line and len(inner) + len(line) + len(node.text) + 3 > _LINE:
                    filled.append(line + ",")
                    line = ""
                line += (", " if line else "") + node.text
            filled.append(line)
            body = "\n".join(inner + text for text in filled)
            return f"{self.open}\n{body}\n{indent}{self.close}"
        lines = [
            f"{inner}{prefix}{node.render(inner, pretty)}" for prefix, node in self.items
        ]
        return f"{self.open}\n" + ",\n".join(lines) + f"\n{indent}{self.close}"


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise CborError(f"truncated: {count} bytes wanted at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self) -> tuple[int, int, int | None]:
        """(major type, additional info, argument); argument None for indefinite."""
        offset = self.pos
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            return major, info, int.from_bytes(self.take(1 << (info - 24)), "big")
        if info == 31 and major in (2, 3, 4, 5, 7):
            return major, info, None
        raise CborError(f"reserved additional information {info} at offset {offset}")

    def item(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise CborError(f"nested deeper than {MAX_DEPTH} levels")
        offset = self.pos
        major, info, argument = self.head()
        if major == 7 and argument is None:
            raise CborError(f"unexpected break at offset {offset}")
        if major == 0:
            return _Node(str(argument))
        if major == 1:
            assert argument is not None
            return _Node(str(-1 - argument))
        if major in (2, 3):
            return self.string(major, argument, offset)
        if major in (4, 5):
            return self.container(major, argument, depth)
        if major == 6:
            assert argument is not None
            return _Tagged(argument, self.item(depth + 1))
        return self.simple(info, argument, offset)

    def string(self, major: int, length: int | None, offset: int) -> _Node:
        if length is None:
            chunks: list[str] = []
            while True:
                if self.pos < len(self.data) and self.data[self.pos] == 0xFF:
                    self.pos += 1
                    break
                chunk_offset = self.pos
                chunk_major, _, chunk_length = self.head()
                if chunk_major != major or chunk_length is None:
                    raise CborError(
                        f"chunk of an indefinite-length string at offset {chunk_offset} "
                        "is not a definite string of the same type"
                    )
                chunks.append(self.string(major, chunk_length, chunk_offset).text)
            return _Node(f"(_ {', '.join(chunks)})" if chunks else ("''_" if major == 2 else '""_'))
        raw = self.take(length)
        if major == 2:
            return _Node(f"h'{raw.hex()}'")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CborError(f"text string at offset {offset} is not UTF-8") from None
        return _Node(json.dumps(text, ensure_ascii=False))

    def container(self, major: int, length: int | None, depth: int) -> _Node:
        is_map = major == 5
        items: list[tuple[str, _Node]] = []
        count = 0
        while True:
            if length is None:
                if self.pos >= len(self.data):
                    raise CborError("truncated: an indefinite-length container has no break")
                if self.data[self.pos] == 0xFF:
                    self.pos += 1
                    break
            elif count == length:
                break
            if is_map:
                key = self.item(depth + 1)
                value = self.item(depth + 1)
                items.append((f"{key.text}: ", value))
            else:
                items.append(("", self.item(depth + 1)))
            count += 1
        open_, close = ("{", "}") if is_map else ("[", "]")
        if length is None:
            open_ += "_ "
        body = ", ".join(prefix + node.text for prefix, node in items)
        return _Node(f"{open_}{body}{close}", open_.rstrip(), close, items)

    def simple(self, info: int, argument: int | None, offset: int) -> _Node:
        assert argument is not None
        if info == 25:
            return _Node(_float(struct.unpack(">e", argument.to_bytes(2, "big"))[0]))
        if info == 26:
            return _Node(_float(struct.unpack(">f", argument.to_bytes(4, "big"))[0]))
        if info == 27:
            return _Node(_float(struct.unpack(">d", argument.to_bytes(8, "big"))[0]))
        if info == 24 and argument < 32:
            raise CborError(f"simple value {argument} in two bytes at offset {offset}")
        names = {20: "false", 21: "true", 22: "null", 23: "undefined"}
        return _Node(names.get(argument, f"simple({argument})"))


class _Tagged(_Node):
    """A tag around a container, laid out like the container."""

    def __init__(self, tag: int, inner: _Node) -> None:
        super().__init__(f"{tag}({inner.text})")
        self.tag = tag
        self.inner = inner

    def render(self, indent: str, pretty: bool) -> str:
        return f"{self.tag}({self.inner.render(indent, pretty)})"


def _float(value: float) -> str:
    """A float in diagnostic notation: ``1.5``, ``1.0e+300``, ``Infinity``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if e:
        sign = exponent[0] if exponent[0] in "+-" else "+"
        exponent = exponent.lstrip("+-").lstrip("0") or "0"
        return f"{mantissa}e{sign}{exponent}"
    return mantissa


def diagnose(data: bytes, *, sequence: bool = False, pretty: bool = False) -> str:
    """Diagnostic notation of CBOR ``data`` (RFC 8949 section 8).

    :param sequence: decode a CBOR sequence (RFC 8742): items are joined with ``, ``
        (one per line when ``pretty``).  Otherwise exactly one item must fill ``data``.
    :param pretty: lay long containers out over several indented lines.
    :raises CborError: for malformed or truncated input, or bytes after the item.
    """
    if sequence and not data:
        return ""
    decoder = _Decoder(bytes(data))
    items: list[str] = []
    while True:
        items.append(decoder.item(0).render("", pretty))
        if decoder.pos == len(decoder.data):
            break
        if not sequence:
            extra = len(decoder.data) - decoder.pos
            raise CborError(f"{extra} bytes after the data item (offset {decoder.pos})")
    return (",\n" if pretty else ", ").join(items)
