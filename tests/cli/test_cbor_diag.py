"""CBOR diagnostic notation: RFC 8949 appendix A vectors, malformed input (appendix F),
and the payload pretty-printer and Content-Format names used by the CLI."""

from __future__ import annotations

import json

import cbor2  # an encoder to check our decoder against (installed with autobahn)
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coaptcp.cli.cbordiag import CborError, diagnose
from coaptcp.cli.pretty import describe_option, hexdump, pretty_payload, split_links
from coaptcp.core.mediatypes import content_format_name, parse_content_format

# RFC 8949 appendix A (Examples of Encoded CBOR Data Items): hex, diagnostic notation.
# Where the RFC writes a float in a form Python prints differently (0.00006103515625), the
# value is the same; see test_float_vectors_are_the_rfc_values.
APPENDIX_A = [
    ("00", "0"), ("01", "1"), ("0a", "10"), ("17", "23"), ("1818", "24"), ("1819", "25"),
    ("1864", "100"), ("1903e8", "1000"), ("1a000f4240", "1000000"),
    ("1b000000e8d4a51000", "1000000000000"),
    ("1bffffffffffffffff", "18446744073709551615"),
    ("c249010000000000000000", "2(h'010000000000000000')"),
    ("3bffffffffffffffff", "-18446744073709551616"),
    ("c349010000000000000000", "3(h'010000000000000000')"),
    ("20", "-1"), ("29", "-10"), ("3863", "-100"), ("3903e7", "-1000"),
    ("f90000", "0.0"), ("f98000", "-0.0"), ("f93c00", "1.0"), ("fb3ff199999999999a", "1.1"),
    ("f93e00", "1.5"), ("f97bff", "65504.0"), ("fa47c35000", "100000.0"),
    ("fa7f7fffff", "3.4028234663852886e+38"), ("fb7e37e43c8800759c", "1.0e+300"),
    ("f90001", "5.960464477539063e-8"), ("f90400", "6.103515625e-5"), ("f9c400", "-4.0"),
    ("fbc010666666666666", "-4.1"),
    ("f97c00", "Infinity"), ("f97e00", "NaN"), ("f9fc00", "-Infinity"),
    ("fa7f800000", "Infinity"), ("fa7fc00000", "NaN"), ("faff800000", "-Infinity"),
    ("fb7ff0000000000000", "Infinity"), ("fb7ff8000000000000", "NaN"),
    ("fbfff0000000000000", "-Infinity"),
    ("f4", "false"), ("f5", "true"), ("f6", "null"), ("f7", "undefined"),
    ("f0", "simple(16)"), ("f8ff", "simple(255)"),
    ("c074323031332d30332d32315432303a30343a30305a", '0("2013-03-21T20:04:00Z")'),
    ("c11a514b67b0", "1(1363896240)"), ("c1fb41d452d9ec200000", "1(1363896240.5)"),
    ("d74401020304", "23(h'01020304')"), ("d818456449455446", "24(h'6449455446')"),
    ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", '32("http://www.example.com")'),
    ("40", "h''"), ("4401020304", "h'01020304'"),
    ("60", '""'), ("6161", '"a"'), ("6449455446", '"IETF"'), ("62225c", '"\\"\\\\"'),
    ("62c3bc", '"ü"'), ("63e6b0b4", '"水"'), ("64f0908591", '"𐅑"'),
    ("80", "[]"), ("83010203", "[1, 2, 3]"), ("8301820203820405", "[1, [2, 3], [4, 5]]"),
    ("98190102030405060708090a0b0c0d0e0f101112131415161718181819",
     "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, "
     "24, 25]"),
    ("a0", "{}"), ("a201020304", "{1: 2, 3: 4}"),
    ("a26161016162820203", '{"a": 1, "b": [2, 3]}'),
    ("826161a161626163", '["a", {"b": "c"}]'),
    ("a56161614161626142616361436164614461656145",
     '{"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}'),
    ("5f42010243030405ff", "(_ h'0102', h'030405')"),
    ("7f657374726561646d696e67ff", '(_ "strea", "ming")'),
    ("9fff", "[_ ]"), ("9f018202039f0405ffff", "[_ 1, [2, 3], [_ 4, 5]]"),
    ("9f01820203820405ff", "[_ 1, [2, 3], [4, 5]]"),
    ("83018202039f0405ff", "[1, [2, 3], [_ 4, 5]]"),
    ("83019f0203ff820405", "[1, [_ 2, 3], [4, 5]]"),
    ("bf61610161629f0203ffff", '{_ "a": 1, "b": [_ 2, 3]}'),
    ("826161bf61626163ff", '["a", {_ "b": "c"}]'),
    ("bf6346756ef563416d7421ff", '{_ "Fun": true, "Amt": -2}'),
    # Empty indefinite-length strings (RFC 8949 section 8.1).
    ("5fff", "''_"), ("7fff", '""_'),
]


@pytest.mark.parametrize(("hex_data", "diagnostic"), APPENDIX_A)
def test_appendix_a(hex_data: str, diagnostic: str) -> None:
    assert diagnose(bytes.fromhex(hex_data)) == diagnostic


