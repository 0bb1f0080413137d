"""Write the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Seeds come from the test vectors: the draft's framing examples, the Len-field and option
encoding boundaries and the decoder error cases of tests/core, every hostile input of
tests/hostile/hostile_wire.py, and representative exchanges with the demo site (requests,
observation of /time, block-wise uploads to /store and downloads of /big, signaling) in
the input layout each target reads (see fuzzlib.Reader and the targets' op codes).

Run from anywhere: ``python fuzz/make_corpus.py`` (it replaces the three directories).
Seeds are kept below 4 KiB each, libFuzzer's default maximum input length.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterable

import fuzzlib  # noqa: F401  (puts the checkout on sys.path)
from fuzzlib import (
    CORPUS_ROOT,
    REPO_ROOT,
    Writer,
    opt_path,
    opt_query,
    opt_raw,
    opt_uint,
    write_message,
)

sys.path.insert(0, str(REPO_ROOT / "tests" / "hostile"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "core"))

import fuzz_connection as fc
import fuzz_decoder as fd
import fuzz_protocol as fp
import hostile_wire
import test_core_decoder_errors as decoder_errors
import test_core_framing as framing_vectors

from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

MAX_SEED = 4096
EMPTY_CSM = hostile_wire.EMPTY_CSM

# -- the messages every corpus starts from ------------------------------------------------


def representative_messages() -> list[Message]:
    """Messages from the test vectors plus typical demo-site traffic."""
    messages = [m for m, _ in framing_vectors.DRAFT_VECTORS]
    messages += framing_vectors.WS_CASES
    for length, _, _ in framing_vectors.LEN_BOUNDARIES:
        for token in framing_vectors.TOKENS:
            messages.append(framing_vectors.body_message(length, token)[0])
    for items, _ in framing_vectors.OPTION_VECTORS:
        messages.append(Message(Code.POST, b"\x01", Options(items), b"p"))
    messages += [
        Message(Code.CSM, options=Options([(2, 66048), (4, None)])),
        Message(Code.CSM, options=Options([(2, 1152)])),
        Message(Code.PING, b"", Options([(2, None)])),
        Message(Code.RELEASE, options=Options([(2, "coap+tcp://[::1]"), (4, 30)]), payload=b"bye"),
        Message(Code.ABORT, options=Options([(2, 4)]), payload=b"bad"),
        Message(Code.GET, b"\x01", Options.build(uri_path=["time"], observe=0)),
        Message(Code.GET, b"\x02", Options.build(uri_path=[".well-known", "core"])),
        Message(Code.GET, b"\x03", Options([(11, "big"), (23, 0x16)])),
        Message(Code.PUT, b"\x04", Options([(11, "store"), (27, 0x0E), (60, 3000)]), b"x" * 1024),
        Message(Code.CONTENT, b"\x05", Options([(6, 7), (12, 0), (14, 60)]), b"12:00"),
    ]
    return [m for m in messages if len(encode_frame(m)) <= MAX_SEED - 64]


# -- decoder ------------------------------------------------------------------------------


def decoder_seeds() -> Iterable[tuple[str, bytes]]:
    sizes = fd.MAX_MESSAGE_SIZES
    default = sizes.index(66048)
    for i, message in enumerate(representative_messages()):
        frame = encode_frame(message)
        yield f"vector-{i:03d}", bytes([default, 7]) + frame
        yield f"vector-{i:03d}-bytewise-1152", bytes([sizes.index(1152) | 0x80, 0]) + frame
        ws = encode_ws_frame(message)
        yield f"vector-{i:03d}-ws", bytes([default, 3]) + ws
    stream = b"".join(encode_frame(m) for m in representative_messages()[:12])
    yield "stream-of-vectors", bytes([default, 5]) + stream
    for case in hostile_wire.HOSTILE_CASES:
        yield f"hostile-{case.id}", bytes([default, 9]) + case.data[:MAX_SEED]
    for name, body, _ in decoder_errors.BODY_ERRORS:
        yield f"body-error-{name}", bytes([default, 1]) + b"\x01\x01\x07" + body[:MAX_SEED]
    for name, header, limit, _ in decoder_errors.OVERSIZED_HEADERS:
        index = min(range(len(sizes)), key=lambda j: abs(sizes[j] - limit))
        yield f"oversized-{name}", bytes([index, 2]) + header


# -- connection ---------------------------------------------------------------------------


def _conn_config(*, initiator: bool = False, ws: bool = False, lenient: bool = False) -> int:
    return (
        int(initiator)
        | int(ws) << 1
        | int(lenient) << 2
        | fc.MAX_MESSAGE_SIZES.index(66048) << 3
        | 0x40
    )


def connection_seeds() -> Iterable[tuple[str, bytes]]:
    for ws in (False, True):
        mode = "ws" if ws else "tcp"
        encode = encode_ws_frame if ws else encode_frame
        for initiator in (False, True):
            role = "initiator" if initiator else "acceptor"
            config = _conn_config(initiator=initiator, ws=ws)
            w = Writer().u8(config).u8(0)
            w.u8(fc.OP_RAW).blob(encode(Message(Code.CSM, options=Options([(2, 1152), (4, None)]))))
            write_message(w.u8(fc.OP_MESSAGE), Code.GET, b"\x01", [opt_path(b"hello")])
            w.u8(fc.OP_SEND_RESPONSE)
            write_message(w, Code.CONTENT, b"\x01", payload=b"Hello, world!")
            w.u8(fc.OP_SEND_REQUEST)
            write_message(w, Code.GET, b"\x02", [opt_path(b"time"), opt_uint(6, 0)])
            write_message(
                w.u8(fc.OP_MESSAGE), Code.CONTENT, b"\x02", [opt_uint(6, 7)], payload=b"t"
            )
            write_message(
                w.u8(fc.OP_MESSAGE), Code.PING, b"\x09", [opt_raw(2, b"", signaling=True)]
            )
            w.u8(fc.OP_PONG).u8(0x13).raw(b"\x09")  # custody, 1-byte token
            w.u8(fc.OP_PING).u8(0)
            write_message(w.u8(fc.OP_MESSAGE), Code.PONG)
            w.u8(fc.OP_CSM).u8(0x02).u16(2048)
            w.u8(fc.OP_RELEASE).u8(0x30 | 9).raw(b"127.0.0.1").u16(5)
            write_message(w.u8(fc.OP_MESSAGE), Code.RELEASE)
            w.u8(fc.OP_LOST)
            yield f"{mode}-{role}-exchange", w.bytes()

            w = Writer().u8(config).u8(0)
            w.u8(fc.OP_MESSAGES_SPLIT).u8(2)
            write_message(w, Code.CSM, options=[opt_uint(2, 1152, signaling=True)])
            write_message(w, Code.POST, b"\xaa", [opt_path(b"store")], payload=b"data")
            w.u8(2)
            write_message(w.u8(fc.OP_MESSAGE), Code.ABORT, payload=b"bye")
            yield f"{mode}-{role}-split-then-abort", w.bytes()

        w = Writer().u8(_conn_config(ws=ws, lenient=True)).u8(0)
        write_message(w.u8(fc.OP_MESSAGE), Code.GET, b"\x01", [opt_path(b"hello")])
        w.u8(fc.OP_VIOLATION)
        yield f"{mode}-lenient-get-first", w.bytes()

        w = Writer().u8(_conn_config(ws=ws)).u8(1)
        w.blob(encode(Message(Code.PING, b"\x01")))
        w.u8(fc.OP_ABORT).u8(1).u16(2)
        yield f"{mode}-ping-before-start", w.bytes()

    for case in hostile_wire.HOSTILE_CASES:
        data = case.data[: MAX_SEED - 16]
        w = Writer().u8(_conn_config()).u8(0).u8(fc.OP_RAW).blob(data)
        yield f"hostile-{case.id}", w.bytes()


# -- protocol -----------------------------------------------------------------------------


def _proto_config(
    *, ws: bool = False, limits: int = 0, lenient: bool = False, mms: int = 66048
) -> int:
    return int(ws) | limits << 1 | int(lenient) << 3 | fp.MAX_MESSAGE_SIZES.index(mms) << 4


def _msg(w: Writer, *args: object, **kwargs: object) -> Writer:
    """One OP_MESSAGE op carrying one structured message."""
    w.u8(fp.OP_MESSAGE).u8(0)
    return write_message(w, *args, **kwargs)  # type: ignore[arg-type]


def _csm(w: Writer, mms: int = 65536 + 512) -> Writer:
    return _msg(
        w, Code.CSM, options=[opt_uint(2, mms, signaling=True), opt_raw(4, b"", signaling=True)]
    )


def _clock(w: Writer, seconds: float) -> Writer:
    return w.u8(fp.OP_CLOCK).u8(fp.CLOCK_STEPS.index(seconds))


def protocol_seeds() -> Iterable[tuple[str, bytes]]:
    block_szx6 = 0xC0 + 6  # payload selector: 1024 bytes
    bert_2k = 0xC0 + 29  # payload selector: 2048 bytes
    for ws in (False, True):
        mode = "ws" if ws else "tcp"
        config = _proto_config(ws=ws)

        w = _csm(Writer().u8(config))
        for segment in (b"hello", b"info", b"large", b"nope"):
            _msg(w, Code.GET, segment[:2], [opt_path(segment)])
        _msg(w, Code.GET, b"\x01", [opt_path(b".well-known"), opt_path(b"core")])
        _msg(w, Code.GET, b"\x02", [opt_path(b".well-known"), opt_path(b"core"), opt_query(b"obs")])
        _msg(w, Code.GET, b"\x03", [opt_path(b"big"), opt_query(b"sha256")])
        _msg(w, Code.DELETE, b"\x04", [opt_path(b"hello")])
        _msg(w, Code.GET, b"\x05", [opt_path(b"\xff\xfe")])
        _msg(w, Code.GET, b"\x06", [opt_path(b"hello"), opt_raw(2049, b"x")])
        _msg(w, Code.GET, b"\x07", [opt_raw(35, b"coap://example.com/")])
        yield f"{mode}-requests", w.bytes()

        w = _csm(Writer().u8(config))
        _msg(w, Code.GET, b"\x0b", [opt_uint(6, 0), opt_path(b"time")])
        _clock(w, 1.0)
        _clock(w, 1.0)
        w.u8(fp.OP_PAUSE)
        _clock(w, 2.5)
        w.u8(fp.OP_RESUME)
        _msg(w, Code.GET, b"\x0c", [opt_uint(6, 0), opt_path(b"time")])
        _clock(w, 1.0)
        _msg(w, Code.GET, b"\x0b", [opt_uint(6, 1), opt_path(b"time")])
        _clock(w, 5.0)
        _msg(w, Code.GET, b"\x0d", [opt_uint(6, 0), opt_path(b"hello")])
        yield f"{mode}-observe-time", w.bytes()

        w = _csm(Writer().u8(config), mms=1152)
        for value in (0x0E, 0x1E, 0x26):
            _msg(
                w,
                Code.PUT,
                b"\x21",
                [opt_path(b"store"), opt_uint(27, value)],
                payload_selector=block_szx6,
            )
        for value in (0x06, 0x16, 0x26):
            _msg(w, Code.GET, b"\x22", [opt_path(b"store"), opt_uint(23, value)])
        _msg(w, Code.GET, b"\x23", [opt_path(b"big")])
        _msg(w, Code.GET, b"\x24", [opt_path(b"big"), opt_uint(23, 0x16)])
        _msg(w, Code.GET, b"\x25", [opt_path(b"big"), opt_uint(23, 0x1000)])
        _msg(w, Code.PUT, b"\x26", [opt_path(b"store"), opt_uint(27, 0x1E)], payload=b"x")
        _msg(w, Code.PUT, b"\x27", [opt_path(b"store"), opt_uint(60, 0xFFFFFFFF)])
        yield f"{mode}-blockwise", w.bytes()

        w = _csm(Writer().u8(config))
        _msg(
            w,
            Code.POST,
            b"\x31",
            [opt_path(b"store"), opt_uint(27, 0x0F)],
            payload_selector=bert_2k,
        )
        _msg(w, Code.POST, b"\x31", [opt_path(b"store"), opt_uint(27, 0x27)], payload=b"end")
        _msg(w, Code.GET, b"\x32", [opt_path(b"big"), opt_uint(23, 0x0F)])
        yield f"{mode}-bert", w.bytes()

        w = _csm(Writer().u8(config))
        _msg(w, Code.PING, b"\x41", [opt_raw(2, b"", signaling=True)])
        _msg(w, Code.PING, b"\x42")
        _msg(w, Code.PONG, b"")
        _msg(w, 0xE6, b"")
        w.u8(fp.OP_REQUEST).u8(0x10)
        write_message(w, Code.GET, b"", [opt_path(b"hello")])
        _msg(w, Code.CONTENT, b"\x00\x00\x00\x01", payload=b"hi")  # our first token
        w.u8(fp.OP_PING).u8(0)
        _msg(w, Code.PONG, b"")
        w.u8(fp.OP_PING).u8(2)
        _clock(w, 2.5)
        w.u8(fp.OP_RELEASE)
        _msg(w, Code.GET, b"\x43", [opt_path(b"hello")])
        _msg(w, Code.RELEASE, options=[opt_uint(4, 1, signaling=True)])
        w.u8(fp.OP_CLOSED)
        yield f"{mode}-signaling", w.bytes()

        w = _csm(Writer().u8(config))
        w.u8(fp.OP_OBSERVE)
        write_message(w, Code.GET, b"", [opt_path(b"time")])  # token 00000001
        first = b"\x00\x00\x00\x01"
        _msg(w, Code.CONTENT, first, [opt_uint(6, 1), opt_uint(14, 60)], payload=b"t0")
        _msg(w, Code.CONTENT, first, [opt_uint(6, 2)], payload=b"t1")
        w.u8(fp.OP_OBSERVE)
        write_message(w, Code.GET, b"", [opt_path(b"slow")])  # token 00000002
        _msg(w, Code.CONTENT, b"\x00\x00\x00\x02", [opt_uint(6, 7)], payload=b"s")
        w.u8(fp.OP_CANCEL).u8(1)
        _msg(w, Code.CONTENT, first, [opt_uint(6, 7)], payload=b"late")
        _msg(w, Code.CONTENT, first, payload=b"deregistered")
        _msg(w, Code.NOT_FOUND, b"\x00\x00\x00\x02")
        w.u8(fp.OP_OBSERVE)
        write_message(w, Code.GET, b"", [opt_path(b"hello")])
        _clock(w, 5.0)
        yield f"{mode}-client-observe", w.bytes()

        w = Writer().u8(_proto_config(ws=ws, limits=1))
        _clock(w, 2.5)  # the CSM timeout
        yield f"{mode}-csm-timeout", w.bytes()

        w = _csm(Writer().u8(_proto_config(ws=ws, limits=1)))
        _msg(w, Code.GET, b"\x51", [opt_path(b"time"), opt_uint(6, 0)])
        _msg(w, Code.GET, b"\x52", [opt_path(b"hello")])
        for _ in range(4):
            _clock(w, 2.5)
        _msg(w, Code.PONG)
        _clock(w, 10.0)
        yield f"{mode}-keepalive-idle", w.bytes()

        for limits in (0, 1):
            w = _csm(Writer().u8(_proto_config(ws=ws, limits=limits)))
            _msg(w, Code.GET, b"\x71", [opt_uint(6, 0), opt_path(b"slow")])  # late registration
            _msg(w, Code.GET, b"\x72", [opt_path(b"slow")])  # 4.29 with one allowed
            _msg(w, Code.PING, b"\x73", [opt_raw(2, b"", signaling=True)])  # custody waits
            _clock(w, 1.0)
            _msg(w, Code.PUT, b"\x74", [opt_path(b"slow")], payload=b"new")  # late notification
            _clock(w, 1.0)
            _msg(w, Code.POST, b"\x75", [opt_path(b"slow")])
            _clock(w, 0.5)
            _msg(w, Code.DELETE, b"\x76", [opt_path(b"slow")])  # never answered
            w.u8(fp.OP_RELEASE)
            _clock(w, 10.0)
            yield f"{mode}-slow-limits{limits}", w.bytes()

        w = Writer().u8(_proto_config(ws=ws, lenient=True, mms=1152))
        _msg(w, Code.GET, b"\x61", [opt_path(b"large")])
        if ws:
            w.u8(fp.OP_VIOLATION)
        yield f"{mode}-lenient", w.bytes()

    w = _csm(Writer().u8(_proto_config(limits=3)))
    yield "tcp-refused", w.bytes()

    for case in hostile_wire.HOSTILE_CASES:
        w = Writer().u8(_proto_config()).u8(fp.OP_RAW).blob(case.data[: MAX_SEED - 32])
        _msg(w, Code.GET, b"\x01", [opt_path(b"hello")])
        w.u8(fp.OP_CLOSED)
        yield f"hostile-{case.id}", w.bytes()


# -- writing ------------------------------------------------------------------------------


def write_corpus(name: str, seeds: Iterable[tuple[str, bytes]]) -> int:
    directory = CORPUS_ROOT / name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    seen: set[bytes] = set()
    count = 0
    for seed_name, data in seeds:
        if len(data) > MAX_SEED:
            raise SystemExit(f"seed {name}/{seed_name} is {len(data)} bytes, over {MAX_SEED}")
        digest = hashlib.sha1(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        (directory / seed_name).write_bytes(data)
        count += 1
    return count


def main() -> None:
    for name, seeds in (
        ("decoder", decoder_seeds()),
        ("connection", connection_seeds()),
        ("protocol", protocol_seeds()),
    ):
        count = write_corpus(name, seeds)
        size = sum(p.stat().st_size for p in (CORPUS_ROOT / name).iterdir())
        print(f"{name}: {count} seeds, {size} bytes in {CORPUS_ROOT / name}")


if __name__ == "__main__":
    main()
