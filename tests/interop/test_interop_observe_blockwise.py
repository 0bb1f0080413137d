"""Observe and block-wise transfer (with BERT) against real peers on loopback.

libcoap 4.3.1's ``coap-client-openssl`` and aiocoap 0.4.17 against our ``twistd coaptcp``:
observing the demo clock ``/time`` (RFC 7641, RFC 8323 section 7) until the observation
ends and is gone on our side, and moving 1 MiB both ways with Block2/Block1 (RFC 7959),
BERT where the peer takes it (RFC 8323 section 6).  Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from peers import (
    COMMAND_TIMEOUT,
    HERE,
    RunningPeer,
    aiocoap_client,
    coaptcp_server_argv,
    free_port,
    libcoap_client,
    require_binary,
    run,
    run_server,
)

from coaptcp.tap.demo import BigResource

pytestmark = pytest.mark.interop

MIB = 1 << 20
BIG = BigResource().body
#: How long we poll for an observation to show up or go away on the server.
SETTLE_DEADLINE = 10.0


def uri(peer: RunningPeer, path: str) -> str:
    return f"coap+tcp://127.0.0.1:{peer.port}{path}"


@pytest.fixture(scope="module")
def observed_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp`` serving the demo site plus ``/observers`` (the clock's count)."""
    port = free_port()
    argv = [*coaptcp_server_argv(port), "--resource", "interop_observed_site.make_root"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(HERE))  # for --resource; twistd does not add it
        with run_server(argv, port) as peer:
            yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def observer_count(peer: RunningPeer) -> int:
    result = libcoap_client(uri(peer, "/observers"))
    assert result.returncode == 0, result.stderr
    count: int = json.loads(result.stdout)["time"]
    return count


