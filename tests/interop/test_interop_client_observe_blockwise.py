"""Our client observing and moving 1 MiB bodies against real peers on loopback.

The Client library (``coaptcp_transfer_client.py``) and the installed ``coaptcp-client``
against ``twistd coaptcp``, libcoap 4.3.1's ``coap-server-openssl`` and an aiocoap 0.4.17
server (``aiocoap_observed_peer.py``): Observe with deregistration by GET Observe=1 and
the same token (RFC 8323 section 7.4), Block2 downloads and Block1 uploads with and without
BERT (RFC 7959, RFC 8323 section 6).  Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import childproc
import pytest
from peers import (
    COMMAND_TIMEOUT,
    HERE,
    Completed,
    Reader,
    RunningPeer,
    cli_path,
    coaptcp_server_argv,
    free_port,
    run,
    run_server,
    wait_for_output,
)

from coaptcp.core.codes import Code
from coaptcp.core.framing import encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.tap.demo import BigResource

pytestmark = pytest.mark.interop

MIB = 1 << 20
BIG_SHA256 = hashlib.sha256(BigResource().body).hexdigest()
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def at(peer: RunningPeer, path: str) -> str:
    return f"coap+tcp://127.0.0.1:{peer.port}{path}"


def library(*args: str) -> dict[str, Any]:
    result = run([sys.executable, str(HERE / "coaptcp_transfer_client.py"), *args])
    assert result.returncode == 0, (result.stdout.decode(), result.stderr.decode())
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    report: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


def cli(*args: str) -> Completed:
    result = run([cli_path(), *args])
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


@pytest.fixture(scope="module")
def observed_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp``: the demo site plus ``/observers`` (the clock's observer count)."""
    port = free_port()
    argv = [*coaptcp_server_argv(port), "--resource", "interop_observed_site.make_root"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(HERE))
        with run_server(argv, port) as peer:
            yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def aiocoap_observed() -> Iterator[RunningPeer]:
    port = free_port()
    with run_server([sys.executable, str(HERE / "aiocoap_observed_peer.py"), str(port)],
                    port) as peer:
        yield peer


def block_sizes(messages: list[dict[str, Any]], option: str) -> set[int]:
    return {message[option][2] for message in messages if message[option] is not None}


# -- Observe -----------------------------------------------------------------------------------


def test_library_observes_our_clock_and_deregisters(observed_server: RunningPeer) -> None:
    report = library("observe", at(observed_server, "/time"), "3",
                     at(observed_server, "/observers"))
    notifications = report["notifications"]
    assert len(notifications) == 3
    assert all(n["code"] == "2.05" and TIME.fullmatch(n["payload"]) for n in notifications)
    assert len({n["payload"] for n in notifications}) == 3  # one per second
    assert report["end_reason"] == "cancelled"
    # The deregistration (GET Observe=1, same token) removed it while the connection
    # was still open: the same connection then asked how many observers remain.
    assert json.loads(report["observers_after_cancel"]) == {"time": 0}
    assert report["observing"] == 0  # its answer arrived: the token is free
    assert report["connections_made"] == 1


def test_library_observes_aiocoap_and_deregisters(aiocoap_observed: RunningPeer) -> None:
    report = library("observe", at(aiocoap_observed, "/time"), "4",
                     at(aiocoap_observed, "/observers"))
    notifications = report["notifications"]
    assert len(notifications) == 4
    # aiocoap's first response carries Observe=0, an empty option on the wire: it still
    # counts (RFC 8323 section 7.1: the value is ignored).
    assert notifications[0]["observe"] == ""
    assert [n["observe"] for n in notifications[1:]] == ["01", "02", "03"]
    ticks = [int(n["payload"].split()[1]) for n in notifications]
    assert ticks == sorted(ticks) and len(set(ticks)) == 4
    assert report["observers_after_cancel"] == "0"
    assert report["observing"] == 0


def test_cli_observe_count_3(observed_server: RunningPeer) -> None:
    result = cli("--observe", "--count", "3", at(observed_server, "/time"))
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3 and all(TIME.fullmatch(line) for line in lines), lines
    assert result.stderr == b""


