"""Message codes: c.dd layout, predicates, reserved classes, open enum.

RFC 7252 section 12.1, RFC 8323 section 5.1.

The expected values are written from COAP-BASICS.md (the registries), not derived from the
implementation: each row gives the dotted form and the test computes the byte from it.
"""

from __future__ import annotations

import pytest

from coaptcp.core.codes import RESERVED_CLASSES, Code, code_from_byte

# (member name, dotted code) -- RFC 7252 12.1, RFC 7959, RFC 8132, RFC 8516, RFC 8768,
# draft-07 section 5.1 (signaling).
NAMED_CODES = [
    ("EMPTY", "0.00"),
    ("GET", "0.01"),
    ("POST", "0.02"),
    ("PUT", "0.03"),
    ("DELETE", "0.04"),
    ("FETCH", "0.05"),
    ("PATCH", "0.06"),
    ("IPATCH", "0.07"),
    ("CREATED", "2.01"),
    ("DELETED", "2.02"),
    ("VALID", "2.03"),
    ("CHANGED", "2.04"),
    ("CONTENT", "2.05"),
    ("CONTINUE", "2.31"),
    ("BAD_REQUEST", "4.00"),
    ("UNAUTHORIZED", "4.01"),
    ("BAD_OPTION", "4.02"),
    ("FORBIDDEN", "4.03"),
    ("NOT_FOUND", "4.04"),
    ("METHOD_NOT_ALLOWED", "4.05"),
    ("NOT_ACCEPTABLE", "4.06"),
    ("REQUEST_ENTITY_INCOMPLETE", "4.08"),
    ("CONFLICT", "4.09"),
    ("PRECONDITION_FAILED", "4.12"),
    ("REQUEST_ENTITY_TOO_LARGE", "4.13"),
    ("UNSUPPORTED_CONTENT_FORMAT", "4.15"),
    ("UNPROCESSABLE_ENTITY", "4.22"),
    ("TOO_MANY_REQUESTS", "4.29"),
    ("INTERNAL_SERVER_ERROR", "5.00"),
    ("NOT_IMPLEMENTED", "5.01"),
    ("BAD_GATEWAY", "5.02"),
    ("SERVICE_UNAVAILABLE", "5.03"),
    ("GATEWAY_TIMEOUT", "5.04"),
    ("PROXYING_NOT_SUPPORTED", "5.05"),
    ("HOP_LIMIT_REACHED", "5.08"),
    ("CSM", "7.01"),
    ("PING", "7.02"),
    ("PONG", "7.03"),
    ("RELEASE", "7.04"),
    ("ABORT", "7.05"),
]


def _byte_of(dotted: str) -> int:
    cls, detail = dotted.split(".")
    return int(cls) << 5 | int(detail)


@pytest.mark.parametrize(("name", "dotted"), NAMED_CODES, ids=[r[0] for r in NAMED_CODES])
def test_named_code_value_class_detail_dotted(name: str, dotted: str) -> None:
    code = Code[name]
    cls, detail = (int(part) for part in dotted.split("."))
    assert int(code) == _byte_of(dotted)
    assert code.code_class == cls
    assert code.detail == detail
    assert code.dotted == dotted
    assert str(code).startswith(dotted + " ")
    assert Code(_byte_of(dotted)) is code


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (Code.CONTENT, "2.05 Content"),
        (Code.NOT_FOUND, "4.04 Not Found"),
        (Code.INTERNAL_SERVER_ERROR, "5.00 Internal Server Error"),
        (Code.IPATCH, "0.07 iPATCH"),
    ],
)
def test_str_of_named_codes(code: Code, text: str) -> None:
    assert str(code) == text


def test_named_codes_are_exactly_the_registry() -> None:
    # Catches a member added with a wrong value (it would show up as an extra name or alias).
    assert set(Code.__members__) == {row[0] for row in NAMED_CODES}
    assert len({int(c) for c in Code}) == len(NAMED_CODES)


