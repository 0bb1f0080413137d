"""The issue 12 campaign scripts (benchmarks/attacks/, benchmarks/fairness.py) load and start.

The attacks themselves run by hand (they take minutes and judge the server by its RSS and
latency, which has no place in a test).  Here: the modules import, ``--help`` and
``--list`` work as subprocesses, every attack has sizes and a bound, and the scripts' own
CoAP framing agrees with coaptcp's decoder (RFC 8323 section 3.2), so a wrong frame in an
attack cannot pass for a server defect.  No sockets, no timing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import childproc
import pytest
from hostile_wire import decode_all

from coaptcp.core.message import Message

pytestmark = pytest.mark.hostile

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ATTACKS_DIR = BENCHMARKS / "attacks"
SCRIPT_TIMEOUT = 60.0  # seconds for a --help run


def _script(*argv: str) -> subprocess.CompletedProcess[str]:
    return childproc.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleType]:
    """wire, attacks, monitor and run from benchmarks/attacks (which import each other)."""
    sys.path.insert(0, str(ATTACKS_DIR))
    try:
        loaded = {}
        for name in ("wire", "attacks", "monitor", "run"):
            spec = importlib.util.spec_from_file_location(name, ATTACKS_DIR / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded
    finally:
        while str(ATTACKS_DIR) in sys.path:  # run.py adds itself too
            sys.path.remove(str(ATTACKS_DIR))
        for name in ("wire", "attacks", "monitor", "run"):
            sys.modules.pop(name, None)


def test_run_help() -> None:
    done = _script(str(ATTACKS_DIR / "run.py"), "--help")
    assert done.returncode == 0, done.stderr
    assert "--attack" in done.stdout
    assert "--scale" in done.stdout


def test_run_list_names_every_attack(modules: dict[str, ModuleType]) -> None:
    done = _script(str(ATTACKS_DIR / "run.py"), "--list")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line and line[0] != " "}
    assert set(modules["attacks"].ATTACKS) | {"all"} == listed


def test_run_rejects_a_non_loopback_target() -> None:
    done = _script(str(ATTACKS_DIR / "run.py"), "--attack", "amplify", "--target", "10.0.0.1:5683")
    assert done.returncode == 2
    assert "loopback" in done.stderr


def test_run_rejects_an_unknown_attack() -> None:
    done = _script(str(ATTACKS_DIR / "run.py"), "--attack", "nonesuch")
    assert done.returncode == 2
    assert "unknown attack" in done.stderr


def test_fairness_help() -> None:
    done = _script(str(BENCHMARKS / "fairness.py"), "--help")
    assert done.returncode == 0, done.stderr
    assert "--floods" in done.stdout


def test_every_attack_is_complete(modules: dict[str, ModuleType]) -> None:
    attacks = modules["attacks"]
    for name in attacks.CAMPAIGN:
        assert name in attacks.ATTACKS
    for attack in attacks.ATTACKS.values():
        assert attack.bound and attack.what and attack.item in set("12345678")
        small = attack.parameters("small", {})
        full = attack.parameters("full", {})
        assert set(small) == set(full)  # small only changes sizes
        assert 0 < attack.deadline(small) <= attack.deadline(full)


def _decode(data: bytes) -> list[Message]:
    messages, leftover = decode_all(data)
    assert leftover == 0
    return messages


@pytest.mark.parametrize("payload_size", [0, 12, 13, 268, 269, 65804, 65805, 70000])
def test_tcp_frames_decode_with_coaptcp(modules: dict[str, ModuleType], payload_size: int) -> None:
    wire = modules["wire"]
    payload = bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)
    options = [*wire.path_options("/store?x=1"), (wire.REQUEST_TAG, b"\x07"),
               (wire.BLOCK1, wire.block_value(64, True, wire.BERT_SZX))]
    frame = wire.tcp_frame(wire.PUT, b"\x01\x02", options, payload)
    (message,) = _decode(frame)
    assert int(message.code) == wire.PUT
    assert message.token == b"\x01\x02"
    assert message.payload == payload
    opts = message.options
    assert opts.get(wire.REQUEST_TAG) == b"\x07"
    assert opts.get(wire.BLOCK1) == bytes([64 >> 4, (64 & 15) << 4 | 8 | 7])
    assert [v for n, v in opts.items if n == wire.URI_PATH] == [b"store"]
    assert wire.decode_options(wire.message_body(options, payload)) == (
        sorted(options, key=lambda o: o[0]), payload)


def test_signaling_frames(modules: dict[str, ModuleType]) -> None:
    wire = modules["wire"]
    custody_ping = wire.tcp_frame(wire.PING, options=[(wire.CUSTODY, b"")])
    assert custody_ping == b"\x10\xe2\x20"  # 3 bytes, as issue 12 item 4 counts them
    csm = wire.tcp_frame(wire.CSM, options=wire.csm_options(4 * 1024 * 1024, bert=True))
    (message,) = _decode(custody_ping + csm)[1:]
    assert message.options.get(wire.CSM_MAX_MESSAGE_SIZE) == (4 << 20).to_bytes(3, "big")
    assert message.options.get(wire.CSM_BLOCK_WISE_TRANSFER) == b""


def test_frame_counter_across_reads(modules: dict[str, ModuleType]) -> None:
    wire, attacks = modules["wire"], modules["attacks"]
    stream = b"".join([wire.tcp_frame(wire.PONG)] * 3 + [
        wire.tcp_frame(wire.CONTENT, b"S1", payload=b"x" * 300),
        wire.tcp_frame(0x84, b"", payload=b"not found"),
        wire.tcp_frame(wire.ABORT, payload=b"going away"),
    ])
    counter = attacks.FrameCounter()
    counter.watch = {b"S1"}
    for i in range(0, len(stream), 7):  # in pieces that cut headers and bodies
        counter.feed(stream[i : i + 7])
    assert counter.codes() == {"2.05": 1, "4.04": 1, "7.03": 3, "7.05": 1}
    assert counter.tokens == {b"S1": 1}
    assert counter.diagnostics == ["4.04 not found", "7.05 going away"]
    assert not counter.buf


def test_websocket_frames_unmask(modules: dict[str, ModuleType]) -> None:
    wire = modules["wire"]
    for size in (0, 125, 126, 65535, 65536):
        payload = bytes(i % 251 for i in range(size))
        frame = wire.ws_frame(payload)
        assert frame[0] == 0x82 and frame[1] & 0x80  # final binary frame, masked
        length, offset = frame[1] & 127, 2
        if length == 126:
            length, offset = int.from_bytes(frame[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(frame[2:10], "big"), 10
        assert length == size
        key = frame[offset : offset + 4]
        assert wire.mask(frame[offset + 4 :], key) == payload
    message = wire.ws_coap(wire.GET, b"\xaa", wire.path_options("/hello"))
    assert message == b"\x01\x01\xaa\xb5hello"  # Len nibble 0, no length (RFC 8323 4.2)