def test_cli_observe_ctrl_c_deregisters_and_exits_0() -> None:
    # A raw server that records what the CLI sends: after SIGINT the CLI must send GET
    # Observe=1 with the registration's token, wait for its answer, and exit 0.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(COMMAND_TIMEOUT)
        port = listener.getsockname()[1]
        process = childproc.popen([cli_path(), "--observe", f"coap+tcp://127.0.0.1:{port}/t"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(COMMAND_TIMEOUT)
                messages = Reader(connection)
                assert messages.next().code == Code.CSM
                register = messages.next()
                assert (register.code, register.options.observe) == (Code.GET, 0)
                token = register.token
                connection.sendall(encode_frame(Message(Code.CSM)) + b"".join(
                    encode_frame(Message(Code.CONTENT, token, Options([(6, n)]), b"n%d" % n))
                    for n in (1, 2)
                ))
                printed = wait_for_output(process, b"n1\nn2\n")
                process.send_signal(signal.SIGINT)
                cancel = messages.next()
                assert (cancel.code, cancel.token, cancel.options.observe) == (
                    Code.GET, token, 1
                )
                assert cancel.options.uri_path == ("t",)
                connection.sendall(encode_frame(Message(Code.CONTENT, token, payload=b"bye")))
                process.wait(timeout=COMMAND_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.stdout is not None and process.stderr is not None
    out, err = printed + process.stdout.read(), process.stderr.read()
    assert process.returncode == 0, err.decode()
    assert out == b"n1\nn2\n"
    assert b"Traceback" not in err


# -- our server ------------------------------------------------------------------------------


def test_library_downloads_big_from_our_server_with_bert(observed_server: RunningPeer) -> None:
    report = library("get", at(observed_server, "/big"))
    assert (report["code"], report["length"], report["sha256"]) == ("2.05", MIB, BIG_SHA256)
    # Our CSM allows 66,048 bytes with Block-Wise-Transfer: 16 BERT blocks of 64 KiB.
    assert report["progress"] == 16 and report["last_progress"] == [MIB, MIB]
    assert block_sizes(report["messages"][1:], "block2") == {7}


def test_library_downloads_big_in_1024_byte_blocks(observed_server: RunningPeer) -> None:
    report = library("get", at(observed_server, "/big"), "1024")
    assert (report["length"], report["sha256"]) == (MIB, BIG_SHA256)
    assert report["progress"] == 1024
    assert block_sizes(report["messages"], "block2") == {6}


@pytest.mark.parametrize(("block_size", "messages", "szx"), [(None, 16, 7), ("1024", 1024, 6)])
def test_library_uploads_1_mib_to_our_server(
    observed_server: RunningPeer, block_size: str | None, messages: int, szx: int
) -> None:
    args = [block_size] if block_size else []
    report = library("roundtrip", at(observed_server, "/store"), str(MIB), *args)
    assert (report["put_code"], report["get_code"], report["same"]) == ("2.04", "2.05", True)
    put = report["put_messages"]
    assert block_sizes(put, "block1") == {szx}
    assert put[0]["size1"] == MIB
    # BERT messages are sized to our server's 66,048-byte limit (64 KiB plus 512 bytes
    # of room for the header), so 1 MiB takes 16 of them.
    assert len(put) == messages
    assert report["put_last_progress"] == [MIB, MIB]


def test_cli_downloads_and_uploads_big(observed_server: RunningPeer, tmp_path: Path) -> None:
    got = cli(at(observed_server, "/big"))
    assert got.returncode == 0 and hashlib.sha256(got.stdout).hexdigest() == BIG_SHA256
    assert got.stderr == b""  # no warning, and no progress bar off a terminal
    body = hashlib.shake_256(b"cli upload").digest(MIB + 123)
    source = tmp_path / "body.bin"
    source.write_bytes(body)
    put = cli("-m", "put", "-f", str(source), at(observed_server, "/store"))
    assert put.returncode == 0, put.stderr.decode()
    assert cli(at(observed_server, "/store")).stdout == body


# -- libcoap's server ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block_size", "put_szx", "put_messages", "get_szx"),
    [
        # libcoap announces 8 MiB: 1 MiB goes up whole; it answers GET in BERT blocks
        # sized to our 66,048 bytes.
        (None, set(), 1, {7}),
        ("1024", {6}, 1024, {6}),  # 1024-byte blocks both ways
        ("8192", {7}, 128, {7}),  # BERT messages of 8 KiB up
    ],
)
def test_library_roundtrip_with_libcoap(
    libcoap_server: RunningPeer,
    block_size: str | None,
    put_szx: set[int],
    put_messages: int,
    get_szx: set[int],
) -> None:
    args = [block_size] if block_size else []
    report = library("roundtrip", at(libcoap_server, f"/coaptcp-{block_size}"), str(MIB),
                     *args)
    assert report["peer"] == {"max_message_size": 8388864, "bert": True}
    assert (report["put_code"], report["get_code"]) == ("2.01", "2.05")
    assert report["same"] and report["length"] == MIB
    assert block_sizes(report["put_messages"], "block1") == put_szx
    assert len(report["put_messages"]) == put_messages
    assert block_sizes(report["get_messages"][1:], "block2") == get_szx
    assert len(report["get_messages"]) > 1  # libcoap sent the body in blocks


# -- an aiocoap server ---------------------------------------------------------------------------


def test_library_downloads_1_mib_from_aiocoap(aiocoap_observed: RunningPeer) -> None:
    report = library("get", at(aiocoap_observed, "/mib"))
    assert (report["code"], report["length"], report["sha256"]) == ("2.05", MIB, BIG_SHA256)


def test_library_downloads_1_mib_from_aiocoap_in_blocks(aiocoap_observed: RunningPeer) -> None:
    report = library("get", at(aiocoap_observed, "/mib"), "1024")
    assert (report["length"], report["sha256"]) == (MIB, BIG_SHA256)
    assert report["progress"] == 1024
    assert block_sizes(report["messages"], "block2") == {6}


def test_library_uploads_1_mib_to_aiocoap(aiocoap_observed: RunningPeer) -> None:
    # aiocoap announces exactly 1 MiB with Block-Wise-Transfer: 1 MiB plus the header does
    # not fit, so it goes up in BERT messages.
    report = library("roundtrip", at(aiocoap_observed, "/store"), str(MIB))
    assert report["peer"] == {"max_message_size": MIB, "bert": True}
    assert (report["put_code"], report["get_code"], report["same"]) == ("2.04", "2.05", True)
    assert block_sizes(report["put_messages"], "block1") == {7}
    assert report["put_messages"][0]["size1"] == MIB


def test_library_uploads_to_aiocoap_in_small_blocks(aiocoap_observed: RunningPeer) -> None:
    report = library("roundtrip", at(aiocoap_observed, "/store"), "100000", "512")
    assert report["same"]
    assert block_sizes(report["put_messages"], "block1") == {5}
    assert len(report["put_messages"]) == -(-100_000 // 512)



# -- over WebSockets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def websocket_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp --ws`` (coap+ws) with the demo site."""
    port = free_port()
    argv = [*coaptcp_server_argv(port)[:-2], "--ws", f"tcp:{port}:interface=127.0.0.1"]
    with run_server(argv, port) as peer:
        yield peer


def test_cli_observes_and_moves_big_over_websockets(
    websocket_server: RunningPeer, tmp_path: Path
) -> None:
    base = f"coap+ws://127.0.0.1:{websocket_server.port}"
    observed = cli("--observe", "-c", "2", f"{base}/time")
    assert observed.returncode == 0, observed.stderr.decode()
    assert all(TIME.fullmatch(line) for line in observed.stdout.decode().splitlines())
    assert len(observed.stdout.splitlines()) == 2
    got = cli(f"{base}/big")
    assert got.returncode == 0 and hashlib.sha256(got.stdout).hexdigest() == BIG_SHA256
    body = hashlib.shake_256(b"ws upload").digest(MIB)
    source = tmp_path / "body.bin"
    source.write_bytes(body)
    assert cli("-m", "put", "-f", str(source), f"{base}/store").returncode == 0
    assert cli(f"{base}/store").stdout == body
