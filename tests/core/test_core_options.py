"""Options: uint codec, option-number property bits, the immutable sorted Options list.

RFC 7252 sections 3.2, 5.4.6, 5.10; RFC 7641, RFC 7959, RFC 8613, RFC 8768, RFC 7967, RFC 9175.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coaptcp.core.options import (
    OPTION_SPECS,
    OptionNumber,
    Options,
    decode_uint,
    encode_uint,
    is_critical,
    is_no_cache_key,
    is_unsafe,
)

# -- uint codec ----------------------------------------------------------------------------

UINT_VECTORS = [
    (0, b""),
    (1, b"\x01"),
    (0x7F, b"\x7f"),
    (0xFF, b"\xff"),
    (0x100, b"\x01\x00"),
    (0xFFFF, b"\xff\xff"),
    (0x10000, b"\x01\x00\x00"),
    (1152, b"\x04\x80"),
    (0xFFFFFF, b"\xff\xff\xff"),
    (0x1000000, b"\x01\x00\x00\x00"),
    (0xFFFFFFFF, b"\xff\xff\xff\xff"),
    (0x100000000, b"\x01\x00\x00\x00\x00"),
]


@pytest.mark.parametrize(("value", "encoded"), UINT_VECTORS)
def test_uint_shortest_form(value: int, encoded: bytes) -> None:
    assert encode_uint(value) == encoded
    assert decode_uint(encoded) == value


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\x00", 0),
        (b"\x00\x00\x00\x00", 0),
        (b"\x00\x01", 1),
        (b"\x00\x00\x01", 1),
        (b"\x00\x01\x00", 256),
        (b"\x00\x00\x04\x80", 1152),
    ],
)
def test_uint_decode_accepts_leading_zeros(encoded: bytes, value: int) -> None:
    assert decode_uint(encoded) == value


@pytest.mark.parametrize("value", [-1, -255, -(2**32)])
def test_uint_negative_raises(value: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_uint(value)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_uint_round_trip_is_shortest(value: int) -> None:
    encoded = encode_uint(value)
    assert decode_uint(encoded) == value
    assert not encoded.startswith(b"\x00")
    assert len(encoded) == (value.bit_length() + 7) // 8


# -- option numbers -------------------------------------------------------------------------

# (number, member name, critical, unsafe, no-cache-key), written from the C/U/N columns of
# the registry tables in RFC 7252 5.10, RFC 7641 2, RFC 7959 2.1/4, RFC 8613 2,
# RFC 8768 3, RFC 7967 2, RFC 9175 2.2/3.2.  (N is only meaningful for safe options.)
KNOWN_OPTIONS = [
    (1, "IF_MATCH", True, False, False),
    (3, "URI_HOST", True, True, False),
    (4, "ETAG", False, False, False),
    (5, "IF_NONE_MATCH", True, False, False),
    (6, "OBSERVE", False, True, False),
    (7, "URI_PORT", True, True, False),
    (8, "LOCATION_PATH", False, False, False),
    (9, "OSCORE", True, False, False),
    (11, "URI_PATH", True, True, False),
    (12, "CONTENT_FORMAT", False, False, False),
    (14, "MAX_AGE", False, True, False),
    (15, "URI_QUERY", True, True, False),
    (16, "HOP_LIMIT", False, False, False),
    (17, "ACCEPT", True, False, False),
    (20, "LOCATION_QUERY", False, False, False),
    (23, "BLOCK2", True, True, False),
    (27, "BLOCK1", True, True, False),
    (28, "SIZE2", False, False, True),
    (35, "PROXY_URI", True, True, False),
    (39, "PROXY_SCHEME", True, True, False),
    (60, "SIZE1", False, False, True),
    (252, "ECHO", False, False, True),
    (258, "NO_RESPONSE", False, True, False),
    (292, "REQUEST_TAG", False, False, False),
]


@pytest.mark.parametrize(
    ("number", "name", "critical", "unsafe", "no_cache_key"),
    KNOWN_OPTIONS,
    ids=[row[1] for row in KNOWN_OPTIONS],
)
def test_known_option_number_bits(
    number: int, name: str, critical: bool, unsafe: bool, no_cache_key: bool
) -> None:
    option = OptionNumber(number)
    assert option is OptionNumber[name]
    assert option.is_critical is critical
    assert option.is_elective is (not critical)
    assert option.is_unsafe is unsafe
    assert option.is_no_cache_key is no_cache_key
    # The module-level helpers agree with the member properties.
    assert is_critical(number) is critical
    assert is_unsafe(number) is unsafe
    assert is_no_cache_key(number) is no_cache_key
    # Every named option has a registry entry.
    assert number in OPTION_SPECS


def test_option_members_are_exactly_the_table() -> None:
    assert {(m.value, m.name) for m in OptionNumber} == {(r[0], r[1]) for r in KNOWN_OPTIONS}
    assert set(OPTION_SPECS) == {r[0] for r in KNOWN_OPTIONS}


@pytest.mark.parametrize(
    ("number", "critical", "unsafe", "no_cache_key"),
    [
        (0, False, False, False),
        (2, False, True, False),
        (13, True, False, False),
        (0x1C + 0x20, False, False, True),  # 60 is Size1; 0x1c | 0x40 = 92 is unknown
        (92, False, False, True),
        (1000, False, False, False),  # 0b1111101000
        (2012, False, False, True),  # 0b11111011100: bits 2-4 set, bit 1 clear
        (2049, True, False, False),
        (65000, False, False, False),  # 0xFDE8
        (65534, False, True, False),  # 0xFFFE
        (65535, True, True, False),
    ],
)
def test_unknown_option_numbers_are_members_with_bits(
    number: int, critical: bool, unsafe: bool, no_cache_key: bool
) -> None:
    option = OptionNumber(number)
    assert isinstance(option, OptionNumber)
    assert option == number
    if number not in {r[0] for r in KNOWN_OPTIONS}:
        assert option.name == f"OPTION_{number}"
    assert option.is_critical is critical
    assert option.is_unsafe is unsafe
    assert option.is_no_cache_key is no_cache_key


@pytest.mark.parametrize("number", [-1, -65535])
def test_negative_option_numbers_raise(number: int) -> None:
    with pytest.raises(ValueError):
        OptionNumber(number)


# -- Options container ----------------------------------------------------------------------


def test_options_sorted_and_stable_for_repeats() -> None:
    opts = Options(
        [
            (11, "b"),
            (3, "host"),
            (11, "a"),
            (1, b"\x01"),
            (15, "q=1"),
            (11, "c"),
            (1, b"\x02"),
        ]
    )
    assert opts.items == (
        (1, b"\x01"),
        (1, b"\x02"),
        (3, b"host"),
        (11, b"b"),
        (11, b"a"),
        (11, b"c"),
        (15, b"q=1"),
    )
    assert list(opts) == list(opts.items)
    assert len(opts) == 7
    assert opts.numbers() == [1, 3, 11, 15]


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (None, b""),
        (b"\x00\x01", b"\x00\x01"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
        ("", b""),
        ("caf\u00e9", "caf\u00e9".encode()),
        (0, b""),
        (1, b"\x01"),
        (300, b"\x01\x2c"),
        (OptionNumber.URI_PATH, b"\x0b"),  # an IntEnum is an int
    ],
)
def test_option_value_encoding(value: object, raw: bytes) -> None:
    opts = Options([(11, value)])  # type: ignore[list-item]
    assert opts.items == ((11, raw),)
    assert type(opts.items[0][1]) is bytes
    assert type(opts.items[0][0]) is int


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        (1.5, TypeError),
        (object(), TypeError),
        (-1, ValueError),
    ],
)
def test_option_value_rejected(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        Options([(12, value)])  # type: ignore[list-item]


def test_option_numbers_are_stored_as_plain_ints() -> None:
    a = Options([(OptionNumber.URI_PATH, "x")])
    b = Options([(11, "x")])
    assert a == b
    assert hash(a) == hash(b)
    assert type(a.items[0][0]) is int


# (option list, attribute, expected value)
TYPED_VIEWS = [
    ([], "uri_host", None),
    ([(3, "example.com")], "uri_host", "example.com"),
    ([], "uri_port", None),
    ([(7, 5683)], "uri_port", 5683),
    ([(7, b"")], "uri_port", 0),
    ([], "uri_path", ()),
    ([(11, "a"), (11, ""), (11, "b c")], "uri_path", ("a", "", "b c")),
    ([], "uri_query", ()),
    ([(15, "x=1"), (15, "y")], "uri_query", ("x=1", "y")),
    ([(8, "new"), (8, "res")], "location_path", ("new", "res")),
    ([], "location_path", ()),
    ([(20, "a=b")], "location_query", ("a=b",)),
    ([], "location_query", ()),
    ([], "content_format", None),
    ([(12, 0)], "content_format", 0),  # text/plain is the empty value
    ([(12, b"\x00\x32")], "content_format", 50),  # leading zero accepted
    ([(12, 60)], "content_format", 60),
    ([(12, 11050)], "content_format", 11050),
    ([], "accept", None),
    ([(17, 50)], "accept", 50),
    ([], "max_age", None),
    ([(14, 0)], "max_age", 0),
    ([(14, 0xFFFFFFFF)], "max_age", 0xFFFFFFFF),
    ([], "observe", None),
    ([(6, b"")], "observe", 0),  # present and empty: register, not "absent"
    ([(6, 1)], "observe", 1),
    ([(6, 0xFFFFFF)], "observe", 0xFFFFFF),
    ([], "etag", ()),
    ([(4, b"\x01"), (4, b"\x02\x03")], "etag", (b"\x01", b"\x02\x03")),
    ([], "block1", None),
    ([(27, 0)], "block1", 0),
    ([(27, (5 << 4) | 8 | 6)], "block1", (5 << 4) | 8 | 6),
    ([], "block2", None),
    ([(23, 0x0F)], "block2", 0x0F),
    ([(23, (0xFFFFF << 4) | 7)], "block2", (0xFFFFF << 4) | 7),
    ([], "size1", None),
    ([(60, 1048576)], "size1", 1048576),
    ([], "size2", None),
    ([(28, 0)], "size2", 0),
    ([(28, 4711)], "size2", 4711),
    ([], "proxy_uri", None),
    ([(35, "coap://h/p")], "proxy_uri", "coap://h/p"),
    ([], "proxy_scheme", None),
    ([(39, "coap+tcp")], "proxy_scheme", "coap+tcp"),
]


@pytest.mark.parametrize(
    ("items", "attribute", "expected"),
    TYPED_VIEWS,
    ids=[f"{row[1]}-{i}" for i, row in enumerate(TYPED_VIEWS)],
)
def test_typed_views(items: list, attribute: str, expected: object) -> None:
    # Surround the option with unrelated ones so the views must pick the right number.
    noise = [(1, b"\xee"), (2, b"\xee"), (13, b"\xee"), (61, b"\xee"), (65535, b"\xee")]
    assert getattr(Options(items + noise), attribute) == expected
    assert getattr(Options(items), attribute) == expected


def test_repeated_non_repeatable_views_give_the_first() -> None:
    opts = Options([(12, 50), (12, 60), (3, "first"), (3, "second")])
    assert opts.content_format == 50
    assert opts.uri_host == "first"
    assert opts.get(12) == b"\x32"
    assert opts.get_all(12) == (b"\x32", b"\x3c")


def test_access_helpers() -> None:
    opts = Options([(11, "a"), (11, "b"), (12, 50), (60, 0)])
    assert 11 in opts
    assert 60 in opts
    assert 12 in opts
    assert 13 not in opts
    assert 0 not in opts
    assert opts.get(13) is None
    assert opts.get(60) == b""
    assert opts.get_uint(60) == 0
    assert opts.get_uint(13) is None
    assert opts.get_string(11) == "a"
    assert opts.get_string(14) is None
    assert opts.get_all(13) == ()
    assert opts.numbers() == [11, 12, 60]


def test_empty_options() -> None:
    assert not Options()
    assert len(Options()) == 0
    assert Options().items == ()
    assert Options([(1, b"")])


def test_add_returns_new_instance_and_appends_after_same_number() -> None:
    base = Options([(11, "a"), (15, "q")])
    added = base.add(11, "b")
    assert added.items == ((11, b"a"), (11, b"b"), (15, b"q"))
    assert base.items == ((11, b"a"), (15, b"q"))
    assert added is not base
    assert base.add(3, "h").items == ((3, b"h"), (11, b"a"), (15, b"q"))
    assert base.add(100, 7).items[-1] == (100, b"\x07")


def test_replace_and_remove_return_new_instances() -> None:
    base = Options([(3, "h"), (11, "a"), (11, "b"), (15, "q")])
    snapshot = base.items
    replaced = base.replace(11, "x", "y", "z")
    assert replaced.items == ((3, b"h"), (11, b"x"), (11, b"y"), (11, b"z"), (15, b"q"))
    assert base.replace(11).items == ((3, b"h"), (15, b"q"))
    assert base.remove(11) == base.replace(11)
    assert base.remove(3).items == ((11, b"a"), (11, b"b"), (15, b"q"))
    assert base.remove(99) == base
    assert base.replace(12, 50).content_format == 50
    # The original never changes.
    assert base.items == snapshot


def test_options_are_immutable() -> None:
    opts = Options([(11, "a")])
    with pytest.raises(AttributeError):
        opts.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        opts.items[0] = (12, b"")  # type: ignore[index]
    assert isinstance(opts.items, tuple)


def test_equality_and_hash() -> None:
    a = Options([(11, "a"), (3, "h"), (12, 50)])
    b = Options([(3, "h"), (12, 50), (11, "a")])  # same options, other insertion order
    c = Options([(3, "h"), (11, "a"), (12, 0x32)])
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert len({a, b, c}) == 1
    assert {a: 1}[b] == 1
    # Order of repeats matters (Uri-Path a/b is not b/a).
    assert Options([(11, "a"), (11, "b")]) != Options([(11, "b"), (11, "a")])
    # Raw bytes matter: leading zeros are a different encoding.
    assert Options([(12, b"\x00\x32")]) != Options([(12, 50)])
    assert Options([(12, 50)]) != Options([(12, 51)])
    assert Options() == Options([])
    assert (Options() == ()) is False
    assert (Options([(1, b"")]) != [(1, b"")]) is True


def test_build_all_fields() -> None:
    opts = Options.build(
        uri_host="example.com",
        uri_port=5683,
        uri_path=["a", "b"],
        uri_query=["x=1", "y"],
        content_format=50,
        accept=60,
        max_age=0,
        observe=0,
        etag=[b"\x01", b"\x02"],
        location_path=["new"],
        location_query=["k=v"],
    )
    assert opts.items == (
        (3, b"example.com"),
        (4, b"\x01"),
        (4, b"\x02"),
        (6, b""),
        (7, b"\x16\x33"),
        (8, b"new"),
        (11, b"a"),
        (11, b"b"),
        (12, b"\x32"),
        (14, b""),
        (15, b"x=1"),
        (15, b"y"),
        (17, b"\x3c"),
        (20, b"k=v"),
    )
    assert opts.observe == 0
    assert opts.max_age == 0
    assert opts.uri_path == ("a", "b")
    assert opts.uri_port == 5683


def test_build_defaults_are_absent() -> None:
    assert Options.build() == Options()
    only_path = Options.build(uri_path=("x",))
    assert only_path.items == ((11, b"x"),)
    assert only_path.observe is None
    assert only_path.content_format is None


def test_repr_names_known_options() -> None:
    text = repr(Options([(11, "a"), (61, b"\x01")]))
    assert "Uri-Path" in text
    assert "61" in text
