"""The decoder's cache of parsed option bytes (``coaptcp.core.framing._PARSED``).

Bodies without a payload are parsed once and their :class:`Options` shared; the cache is
bounded, keeps nothing malformed and nothing with a payload, and what it hands out is
what a fresh parse gives.
"""

from __future__ import annotations

import pytest

from coaptcp.core import framing
from coaptcp.core.codes import Code
from coaptcp.core.errors import MessageFormatError
from coaptcp.core.framing import decode_options, encode_frame, encode_options
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.testing import decode_all


def test_same_option_bytes_give_one_shared_options_instance() -> None:
    options = Options.build(uri_path=["sensors", "t1"], accept=50)
    [first] = decode_all(encode_frame(Message(Code.GET, b"\x01", options)))
    [second] = decode_all(encode_frame(Message(Code.GET, b"\x02\x03", options)))
    assert first.options == options
    assert second.options is first.options
    assert first.token == b"\x01" and second.token == b"\x02\x03"
    assert second.payload == b""


def test_bodies_with_a_payload_are_parsed_afresh_and_not_kept() -> None:
    options = Options.build(uri_path=["upload-not-kept"])
    frame = encode_frame(Message(Code.POST, b"", options, b"value"))
    framing._PARSED.clear()
    [first], [second] = decode_all(frame), decode_all(frame)
    assert first.payload == second.payload == b"value"
    assert first.options == second.options == options
    assert first.options is not second.options
    assert framing._PARSED == {}


def test_a_bytearray_body_is_looked_up_by_its_bytes() -> None:
    body = encode_options(((11, b"bytearray-body"),))
    from_bytes, _ = decode_options(body, 0, len(body))
    from_array, payload = decode_options(bytearray(b"xx" + body), 2, 2 + len(body))
    assert from_array is from_bytes
    assert payload == b""


def test_a_malformed_body_is_not_kept() -> None:
    framing._PARSED.clear()
    with pytest.raises(MessageFormatError):
        decode_options(b"\xbf", 0, 1)  # option length nibble 15 is reserved
    assert framing._PARSED == {}


def test_the_cache_is_bounded() -> None:
    framing._PARSED.clear()
    for i in range(framing._PARSED_ENTRIES * 3):
        body = encode_options(((11, f"p{i}".encode()),))
        options, _ = decode_options(body, 0, len(body))
        assert options.items == ((11, f"p{i}".encode()),)
        assert len(framing._PARSED) <= framing._PARSED_ENTRIES


def test_long_bodies_are_not_kept() -> None:
    framing._PARSED.clear()
    body = encode_options(((11, b"x" * (framing._PARSED_MAX_BODY + 1)),))
    first, _ = decode_options(body, 0, len(body))
    second, _ = decode_options(body, 0, len(body))
    assert first == second and first is not second
    assert framing._PARSED == {}


def test_the_critical_option_check_marks_only_what_it_found_fine() -> None:
    from coaptcp.core.validation import CriticalOptionCheck

    wide = CriticalOptionCheck({11, 15})
    narrow = CriticalOptionCheck({11})
    options = Options([(11, "a"), (15, "q=1")])
    assert wide.first_problem(options) is None
    assert options._checked is wide
    assert wide.first_problem(options) is None
    # Another check (other options understood) looks for itself, and finds Uri-Query.
    problem = narrow.first_problem(options)
    assert problem is not None and problem[0] == 15
    assert narrow.first_problem(options) == problem
    assert options._checked is wide
