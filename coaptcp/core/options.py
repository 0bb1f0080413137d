"""CoAP options: numbers, value formats and an immutable option list.

Option numbers and formats come from RFC 7252 section 5.10 and the RFCs that added options
since (RFC 7641 Observe, RFC 7959 Block1/Block2/Size2, RFC 8613 OSCORE, RFC 8768 Hop-Limit,
RFC 7967 No-Response, RFC 9175 Echo/Request-Tag).  Signaling messages have option numbers of
their own per signaling code (RFC 8323 section 5.2 / draft-07 section 5.2); they are modelled
in :data:`SIGNALING_OPTIONS`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from coaptcp.core.codes import Code

__all__ = [
    "OPTION_SPECS",
    "SIGNALING_OPTIONS",
    "AbortOption",
    "CsmOption",
    "OptionFormat",
    "OptionNumber",
    "OptionSpec",
    "OptionValue",
    "Options",
    "PingPongOption",
    "ReleaseOption",
    "decode_uint",
    "encode_uint",
    "is_critical",
    "is_no_cache_key",
    "is_unsafe",
]

OptionValue = bytes | str | int | None


def is_critical(number: int) -> bool:
    """Odd option numbers are critical (RFC 7252 section 5.4.6)."""
    return bool(number & 1)


def is_unsafe(number: int) -> bool:
    """Option numbers with bit 1 set are unsafe to forward (RFC 7252 section 5.4.6)."""
    return bool(number & 2)


def is_no_cache_key(number: int) -> bool:
    """``number & 0x1e == 0x1c`` marks NoCacheKey options (RFC 7252 section 5.4.6)."""
    return (number & 0x1E) == 0x1C


class OptionNumber(enum.IntEnum):
    """Request/response option numbers (RFC 7252 section 12.2 and later RFCs).

    Open to unknown numbers: ``OptionNumber(65000)`` gives an unnamed member whose
    :attr:`is_critical` and friends still work.
    """

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    OSCORE = 9
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    HOP_LIMIT = 16
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    ECHO = 252
    NO_RESPONSE = 258
    REQUEST_TAG = 292

    @classmethod
    def _missing_(cls, value: object) -> OptionNumber | None:
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"OPTION_{value}"
        member._value_ = value
        return member

    @property
    def is_critical(self) -> bool:
        """True for critical options (odd numbers)."""
        return is_critical(self)

    @property
    def is_elective(self) -> bool:
        """True for elective options (even numbers)."""
        return not is_critical(self)

    @property
    def is_unsafe(self) -> bool:
        """True for options that are unsafe to forward."""
        return is_unsafe(self)

    @property
    def is_no_cache_key(self) -> bool:
        """True for options that are not part of the cache key."""
        return is_no_cache_key(self)


class OptionFormat(enum.Enum):
    """Option value formats (RFC 7252 section 3.2)."""

    EMPTY = "empty"
    OPAQUE = "opaque"
    UINT = "uint"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """What a registry says of one option: name, format, length range, repeatability."""

    name: str
    format: OptionFormat
    min_length: int
    max_length: int
    repeatable: bool = False

    def length_ok(self, length: int) -> bool:
        """Whether a value of ``length`` bytes is within the option's range."""
        return self.min_length <= length <= self.max_length


_E, _O, _U, _S = OptionFormat.EMPTY, OptionFormat.OPAQUE, OptionFormat.UINT, OptionFormat.STRING