def _expected_kind(value: int) -> str:
    cls = value >> 5
    if value == 0:
        return "empty"
    if cls == 0:
        return "request"
    if cls in (2, 4, 5):
        return "response"
    if cls == 7:
        return "signaling"
    assert cls in (1, 3, 6)
    return "reserved"


@pytest.mark.parametrize("value", range(256))
def test_predicates_for_every_byte(value: int) -> None:
    code = Code(value)
    kind = _expected_kind(value)
    cls = value >> 5
    assert code.is_empty == (kind == "empty")
    assert code.is_request == (kind == "request")
    assert code.is_response == (kind == "response")
    assert code.is_signaling == (kind == "signaling")
    assert code.is_reserved == (kind == "reserved")
    assert code.is_successful == (cls == 2)
    assert code.is_client_error == (cls == 4)
    assert code.is_server_error == (cls == 5)
    # Exactly one kind holds for each byte.
    kinds = [code.is_empty, code.is_request, code.is_response, code.is_signaling, code.is_reserved]
    assert sum(kinds) == 1


def test_reserved_classes_constant() -> None:
    assert RESERVED_CLASSES == frozenset({1, 3, 6})


@pytest.mark.parametrize(
    ("value", "name", "dotted", "kind"),
    [
        (0x08, "UNKNOWN_0_08", "0.08", "request"),
        (0x1F, "UNKNOWN_0_31", "0.31", "request"),
        (0x20, "UNKNOWN_1_00", "1.00", "reserved"),
        (0x46, "UNKNOWN_2_06", "2.06", "response"),
        (0x60, "UNKNOWN_3_00", "3.00", "reserved"),
        (0x87, "UNKNOWN_4_07", "4.07", "response"),
        (0xBF, "UNKNOWN_5_31", "5.31", "response"),
        (0xC0, "UNKNOWN_6_00", "6.00", "reserved"),
        (0xDF, "UNKNOWN_6_31", "6.31", "reserved"),
        (0xE0, "UNKNOWN_7_00", "7.00", "signaling"),
        (0xE6, "UNKNOWN_7_06", "7.06", "signaling"),
        (0xFF, "UNKNOWN_7_31", "7.31", "signaling"),
    ],
)
def test_unknown_codes_become_members(value: int, name: str, dotted: str, kind: str) -> None:
    code = Code(value)
    assert isinstance(code, Code)
    assert isinstance(code, int)
    assert code == value
    assert code.name == name
    assert code.value == value
    assert code.dotted == dotted
    assert str(code) == dotted
    assert _expected_kind(value) == kind
    assert code.is_reserved == (kind == "reserved")
    assert code.is_signaling == (kind == "signaling")
    assert hash(code) == hash(value)


def test_code_0x46_example_from_docstring() -> None:
    assert Code(0x46).name == "UNKNOWN_2_06"
    assert Code(0x46).is_successful


@pytest.mark.parametrize("value", [-1, 256, 1000, "1", None])
def test_out_of_range_or_non_int_codes_raise(value: object) -> None:
    with pytest.raises(ValueError):
        Code(value)  # type: ignore[arg-type]


def test_code_from_byte_all_256_values() -> None:
    seen = []
    for value in range(256):
        code = code_from_byte(value)
        assert isinstance(code, Code), value
        assert code == value
        assert code.code_class == value >> 5
        assert code.detail == value & 0x1F
        assert code.dotted == f"{value >> 5}.{value & 0x1F:02d}"
        assert code.name == Code(value).name
        # The cache returns one object per byte.
        assert code_from_byte(value) is code
        seen.append(code)
    assert len(set(seen)) == 256


def test_code_from_byte_returns_canonical_named_members() -> None:
    for _, dotted in NAMED_CODES:
        value = _byte_of(dotted)
        assert code_from_byte(value) is Code(value)
