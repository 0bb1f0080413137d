"""RFC 3986 syntax for CoAP URIs: character classes, percent-encoding, dot segments.

The text-level pieces of RFC 7252 sections 6.4 and 6.5 (and RFC 3986 sections 2, 3.3 and
5.2.4) that :mod:`coaptcp.core.uri` parses and composes with; pure Python.
"""

from __future__ import annotations

from coaptcp.core.errors import CoapTcpError

__all__ = [
    "ARGUMENT_SAFE",
    "PATH_CHARS",
    "QUERY_CHARS",
    "REG_NAME_CHARS",
    "SEGMENT_SAFE",
    "UNRESERVED",
    "UriError",
    "check_chars",
    "iri_to_uri",
    "percent_decode",
    "percent_encode",
    "remove_dot_segments",
]


class UriError(CoapTcpError, ValueError):
    """A URI this package cannot use, with a message saying what is wrong with it.

    :ivar uri: the text that was given.
    """

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"bad URI {uri!r}: {problem}")
        self.uri = uri
        self.problem = problem


# -- RFC 3986 character classes -------------------------------------------------------------

_ALPHA_DIGIT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: ``unreserved`` (RFC 3986 section 2.3).
UNRESERVED = frozenset(_ALPHA_DIGIT + "-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PCHAR = UNRESERVED | _SUB_DELIMS | frozenset(":@")
#: What a path may hold besides %XX escapes (RFC 3986 section 3.3).
PATH_CHARS = _PCHAR | {"/"}
#: What a query may hold besides %XX escapes (RFC 3986 section 3.4).
QUERY_CHARS = _PCHAR | frozenset("/?")
#: What a registered name may hold besides %XX escapes (RFC 3986 section 3.2.2).
REG_NAME_CHARS = UNRESERVED | _SUB_DELIMS
#: Left unencoded when composing (RFC 7252 section 6.5 steps 6 and 8).
SEGMENT_SAFE = _PCHAR
#: Left unencoded in a query argument when composing (RFC 7252 section 6.5 step 8).
ARGUMENT_SAFE = (_PCHAR - {"&"}) | frozenset("/?")
_HEX = frozenset("0123456789abcdefABCDEF")

def iri_to_uri(text: str) -> str:
    """Percent-encode non-ASCII characters as UTF-8 (RFC 3987 section 3.1)."""
    if text.isascii():
        return text
    return "".join(
        c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text
    )


def check_chars(uri: str, text: str, allowed: frozenset[str], where: str) -> None:
    """Every character is allowed in ``where`` or starts a well-formed %XX escape."""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            if len(text) < i + 3 or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise UriError(uri, f"'%' in the {where} must start a %XX escape: {text[i:i+3]!r}")
            i += 3
            continue
        if c not in allowed:
            shown = repr(c) if c.isprintable() and c != " " else f"U+{ord(c):04X}"
            hint = f" (write it as %{ord(c):02X})" if ord(c) < 128 and c not in "#" else ""
            raise UriError(uri, f"{shown} is not allowed in the {where}{hint}")
        i += 1


def percent_decode(uri: str, text: str, where: str) -> str:
    """Decode %XX escapes to bytes and the bytes as UTF-8 (RFC 7252 section 6.4 steps 5, 8, 9).

    Uri-Host, Uri-Path and Uri-Query are strings (RFC 7252 section 3.2), so the decoded
    bytes must be UTF-8.
    """
    if "%" not in text:
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(text[i].encode("ascii"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UriError(uri, f"the {where} {text!r} does not decode to UTF-8 text") from None


def percent_encode(text: str, safe: frozenset[str]) -> str:
    """Percent-encode, as UTF-8, every character not in ``safe`` (RFC 3986 section 2.1)."""
    return "".join(
        c if c in safe else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text
    )


def remove_dot_segments(path: str) -> str:
    """Remove ``.`` and ``..`` segments from a path (RFC 3986 section 5.2.4)."""
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if output:
                output.pop()
        elif path == "/..":
            path = "/"
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            if end < 0:
                end = len(path)
            output.append(path[:end])
            path = path[end:]
    return "".join(output)
