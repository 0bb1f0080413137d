"""The IANA "CoAP Content-Formats" registry table (coaptcp.core.contentformats) and the
lookups built from it (coaptcp.core.mediatypes), RFC 7252 section 12.3."""

from __future__ import annotations

import pytest

from coaptcp.core.contentformats import COMPILED, REGISTRY, RESERVED, SOURCE
from coaptcp.core.mediatypes import CONTENT_FORMATS, content_format_name, parse_content_format


def test_the_table_names_its_source_and_date() -> None:
    assert SOURCE.startswith("https://www.iana.org/assignments/core-parameters/")
    assert SOURCE.endswith("#content-formats")
    year, month, day = (int(part) for part in COMPILED.split("-"))
    assert 2025 <= year and 1 <= month <= 12 and 1 <= day <= 31


def test_rows_are_sorted_unique_and_in_range() -> None:
    numbers = [entry.number for entry in REGISTRY]
    assert numbers == sorted(set(numbers))
    assert all(0 <= number <= 0xFFFF for number in numbers)
    assert not any(number in reserved for number in numbers for reserved in RESERVED)
    assert all(entry.media_type and entry.reference for entry in REGISTRY)
    assert len(REGISTRY) >= 70  # the whole registry, not a hand-picked 30


@pytest.mark.parametrize(
    ("number", "media_type"),
    [
        (0, "text/plain; charset=utf-8"),
        (40, "application/link-format"),
        (60, "application/cbor"),
        (257, "application/concise-problem-details+cbor"),
        (310, "application/senml+xml"),
        (311, "application/sensml+xml"),
        (320, "application/senml-etch+json"),
        (322, "application/senml-etch+cbor"),
        (10001, "application/oscore"),
        (11542, "application/vnd.oma.lwm2m+tlv"),
    ],
)
def test_registered_names(number: int, media_type: str) -> None:
    assert content_format_name(number) == media_type
    assert parse_content_format(media_type) == number


def test_unassigned_and_reserved_numbers_are_unknown() -> None:
    for number in (1, 20, 321, 1542, 9999, 65000):
        assert content_format_name(number) == "unknown"
        assert parse_content_format(str(number)) == number  # still usable by number


def test_content_coded_entries_name_their_coding_and_names_mean_identity() -> None:
    assert content_format_name(11050) == "application/json (deflate coded)"
    assert content_format_name(11060) == "application/cbor (deflate coded)"
    assert parse_content_format("application/json") == 50
    assert parse_content_format("application/cbor") == 60


def test_every_uncoded_name_parses_back_to_its_number() -> None:
    for entry in REGISTRY:
        if not entry.coding:
            assert parse_content_format(entry.media_type) == entry.number
            assert CONTENT_FORMATS[entry.number] == entry.media_type
