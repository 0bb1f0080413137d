"""Shared parts of the fuzz targets: the input reader, structured frames, invariants, main.

Every target is a module with ``test_one_input(data: bytes) -> None`` that raises
:class:`InvariantError` (or lets an unexpected exception escape) when the code under test
misbehaves.  Run as a script (``python fuzz/fuzz_decoder.py [libFuzzer flags] [corpus]``)
a target is driven by atheris (coverage-guided, libFuzzer); imported (the pytest replay of
the committed corpus, ``tests/fuzz``), it is a plain function.

This module must not import :mod:`coaptcp`: a target imports coaptcp inside
:func:`instrumented` so that atheris instruments coaptcp's bytecode for coverage feedback.

Fuzz inputs are read with :class:`Reader`, a small deterministic byte consumer (not
atheris's ``FuzzedDataProvider``), so that ``fuzz/make_corpus.py`` can write structured
seeds and a corpus file means the same thing with or without atheris.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
REPO_ROOT = FUZZ_DIR.parent
CORPUS_ROOT = FUZZ_DIR / "corpus"

# Fuzz the checkout, not whatever coaptcp happens to be installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


class InvariantError(AssertionError):
    """The code under test broke one of the fuzzing invariants."""


def check(condition: object, message: str | Callable[[], str]) -> None:
    """Raise :class:`InvariantError` unless ``condition`` holds (works under ``-O``)."""
    if not condition:
        raise InvariantError(message() if callable(message) else message)


@contextlib.contextmanager
def instrumented(module_name: str) -> Iterator[None]:
    """Instrument coaptcp's bytecode for atheris when the target runs as a fuzzer.

    ``module_name`` is the caller's ``__name__``: only ``__main__`` is instrumented, so
    importing a target (the pytest replay) costs nothing and needs no atheris.
    """
    if module_name != "__main__" or os.environ.get("COAPTCP_FUZZ_NO_INSTRUMENT"):
        yield
        return
    import atheris

    with atheris.instrument_imports(include=["coaptcp"]):
        yield


def fuzz_main(test_one_input: Callable[[bytes], None], corpus_name: str) -> None:
    """Run ``test_one_input`` under atheris with ``sys.argv`` as libFuzzer flags.

    With no corpus directory or file on the command line the committed seed corpus
    (``fuzz/corpus/<corpus_name>``) is used read-only: libFuzzer writes the inputs it
    finds to the first corpus directory given, so name a scratch directory first to keep
    them (see ``fuzz/README.md``).
    """
    import atheris

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        argv.append(str(CORPUS_ROOT / corpus_name))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def corpus_files(corpus_name: str) -> list[Path]:
    """The committed seed inputs of one target, sorted by name."""
    directory = CORPUS_ROOT / corpus_name
    return sorted(p for p in directory.iterdir() if p.is_file())


# -- reading an input ------------------------------------------------------------------------


class Reader:
    """Consumes a fuzz input from the front; past its end every read gives zeros/empty."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.data)

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return self.u8() << 8 | self.u8()

    def u32(self) -> int:
        return self.u16() << 16 | self.u16()

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def blob(self) -> bytes:
        """A length-prefixed chunk: one length byte, ``0xff`` meaning two more bytes."""
        n = self.u8()
        if n == 0xFF:
            n = self.u16()
        return self.take(n)

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.u8() % len(options)]


