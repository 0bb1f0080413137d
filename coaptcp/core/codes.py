"""CoAP message codes (RFC 7252 section 12.1, RFC 8323 section 5.1 / draft-07 section 5.1).

A code is one byte: the class in the top three bits and the detail in the low five,
written ``c.dd``.  :class:`Code` is an :class:`enum.IntEnum` that stays open to values no
registry names yet, so a decoder can hand any byte to it and still ask which class it is.
"""

from __future__ import annotations

import enum

__all__ = ["RESERVED_CLASSES", "Code", "code_from_byte"]

#: Code classes reserved by RFC 7252 section 12.1; a message using one of them is a
#: message format error on reliable transports (RFC 8323 section 5.6).
RESERVED_CLASSES = frozenset({1, 3, 6})


class Code(enum.IntEnum):
    """A CoAP code: request method, response code, signaling code or Empty.

    Unknown values are accepted and become unnamed members (``Code(0x46).name`` is
    ``"UNKNOWN_2_06"``), so ``Code(byte)`` never raises for ``0 <= byte <= 255``.
    """

    EMPTY = 0x00

    # Methods (RFC 7252 section 12.1.1, RFC 8132 section 6).
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    FETCH = 0x05
    PATCH = 0x06
    IPATCH = 0x07

    # Success 2.xx (RFC 7252 section 12.1.2, RFC 7959 section 2.9.1).
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F

    # Client error 4.xx.
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88
    CONFLICT = 0x89
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    UNPROCESSABLE_ENTITY = 0x96
    TOO_MANY_REQUESTS = 0x9D

    # Server error 5.xx.
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    BAD_GATEWAY = 0xA2
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4
    PROXYING_NOT_SUPPORTED = 0xA5
    HOP_LIMIT_REACHED = 0xA8

    # Signaling 7.xx (RFC 8323 section 5.1, draft-07 section 5.1).
    CSM = 0xE1
    PING = 0xE2
    PONG = 0xE3
    RELEASE = 0xE4
    ABORT = 0xE5

    @classmethod
    def _missing_(cls, value: object) -> Code | None:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value >> 5}_{value & 0x1F:02d}"
        member._value_ = value
        return member

    @property
    def code_class(self) -> int:
        """The class, the ``c`` of ``c.dd`` (RFC 7252 section 3)."""
        return self >> 5

    @property
    def detail(self) -> int:
        """The detail, the ``dd`` of ``c.dd`` (RFC 7252 section 3)."""
        return self & 0x1F

    @property
    def dotted(self) -> str:
        """The code written as ``c.dd``, e.g. ``"2.05"``."""
        return f"{self >> 5}.{self & 0x1F:02d}"

    @property
    def is_empty(self) -> bool:
        """0.00, ignored by the recipient on reliable transports (RFC 8323 section 3.4)."""
        return self == 0

    @property
    def is_request(self) -> bool:
        """A method code, 0.01 to 0.31 (RFC 7252 section 5.8)."""
        return 0 < self < 0x20

    @property
    def is_response(self) -> bool:
        """A response code, classes 2, 4 and 5 (RFC 7252 section 5.9)."""
        return (self >> 5) in (2, 4, 5)

    @property
    def is_successful(self) -> bool:
        """A 2.xx response code."""
        return (self >> 5) == 2

    @property
    def is_client_error(self) -> bool:
        """A 4.xx response code."""
        return (self >> 5) == 4

    @property
    def is_server_error(self) -> bool:
        """A 5.xx response code."""
        return (self >> 5) == 5

    @property
    def is_signaling(self) -> bool:
        """A 7.xx signaling code (RFC 8323 section 5)."""
        return (self >> 5) == 7

    @property
    def is_reserved(self) -> bool:
        """In a reserved class (1, 3 or 6): a message format error when received."""
        return (self >> 5) in RESERVED_CLASSES

    def __str__(self) -> str:
        name = self.name or ""
        if name.startswith("UNKNOWN_"):
            return self.dotted
        return f"{self.dotted} {name.replace('_', ' ').title().replace('Ipatch', 'iPATCH')}"


_BY_BYTE: tuple[Code, ...] = tuple(Code(value) for value in range(256))


def code_from_byte(value: int) -> Code:
    """Return the :class:`Code` for one header byte, without the enum lookup cost."""
    return _BY_BYTE[value]