def test_float_vectors_are_the_rfc_values() -> None:
    assert float(diagnose(bytes.fromhex("f90400"))) == 0.00006103515625
    assert float(diagnose(bytes.fromhex("f90001"))) == 5.960464477539063e-8


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("", "truncated"),
        ("18", "truncated"),
        ("1a0000", "truncated"),
        ("62c3", "truncated"),
        ("83", "truncated"),
        ("9f01", "no break"),
        ("1c", "reserved additional information 28"),
        ("1f", "reserved additional information 31"),
        ("ff", "unexpected break"),
        ("f818", "simple value 24 in two bytes"),
        ("62c328", "not UTF-8"),
        ("5f6161ff", "not a definite string of the same type"),
        ("5f5f4100ffff", "not a definite string of the same type"),
        ("0000", "1 bytes after the data item"),
        ("81" * 300 + "00", "nested deeper"),
    ],
)
def test_malformed(hex_data: str, message: str) -> None:
    with pytest.raises(CborError, match=message):
        diagnose(bytes.fromhex(hex_data))


def test_sequence() -> None:
    assert diagnose(bytes.fromhex("0161618101"), sequence=True) == '1, "a", [1]'
    assert diagnose(b"", sequence=True) == ""


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_cbor_error(data: bytes) -> None:
    try:
        text = diagnose(data, sequence=True)
    except CborError:
        return
    assert isinstance(text, str)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(_JSONISH)
def test_json_like_values_read_back_as_json(value: object) -> None:
    text = diagnose(cbor2.dumps(value))
    # For these types diagnostic notation is JSON, except for null/true/false spelling.
    assert json.loads(text) == value


def test_pretty_layout_breaks_long_containers() -> None:
    # {"a": [0, 1, ..., 39], "b": 1}
    numbers = bytes(range(24)) + b"".join(bytes([0x18, n]) for n in range(24, 40))
    value = b"\xa2" + b"\x61a" + b"\x98\x28" + numbers + b"\x61b" + b"\x01"
    text = diagnose(value, pretty=True)
    lines = text.splitlines()
    assert lines[0] == "{"
    assert lines[-1] == "}"
    assert all(len(line) <= 72 for line in lines)
    assert lines[-2] == '  "b": 1'


# -- pretty payloads ----------------------------------------------------------------------------


def test_pretty_json() -> None:
    assert pretty_payload(b'{"a":[1,2],"b":"\xc3\xbc"}', 50) == \
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "ü"\n}'


def test_pretty_json_that_is_not_json_falls_back_to_text() -> None:
    assert pretty_payload(b"{oops", 50) == "{oops"


def test_pretty_cbor() -> None:
    assert pretty_payload(bytes.fromhex("a26161016162820203"), 60) == '{"a": 1, "b": [2, 3]}'
    assert pretty_payload(bytes.fromhex("0102"), 63) == "1,\n2"


def test_pretty_cbor_that_is_not_cbor_falls_back_to_a_hex_dump() -> None:
    assert pretty_payload(b"\xff\x00", 60) == "00000000  ff 00" + " " * 42 + "  .."


def test_pretty_link_format() -> None:
    document = b'</a>;rt="x,y";title="q\\"uote, comma",</b,c>;ct=0,</d>'
    assert pretty_payload(document, 40).splitlines() == [
        '</a>;rt="x,y";title="q\\"uote, comma"', "</b,c>;ct=0", "</d>"]
    assert split_links("") == []


def test_pretty_text_and_binary() -> None:
    assert pretty_payload(b"hello\n", 0) == "hello"
    assert pretty_payload(b"plain", None) == "plain"
    assert pretty_payload(b"", 50) == ""
    assert pretty_payload(bytes(range(20)), None).splitlines() == [
        "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................",
        "00000010  10 11 12 13" + " " * 36 + "  ....",
    ]
    assert hexdump(b"") == ""


def test_describe_option() -> None:
    assert describe_option(12, b"\x32") == "Content-Format: 50 (application/json)"
    assert describe_option(17, b"") == "Accept: 0 (text/plain; charset=utf-8)"
    assert describe_option(11, b"hello") == "Uri-Path: 'hello'"
    assert describe_option(14, b"\x3c") == "Max-Age: 60"
    assert describe_option(4, b"\x01\x02") == "ETag: 0102"
    assert describe_option(5, b"") == "If-None-Match"
    assert describe_option(23, bytes([0x1E])) == "Block2: block 1, more, size 1024"
    assert describe_option(27, bytes([0x0F])) == "Block1: block 0, more, size 1024 (BERT)"
    assert describe_option(65000, b"\xab") == "Option 65000: ab"
    assert describe_option(11, b"\xff") == "Uri-Path: ff (not UTF-8)"


# -- content formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("50", 50), ("65535", 65535), ("text", 0), ("text/plain", 0),
     ("text/plain; charset=utf-8", 0), ("TEXT/PLAIN;CHARSET=UTF-8", 0), ("json", 50),
     ("application/json", 50), ("cbor", 60), ("application/link-format", 40),
     ("link-format", 40), ("application/senml+cbor", 112), ("octet-stream", 42)],
)
def test_parse_content_format(text: str, number: int) -> None:
    assert parse_content_format(text) == number


@pytest.mark.parametrize(("text", "message"), [("65536", "out of range"),
                                               ("application/nope", "unknown content format"),
                                               ("-1", "unknown content format")])
def test_parse_content_format_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_content_format(text)


def test_content_format_name() -> None:
    assert content_format_name(60) == "application/cbor"
    assert content_format_name(9999) == "unknown"