#: Every request/response option this package knows, by number.
OPTION_SPECS: Mapping[int, OptionSpec] = {
    1: OptionSpec("If-Match", _O, 0, 8, repeatable=True),
    3: OptionSpec("Uri-Host", _S, 1, 255),
    4: OptionSpec("ETag", _O, 1, 8, repeatable=True),
    5: OptionSpec("If-None-Match", _E, 0, 0),
    6: OptionSpec("Observe", _U, 0, 3),
    7: OptionSpec("Uri-Port", _U, 0, 2),
    8: OptionSpec("Location-Path", _S, 0, 255, repeatable=True),
    9: OptionSpec("OSCORE", _O, 0, 255),
    11: OptionSpec("Uri-Path", _S, 0, 255, repeatable=True),
    12: OptionSpec("Content-Format", _U, 0, 2),
    14: OptionSpec("Max-Age", _U, 0, 4),
    15: OptionSpec("Uri-Query", _S, 0, 255, repeatable=True),
    16: OptionSpec("Hop-Limit", _U, 1, 1),
    17: OptionSpec("Accept", _U, 0, 2),
    20: OptionSpec("Location-Query", _S, 0, 255, repeatable=True),
    23: OptionSpec("Block2", _U, 0, 3),
    27: OptionSpec("Block1", _U, 0, 3),
    28: OptionSpec("Size2", _U, 0, 4),
    35: OptionSpec("Proxy-Uri", _S, 1, 1034),
    39: OptionSpec("Proxy-Scheme", _S, 1, 255),
    60: OptionSpec("Size1", _U, 0, 4),
    252: OptionSpec("Echo", _O, 1, 40),
    258: OptionSpec("No-Response", _U, 0, 1),
    292: OptionSpec("Request-Tag", _O, 0, 8, repeatable=True),
}


class CsmOption(enum.IntEnum):
    """Options of the 7.01 CSM message (RFC 8323 section 5.3)."""

    MAX_MESSAGE_SIZE = 2
    BLOCK_WISE_TRANSFER = 4


class PingPongOption(enum.IntEnum):
    """Options of the 7.02 Ping and 7.03 Pong messages (RFC 8323 section 5.4)."""

    CUSTODY = 2


class ReleaseOption(enum.IntEnum):
    """Options of the 7.04 Release message (RFC 8323 section 5.5)."""

    ALTERNATIVE_ADDRESS = 2
    HOLD_OFF = 4


class AbortOption(enum.IntEnum):
    """Options of the 7.05 Abort message (RFC 8323 section 5.6)."""

    BAD_CSM_OPTION = 2


_PING_PONG = {2: OptionSpec("Custody", _E, 0, 0)}

#: Signaling option registry (RFC 8323 section 11.2): per signaling code, the options
#: understood for it.  Option numbers are scoped to the code (RFC 8323 section 5.2).
SIGNALING_OPTIONS: Mapping[Code, Mapping[int, OptionSpec]] = {
    Code.CSM: {
        2: OptionSpec("Max-Message-Size", _U, 0, 4),
        4: OptionSpec("Block-Wise-Transfer", _E, 0, 0),
    },
    Code.PING: _PING_PONG,
    Code.PONG: _PING_PONG,
    Code.RELEASE: {
        2: OptionSpec("Alternative-Address", _S, 1, 255, repeatable=True),
        4: OptionSpec("Hold-Off", _U, 0, 3),
    },
    Code.ABORT: {2: OptionSpec("Bad-CSM-Option", _U, 0, 2)},
}


def encode_uint(value: int) -> bytes:
    """Encode a uint option value in its shortest form (RFC 7252 section 3.2).

    Zero is the empty string.  Raises :class:`ValueError` for negative values.
    """
    if value < 0:
        raise ValueError(f"uint option values cannot be negative: {value}")
    if value == 0:
        return b""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_uint(value: bytes) -> int:
    """Decode a uint option value; leading zero bytes are accepted (RFC 7252 section 3.2)."""
    return int.from_bytes(value, "big")