def wait_for_count(peer: RunningPeer, expected: int) -> None:
    """Poll ``/observers`` until it shows ``expected``; fail after SETTLE_DEADLINE."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    count = observer_count(peer)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = observer_count(peer)
    assert count == expected, f"the clock has {count} observers, not {expected}"


# libcoap's -v 7 log shows each PDU as "v:1 t:CON c:2.05 i:0000 {01} [ options ] :: data".
PDU = re.compile(
    rb"^v:1 t:\w+ c:(?P<code>[\w.]+) i:\w+ \{(?P<token>\w*)\} \[ (?P<options>.*?) \]"
    rb"(?: :: (?P<data>.*))?$",
    re.MULTILINE,
)


#: libcoap logs the response it hands to the application once more after this line.
APP_COPY = b"Client app version of updated PDU"


def pdus(log: bytes, code: bytes) -> list[re.Match[bytes]]:
    """The PDUs with ``code`` that went over the wire (not libcoap's copies for the app)."""
    found = []
    for match in PDU.finditer(log):
        if match.group("code") != code:
            continue
        line_before = log[log.rfind(b"\n", 0, match.start() - 1) + 1 : match.start()]
        if APP_COPY not in line_before:
            found.append(match)
    return found


def option(match: re.Match[bytes], name: bytes) -> bytes | None:
    for item in match.group("options").split(b", "):
        key, _, value = item.partition(b":")
        if key == name:
            return value
    return None


TIME = re.compile(rb"^'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'$")


# -- Observe: libcoap ------------------------------------------------------------------------


def test_libcoap_client_observes_the_clock_and_deregisters(
    observed_server: RunningPeer, tmp_path: Path
) -> None:
    """``coap-client-openssl -s 4``: notifications, then GET Observe=1, and the observation
    is gone on our side afterwards."""
    assert observer_count(observed_server) == 0
    client = childproc.popen(
        [
            require_binary("coap-client-openssl"),
            "-B",
            "10",
            "-s",
            "4",
            "-v",
            "7",
            "-o",
            str(tmp_path / "notifications"),
            uri(observed_server, "/time"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_count(observed_server, 1)
        log, _ = client.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    assert client.returncode == 0, log.decode(errors="replace")
    wait_for_count(observed_server, 0)

    responses = pdus(log, b"2.05")
    # the registration's answer and at least two notifications
    assert len(responses) >= 3, log.decode(errors="replace")
    observes = [option(r, b"Observe") for r in responses]
    assert all(value is not None and value != b"" for value in observes), observes
    numbers = [int(value) for value in observes if value is not None]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert all(option(r, b"Max-Age") == b"1" for r in responses)
    payloads = [r.group("data") or b"" for r in responses]
    assert all(TIME.match(p) for p in payloads), payloads
    assert len(set(payloads)) >= 2, payloads  # the clock moved
    assert {r.group("token") for r in responses} == {responses[0].group("token")}
    # libcoap ends the observation with GET Observe=1 and the same token (RFC 8323 7.4)
    gets = pdus(log, b"GET")
    assert option(gets[0], b"Observe") == b"0"
    cancel = [g for g in gets if option(g, b"Observe") == b"1"]
    assert cancel, log.decode(errors="replace")
    assert cancel[-1].group("token") == responses[0].group("token")


# -- Observe: aiocoap ----------------------------------------------------------------------


def aiocoap_observe(peer: RunningPeer, count: int) -> list[dict[str, object]]:
    result = run(
        [sys.executable, str(HERE / "aiocoap_observer.py"), uri(peer, "/time"), str(count), "15"]
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_aiocoap_observes_the_clock(observed_server: RunningPeer) -> None:
    lines = aiocoap_observe(observed_server, 3)
    assert len(lines) == 3
    assert all(line["code"] == "2.05 Content" for line in lines)
    assert all(line["max_age"] == 1 for line in lines)
    payloads = [line["payload"] for line in lines]
    assert len(set(payloads)) >= 2, payloads  # the clock moved
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(p)) for p in payloads)
    observes = [line["observe"] for line in lines]
    assert all(isinstance(v, int) and v > 0 for v in observes), observes
    assert observes == sorted(observes) and len(set(observes)) == 3, observes  # type: ignore[type-var]
    # aiocoap never sends Observe=1 (INTEROP-NOTES 15): its closed connection ends it
    wait_for_count(observed_server, 0)


# -- Block2: GET /big --------------------------------------------------------------------------


def libcoap_get_big(peer: RunningPeer, tmp_path: Path, *args: str) -> tuple[bytes, bytes]:
    """GET /big with libcoap; returns (body from -o, the -v 7 log)."""
    out = tmp_path / "big.bin"
    result = libcoap_client("-v", "7", "-o", str(out), *args, uri(peer, "/big"))
    assert result.returncode == 0, result.stderr
    return out.read_bytes(), result.stdout + result.stderr


def block2_values(log: bytes) -> list[bytes]:
    """The Block2 options of the 2.05 responses received."""
    return [option(r, b"Block2") or b"" for r in pdus(log, b"2.05")]


def test_libcoap_client_get_big_default(coaptcp_server: RunningPeer, tmp_path: Path) -> None:
    # libcoap announces an 8 MiB Max-Message-Size, so 1 MiB fits in one message.
    body, log = libcoap_get_big(coaptcp_server, tmp_path)
    assert body == BIG
    assert block2_values(log) == [b""]  # one whole message, no Block2


def test_libcoap_client_get_big_in_1024_byte_blocks(
    coaptcp_server: RunningPeer, tmp_path: Path
) -> None:
    body, log = libcoap_get_big(coaptcp_server, tmp_path, "-b", "1024")
    assert body == BIG
    blocks = block2_values(log)
    assert len(blocks) == MIB // 1024
    assert blocks[0] == b"0/M/1024" and blocks[-1] == b"1023/_/1024"
    assert option(pdus(log, b"2.05")[0], b"Size2") == str(MIB).encode()


def test_libcoap_client_get_big_with_bert(coaptcp_server: RunningPeer, tmp_path: Path) -> None:
    # -X 8192: libcoap's CSM says 8192 bytes and Block-Wise-Transfer, so we send BERT
    # blocks of 7 KiB (RFC 8323 section 6), and it asks for the next with NUM += 7.
    body, log = libcoap_get_big(coaptcp_server, tmp_path, "-X", "8192")
    assert body == BIG
    blocks = block2_values(log)
    assert all(b"BERT" in block for block in blocks), blocks[:5]
    assert blocks[0] == b"0/M/BERT(7168)"
    assert blocks[1] == b"7/M/BERT(7168)"
    assert blocks[-1].startswith(b"1022/_/BERT")
    assert len(blocks) == -(-MIB // 7168)
    requests = [option(g, b"Block2") for g in pdus(log, b"GET")]
    assert b"7/_/BERT" in requests


def test_aiocoap_client_get_big(coaptcp_server: RunningPeer) -> None:
    result = aiocoap_client(uri(coaptcp_server, "/big"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == BIG


def test_aiocoap_walks_big_in_bert_blocks(coaptcp_server: RunningPeer) -> None:
    # aiocoap's CSM announces 1 MiB and Block-Wise-Transfer: BERT blocks as large as fit.
    result = run([sys.executable, str(HERE / "aiocoap_blocks.py"), uri(coaptcp_server, "/big")])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["length"] == MIB
    assert report["sha256"] == hashlib.sha256(BIG).hexdigest()
    assert report["size2"] == MIB
    blocks = report["blocks"]
    assert len(blocks) >= 2
    assert all(szx == 7 for _, _, szx, _ in blocks), blocks
    assert all(length % 1024 == 0 and length < MIB for _, _, _, length in blocks), blocks
    assert [more for _, more, _, _ in blocks] == [True] * (len(blocks) - 1) + [False]


def test_big_sha256_matches(coaptcp_server: RunningPeer) -> None:
    result = libcoap_client(uri(coaptcp_server, "/big?sha256"))
    assert result.stdout.decode() == hashlib.sha256(BIG).hexdigest()


# -- Block1: uploading 1 MiB ---------------------------------------------------------------------

UPLOAD = hashlib.shake_256(b"coaptcp upload").digest(MIB)


def get_store(peer: RunningPeer, tmp_path: Path) -> bytes:
    out = tmp_path / "store.bin"
    result = libcoap_client("-o", str(out), uri(peer, "/store"))
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.mark.parametrize(
    ("args", "block_size", "continues"),
    [
        ((), b"BERT", MIB // 65536 - 1),  # 64 KiB BERT messages: our MMS allows them
        (("-b", "1024"), b"1024", MIB // 1024 - 1),
    ],
)
def test_libcoap_client_put_big_then_get_it_back(
    coaptcp_server: RunningPeer,
    tmp_path: Path,
    args: tuple[str, ...],
    block_size: bytes,
    continues: int,
) -> None:
    body = bytes(reversed(UPLOAD)) if args else UPLOAD  # a different body each time
    source = tmp_path / "upload.bin"
    source.write_bytes(body)
    put = libcoap_client(
        "-v", "7", *args, "-m", "put", "-f", str(source), uri(coaptcp_server, "/store")
    )
    assert put.returncode == 0, put.stderr
    log = put.stdout + put.stderr
    continued = pdus(log, b"2.31")
    assert len(continued) == continues
    assert all((option(c, b"Block1") or b"").endswith(b"/M/" + block_size) for c in continued)
    (changed,) = pdus(log, b"2.04")
    final = option(changed, b"Block1") or b""
    assert final.endswith(b"/_/" + block_size), final  # the echo of the last block, M=0
    assert get_store(coaptcp_server, tmp_path) == body


def test_aiocoap_client_post_big_then_get_it_back(
    coaptcp_server: RunningPeer, tmp_path: Path
) -> None:
    body = UPLOAD[::-1][: MIB - 7]  # not a multiple of 1024: a partial last block
    source = tmp_path / "upload.bin"
    source.write_bytes(body)
    post = aiocoap_client("-m", "POST", "--payload", f"@{source}", uri(coaptcp_server, "/store"))
    assert post.returncode == 0, post.stderr
    assert post.stdout.strip() == f"stored {len(body)} bytes".encode()
    got = aiocoap_client(uri(coaptcp_server, "/store"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == body
    assert get_store(coaptcp_server, tmp_path) == body