class Writer:
    """Builds inputs in the format :class:`Reader` reads (for ``make_corpus.py``)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, value: int) -> Writer:
        self.out.append(value & 0xFF)
        return self

    def u16(self, value: int) -> Writer:
        self.out += (value & 0xFFFF).to_bytes(2, "big")
        return self

    def u32(self, value: int) -> Writer:
        self.out += (value & 0xFFFFFFFF).to_bytes(4, "big")
        return self

    def raw(self, data: bytes) -> Writer:
        self.out += data
        return self

    def blob(self, data: bytes) -> Writer:
        if len(data) < 0xFF:
            self.out.append(len(data))
        else:
            if len(data) > 0xFFFF:
                raise ValueError("a blob holds at most 65535 bytes")
            self.out.append(0xFF)
            self.out += len(data).to_bytes(2, "big")
        self.out += data
        return self

    def bytes(self) -> bytes:
        return bytes(self.out)


# -- structured messages -------------------------------------------------------------------
#
# Raw bytes reach the decoder's corners quickly, but a request has to be well-formed for
# the Site, block-wise and observe code to run at all.  A "structured message" op reads a
# compact description and builds the message with the library's own encoder.

#: Codes a structured message picks from (index = byte % len); the last entry means "read
#: one more byte and use it as the code".
CODES: tuple[int, ...] = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,  # GET POST PUT DELETE FETCH PATCH iPATCH
    0x01,
    0x01,
    0x03,  # GET and PUT more often
    0x45,
    0x44,
    0x5F,
    0x84,
    0x8D,
    0x9D,
    0xA0,
    0xA3,  # 2.05 2.04 2.31 4.04 4.13 4.29 5.00 5.03
    0xE1,
    0xE1,
    0xE2,
    0xE3,
    0xE4,
    0xE5,
    0xE6,
    0xE7,  # CSM Ping Pong Release Abort unknown
    0x00,  # Empty
    -1,
)

#: Option numbers a request or response option picks from.
REQUEST_OPTIONS: tuple[int, ...] = (
    11,
    11,
    11,
    11,  # Uri-Path, often
    6,
    6,  # Observe
    27,
    27,
    23,
    23,  # Block1, Block2
    60,
    28,  # Size1, Size2
    12,
    17,
    14,  # Content-Format, Accept, Max-Age
    15,  # Uri-Query
    1,
    3,
    4,
    5,
    7,  # If-Match, Uri-Host, ETag, If-None-Match, Uri-Port
    9,
    35,
    39,  # OSCORE, Proxy-Uri, Proxy-Scheme
    16,
    252,
    258,
    292,  # Hop-Limit, Echo, No-Response, Request-Tag
    2049,
    2048,
    65535,
    65534,  # unknown critical / elective
)

#: Option numbers a signaling option picks from (RFC 8323 section 5: per code).
SIGNALING_OPTION_NUMBERS: tuple[int, ...] = (2, 2, 4, 4, 1, 3, 6, 9, 65535)

#: Uri-Path segments of the demo site, the protocol target's /slow, and a few more.
PATH_SEGMENTS: tuple[bytes, ...] = (
    b"hello",
    b"info",
    b"large",
    b"store",
    b"time",
    b"big",
    b".well-known",
    b"core",
    b"",
    b"nope",
    b"\xff\xfe",
    b"hello",
    b"slow",
)

#: Uri-Query values that mean something to the demo site or /.well-known/core.
QUERIES: tuple[bytes, ...] = (b"sha256", b"rt=demo.clock", b"ct=0", b"title=*", b"obs", b"\xc3")

#: uint option values: sizes, block values (NUM<<4 | M<<3 | SZX), observe values.
UINTS: tuple[int, ...] = (
    0,
    1,
    2,
    6,
    7,
    0x08,
    0x0E,
    0x0F,
    0x16,
    0x1E,
    0x1F,
    0x2E,
    0x2F,
    0x3E,
    0x40,
    0x4E,
    0x100,
    0x400,
    1152,
    4000,
    65536 + 512,
    1 << 20,
    0xFFFFFF,
    0xFFFFFFFF,
    0x10,
    0x18,
    0x26,
    0x36,
    0x27,
    0x1000,
    60,
    16,
)


def read_option_value(reader: Reader, number: int) -> bytes:
    """One option value: a path segment, a query, a uint from :data:`UINTS` or raw bytes."""
    kind = reader.u8()
    mode = kind & 3
    if number == 11 and mode != 3:
        return PATH_SEGMENTS[(kind >> 2) % len(PATH_SEGMENTS)]
    if number == 15 and mode != 3:
        return QUERIES[(kind >> 2) % len(QUERIES)]
    if mode in (0, 1):
        value = UINTS[(kind >> 2) % len(UINTS)]
        return b"" if value == 0 else value.to_bytes((value.bit_length() + 7) // 8, "big")
    if mode == 2:
        return reader.take(kind >> 2)  # up to 63 raw bytes
    n = reader.u8()
    return reader.take(n)


def read_message_parts(reader: Reader) -> tuple[int, bytes, list[tuple[int, bytes]], bytes]:
    """Read (code, token, options, payload) for a structured message.

    Layout: code selector; token length (low nibble, 0-8 used) and option count (high
    nibble); each option's selector and value; payload size selector.
    """
    code = CODES[reader.u8() % len(CODES)]
    if code < 0:
        code = reader.u8()
    shape = reader.u8()
    token = reader.take((shape & 0x0F) % 9)
    count = shape >> 4
    signaling = code >= 0xE0
    options: list[tuple[int, bytes]] = []
    for _ in range(count):
        table = SIGNALING_OPTION_NUMBERS if signaling else REQUEST_OPTIONS
        number = table[reader.u8() % len(table)]
        options.append((number, read_option_value(reader, number)))
    options.sort(key=lambda item: item[0])
    size_selector = reader.u8()
    if size_selector < 0xC0:
        payload = reader.take(size_selector & 0x3F)
    elif size_selector < 0xF0:
        # Block-sized payloads for uploads: 16 << (n % 7) bytes, or 1024 * k (BERT).
        n = size_selector - 0xC0
        size = 16 << (n % 7) if n < 28 else 1024 * (n - 27)
        payload = bytes((i * 31 + n) & 0xFF for i in range(size))
    else:
        payload = bytes(range(256)) * (size_selector - 0xEF)  # up to 4 KiB
    return code, token, options, payload


def build_message(reader: Reader) -> Any:
    """A :class:`coaptcp.core.message.Message` from :func:`read_message_parts`."""
    from coaptcp.core.codes import Code
    from coaptcp.core.message import Message
    from coaptcp.core.options import Options

    code, token, options, payload = read_message_parts(reader)
    return Message(Code(code), token, Options._from_sorted(tuple(options)), payload)


def write_message(
    w: Writer,
    code: int,
    token: bytes = b"",
    options: Sequence[tuple[int, int, bytes | int | None]] = (),
    payload_selector: int = 0,
    payload: bytes = b"",
) -> Writer:
    """Write a structured message in :func:`read_message_parts` layout.

    ``options`` are (table index, value kind byte, extra) triples as the reader reads
    them; use :func:`opt_path`, :func:`opt_uint` and :func:`opt_raw` to build them.
    ``payload`` (at most 63 bytes) is written with selector ``len(payload)`` unless a
    ``payload_selector`` for a generated payload is given.
    """
    if code in CODES:
        w.u8(CODES.index(code))
    else:
        w.u8(len(CODES) - 1).u8(code)
    if len(token) > 8 or len(options) > 15:
        raise ValueError("at most 8 token bytes and 15 options")
    w.u8(len(options) << 4 | len(token)).raw(token)
    for index, kind, extra in options:
        w.u8(index).u8(kind)
        if isinstance(extra, bytes):
            if kind & 3 == 3:
                w.u8(len(extra))
            w.raw(extra)
    if payload_selector:
        w.u8(payload_selector)
    else:
        if len(payload) > 0x3F:
            raise ValueError("an inline payload holds at most 63 bytes")
        w.u8(len(payload)).raw(payload)
    return w


def opt_path(segment: bytes) -> tuple[int, int, None]:
    """A Uri-Path option naming ``segment`` (one of :data:`PATH_SEGMENTS`)."""
    return (REQUEST_OPTIONS.index(11), PATH_SEGMENTS.index(segment) << 2, None)


def opt_query(query: bytes) -> tuple[int, int, None]:
    """A Uri-Query option naming ``query`` (one of :data:`QUERIES`)."""
    return (REQUEST_OPTIONS.index(15), QUERIES.index(query) << 2, None)


def opt_uint(number: int, value: int, *, signaling: bool = False) -> tuple[int, int, None]:
    """An option ``number`` with the uint ``value`` (one of :data:`UINTS`)."""
    table = SIGNALING_OPTION_NUMBERS if signaling else REQUEST_OPTIONS
    return (table.index(number), UINTS.index(value) << 2, None)


def opt_raw(number: int, value: bytes, *, signaling: bool = False) -> tuple[int, int, bytes]:
    """An option ``number`` with raw ``value`` bytes."""
    table = SIGNALING_OPTION_NUMBERS if signaling else REQUEST_OPTIONS
    return (table.index(number), 3, value)


# -- logging -------------------------------------------------------------------------------


class LogWatch:
    """Collects error and critical log events (and failures) from Twisted's logger.

    Observes from creation until :meth:`close`; :meth:`take` returns and clears what was
    collected.
    """

    def __init__(self) -> None:
        from twisted.logger import LogLevel, globalLogPublisher

        self._bad_levels = {LogLevel.error, LogLevel.critical}
        self.events: list[dict[str, Any]] = []
        self._publisher = globalLogPublisher
        globalLogPublisher.addObserver(self)

    def close(self) -> None:
        self._publisher.removeObserver(self)

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event or event.get("log_level") in self._bad_levels:
            self.events.append(event)

    def take(self) -> list[str]:
        from twisted.logger import formatEvent

        out = []
        for event in self.events:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            out.append(text)
        self.events = []
        return out