def _encode_value(value: OptionValue) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        raise TypeError("option values are bytes, str, int or None, not bool")
    if isinstance(value, int):
        return encode_uint(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot encode option value of type {type(value).__name__}")


class Options:
    """An immutable list of options, kept sorted by number (stable for repeats).

    Values are stored as the bytes that go on the wire; the typed properties
    (:attr:`uri_path`, :attr:`content_format`, ...) decode them.  Modifying methods
    return a new instance.
    """

    __slots__ = ("_checked", "_encoded", "_uri", "items")

    #: All (number, raw value) pairs, sorted by number (read-only by convention).
    items: tuple[tuple[int, bytes], ...]
    #: The options as they go on the wire, filled in by the framing code the first time
    #: this instance is sent (instances never change, so a prebuilt option list sent in
    #: every response is encoded once).
    _encoded: bytes | None
    #: Uri-Host, Uri-Path and Uri-Query, decoded by the first :class:`Request` made of them;
    #: and the last :class:`CriticalOptionCheck` that found them fine (both once per instance).
    _uri: tuple[str | None, tuple[str, ...], tuple[str, ...]] | None
    _checked: object

    def __init__(self, items: Iterable[tuple[int, OptionValue]] = ()) -> None:
        pairs = [(int(number), _encode_value(value)) for number, value in items]
        pairs.sort(key=_number_of)
        self.items = tuple(pairs)
        self._encoded = None
        self._uri = None
        self._checked = None

    @classmethod
    def _from_sorted(cls, items: tuple[tuple[int, bytes], ...]) -> Options:
        """Wrap pairs already sorted by number, already bytes (the decoder's fast path)."""
        instance = object.__new__(cls)
        instance.items = items
        instance._encoded = None
        instance._uri = None
        instance._checked = None
        return instance

    @classmethod
    def build(
        cls,
        *,
        uri_host: str | None = None,
        uri_port: int | None = None,
        uri_path: Iterable[str] = (),
        uri_query: Iterable[str] = (),
        content_format: int | None = None,
        accept: int | None = None,
        max_age: int | None = None,
        observe: int | None = None,
        etag: Iterable[bytes] = (),
        location_path: Iterable[str] = (),
        location_query: Iterable[str] = (),
    ) -> Options:
        """Build options from the common fields by name."""
        items: list[tuple[int, OptionValue]] = []
        if uri_host is not None:
            items.append((OptionNumber.URI_HOST, uri_host))
        if uri_port is not None:
            items.append((OptionNumber.URI_PORT, uri_port))
        items.extend((OptionNumber.URI_PATH, segment) for segment in uri_path)
        items.extend((OptionNumber.URI_QUERY, argument) for argument in uri_query)
        if content_format is not None:
            items.append((OptionNumber.CONTENT_FORMAT, content_format))
        if accept is not None:
            items.append((OptionNumber.ACCEPT, accept))
        if max_age is not None:
            items.append((OptionNumber.MAX_AGE, max_age))
        if observe is not None:
            items.append((OptionNumber.OBSERVE, observe))
        items.extend((OptionNumber.ETAG, tag) for tag in etag)
        items.extend((OptionNumber.LOCATION_PATH, segment) for segment in location_path)
        items.extend((OptionNumber.LOCATION_QUERY, argument) for argument in location_query)
        return cls(items)

    # -- sequence behaviour ---------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Options):
            return self.items == other.items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        shown = ", ".join(f"{_option_name(n)}={v!r}" for n, v in self.items)
        return f"Options({shown})"

    # -- access ---------------------------------------------------------------------------

    def numbers(self) -> list[int]:
        """The distinct option numbers present, in order."""
        seen: list[int] = []
        for number, _ in self.items:
            if not seen or seen[-1] != number:
                seen.append(number)
        return seen

    def __contains__(self, number: object) -> bool:
        return any(n == number for n, _ in self.items)

    def get_all(self, number: int) -> tuple[bytes, ...]:
        """Every raw value of option ``number``, in order."""
        return tuple(value for n, value in self.items if n == number)

    def get(self, number: int) -> bytes | None:
        """The first raw value of option ``number``, or ``None``."""
        for n, value in self.items:
            if n == number:
                return value
            if n > number:
                break
        return None

    def get_uint(self, number: int) -> int | None:
        """The first value of option ``number`` decoded as a uint, or ``None``."""
        value = self.get(number)
        return None if value is None else decode_uint(value)

    def get_string(self, number: int) -> str | None:
        """The first value of option ``number`` decoded as UTF-8, or ``None``."""
        value = self.get(number)
        return None if value is None else value.decode("utf-8")

    # -- modification (new instances) -----------------------------------------------------

    def add(self, number: int, value: OptionValue) -> Options:
        """A copy with one more option (after existing ones of the same number)."""
        return Options((*self.items, (number, value)))

    def replace(self, number: int, *values: OptionValue) -> Options:
        """A copy in which option ``number`` has exactly ``values`` (none removes it)."""
        items = self.items
        before = tuple(pair for pair in items if pair[0] < number)
        after = tuple(pair for pair in items if pair[0] > number)
        middle = tuple((number, _encode_value(value)) for value in values)
        return Options._from_sorted(before + middle + after)

    def remove(self, number: int) -> Options:
        """A copy without option ``number``."""
        return self.replace(number)

    # -- typed views (RFC 7252 section 5.10, RFC 7641, RFC 7959) --------------------------

    @property
    def uri_host(self) -> str | None:
        """Uri-Host (3)."""
        return self.get_string(OptionNumber.URI_HOST)

    @property
    def uri_port(self) -> int | None:
        """Uri-Port (7)."""
        return self.get_uint(OptionNumber.URI_PORT)

    @property
    def uri_path(self) -> tuple[str, ...]:
        """Uri-Path (11) segments."""
        return tuple(v.decode("utf-8") for v in self.get_all(OptionNumber.URI_PATH))

    @property
    def uri_query(self) -> tuple[str, ...]:
        """Uri-Query (15) arguments."""
        return tuple(v.decode("utf-8") for v in self.get_all(OptionNumber.URI_QUERY))

    @property
    def location_path(self) -> tuple[str, ...]:
        """Location-Path (8) segments."""
        return tuple(v.decode("utf-8") for v in self.get_all(OptionNumber.LOCATION_PATH))

    @property
    def location_query(self) -> tuple[str, ...]:
        """Location-Query (20) arguments."""
        return tuple(v.decode("utf-8") for v in self.get_all(OptionNumber.LOCATION_QUERY))

    @property
    def content_format(self) -> int | None:
        """Content-Format (12)."""
        return self.get_uint(OptionNumber.CONTENT_FORMAT)

    @property
    def accept(self) -> int | None:
        """Accept (17)."""
        return self.get_uint(OptionNumber.ACCEPT)

    @property
    def max_age(self) -> int | None:
        """Max-Age (14); ``None`` when absent (the default then is 60 seconds)."""
        return self.get_uint(OptionNumber.MAX_AGE)

    @property
    def observe(self) -> int | None:
        """Observe (6) (RFC 7641)."""
        return self.get_uint(OptionNumber.OBSERVE)

    @property
    def etag(self) -> tuple[bytes, ...]:
        """ETag (4) values."""
        return self.get_all(OptionNumber.ETAG)

    @property
    def block1(self) -> int | None:
        """Block1 (27) raw uint (RFC 7959)."""
        return self.get_uint(OptionNumber.BLOCK1)

    @property
    def block2(self) -> int | None:
        """Block2 (23) raw uint (RFC 7959)."""
        return self.get_uint(OptionNumber.BLOCK2)

    @property
    def size1(self) -> int | None:
        """Size1 (60) (RFC 7959)."""
        return self.get_uint(OptionNumber.SIZE1)

    @property
    def size2(self) -> int | None:
        """Size2 (28) (RFC 7959)."""
        return self.get_uint(OptionNumber.SIZE2)

    @property
    def proxy_uri(self) -> str | None:
        """Proxy-Uri (35)."""
        return self.get_string(OptionNumber.PROXY_URI)

    @property
    def proxy_scheme(self) -> str | None:
        """Proxy-Scheme (39)."""
        return self.get_string(OptionNumber.PROXY_SCHEME)


def _number_of(pair: tuple[int, bytes]) -> int:
    return pair[0]


def _option_name(number: int) -> str:
    spec = OPTION_SPECS.get(number)
    return spec.name if spec else str(number)


EMPTY_OPTIONS = Options()
