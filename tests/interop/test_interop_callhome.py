"""``twistd coaptcp --call-home`` over real loopback sockets (RFC 8323 section 3.3, RFC
9176 section 5.3).

The device is the installed ``twistd coaptcp`` with ``--call-home`` and no listener.  Its
back ends:

- a test-side back end on a plain socket (and one with TLS, checking the device's
  client certificate), written here with the package's framing only: it answers the
  registration, then sends its own GET to the device over the device's connection;
  stopping the device must remove the registration (DELETE) and release the
  connection; closing the connection must bring the device back with a new
  registration;
- our own ``twistd coaptcp --tls --psk-file`` with a directory stand-in
  (``callhome_backend.py``): it sees the device's PSK identity and reads the device;
- our own ``twistd coaptcp --rd``: it lists the device's registration and links, takes a
  new registration after it restarts, and drops it when the device stops;
- aiocoap's resource directory (``aiocoap-rd`` with its proxy extension): it takes the
  registration, lists the device's links in its lookup interface, and forwards a
  client's request for ``Uri-Host: dev1.proxy.example`` to the device over the device's
  connection.

Every wait is bounded by a deadline; nothing listens on a fixed port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import childproc
import pytest
from peers import HERE, cli_path, free_port, run_server, twistd_path, wait_for_port

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.linkformat import LINK_FORMAT
from coaptcp.core.message import Message
from coaptcp.core.options import EMPTY_OPTIONS, OptionNumber, Options
from coaptcp.testing.certs import write_test_setup

pytestmark = pytest.mark.interop

DEADLINE = 20.0  # seconds any one wait may take


@contextlib.contextmanager
def device(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``twistd -n coaptcp ARGS`` (the device), its log file; stopped with SIGTERM."""
    workdir = Path(tempfile.mkdtemp(prefix="coaptcp-callhome-"))
    log = workdir / "device.log"
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp", *args]
    with log.open("wb") as sink:
        process = childproc.popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEADLINE)


def assert_stopped_by_sigterm(process: subprocess.Popen[bytes], log: Path) -> None:
    """twistd shut down in order, then ended by the signal (Twisted re-raises it, so the
    exit status says why it stopped)."""
    assert process.wait(timeout=DEADLINE) == -signal.SIGTERM
    assert "Server Shut Down." in log.read_text(errors="replace")


def assert_clean(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Unhandled" not in text, text


class BackendConnection:
    """The back end's side of one connection the device opened (plain or TLS)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(DEADLINE)
        self.decoder = StreamDecoder(1 << 20)
        self.closed = False
        self.sock.sendall(encode_frame(Message(Code.CSM)))

    def send(self, message: Message) -> None:
        self.sock.sendall(encode_frame(message))

    def next(self, wanted: Callable[[Message], bool] = lambda m: True) -> Message:
        """The next message ``wanted`` accepts; CSMs and Pings (answered) are skipped."""
        deadline = time.monotonic() + DEADLINE
        while True:
            message = self.decoder.next_message()
            if message is None:
                assert time.monotonic() < deadline, "nothing came from the device"
                data = self.sock.recv(65536)
                if not data:
                    self.closed = True
                    raise EOFError("the device closed the connection")
                self.decoder.feed(data)
                continue
            if message.code == Code.PING:
                self.send(Message(Code.PONG, message.token))
                continue
            if message.code == Code.CSM or not wanted(message):
                continue
            return message

    def answer(self, request: Message, code: Code, options: Options = EMPTY_OPTIONS) -> None:
        self.send(Message(code, request.token, options))

    def until_closed(self) -> list[Message]:
        """Every message until the device closes the connection."""
        messages = []
        with contextlib.suppress(EOFError):
            while True:
                messages.append(self.next())
        return messages


def accept(listener: socket.socket, wrap: Callable[[socket.socket], socket.socket] | None = None,
           ) -> BackendConnection:
    listener.settimeout(DEADLINE)
    sock, _ = listener.accept()
    if wrap is not None:
        sock.settimeout(DEADLINE)
        sock = wrap(sock)
    return BackendConnection(sock)


def listening() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port: int = listener.getsockname()[1]
    return listener, port


def location(key: str) -> Options:
    return Options([(OptionNumber.LOCATION_PATH, "rd"), (OptionNumber.LOCATION_PATH, key)])


def take_registration(connection: BackendConnection, key: str) -> Message:
    """Read the registration POST and answer 2.01 with Location-Path rd/KEY."""
    registration = connection.next(lambda m: m.code.is_request)
    assert registration.code == Code.POST
    assert registration.options.uri_path == ("rd",)
    connection.answer(registration, Code.CREATED, location(key))
    return registration


def get_from_device(connection: BackendConnection, *path: str, token: bytes) -> Message:
    """The back end's own GET to the device, over the device's connection."""
    connection.send(Message(Code.GET, token, Options.build(uri_path=path)))
    return connection.next(lambda m: m.token == token and m.code.is_response)


def test_the_back_end_reads_the_device_over_its_connection_and_stop_deregisters() -> None:
    listener, port = listening()
    uri = f"coap+tcp://127.0.0.1:{port}/rd?ep=dev1"
    with listener, device("--call-home", uri, "--call-home-lifetime", "600") as (process, log):
        connection = accept(listener)
        registration = take_registration(connection, "1")
        assert registration.options.uri_query == ("ep=dev1", "lt=600")
        assert registration.options.content_format == LINK_FORMAT
        assert b'</hello>;rt="demo.hello"' in registration.payload
        hello = get_from_device(connection, "hello", token=b"be1")
        assert (hello.code, hello.payload) == (Code.CONTENT, b"Hello, world!")
        core = get_from_device(connection, ".well-known", "core", token=b"be2")
        assert core.code == Code.CONTENT and b"</hello>" in core.payload
        process.send_signal(signal.SIGTERM)
        removal = connection.next(lambda m: m.code.is_request)
        assert removal.code == Code.DELETE
        assert removal.options.uri_path == ("rd", "1")
        connection.answer(removal, Code.DELETED)
        rest = connection.until_closed()
        assert [m.code for m in rest] == [Code.RELEASE]  # RFC 8323 section 5.5
        assert_stopped_by_sigterm(process, log)
    assert_clean(log)
    text = log.read_text()
    assert "Registered dev1 at /rd/1" in text and "Removed the registration /rd/1" in text


def test_after_the_connection_is_lost_the_device_calls_again_and_registers_anew() -> None:
    listener, port = listening()
    uri = f"coap+tcp://127.0.0.1:{port}/rd?ep=dev1"
    with listener, device("--call-home", uri) as (_, log):
        first = accept(listener)
        take_registration(first, "1")
        first.sock.close()  # the back end restarts, say
        second = accept(listener)  # within the first back-off delay (at most 1 s)
        take_registration(second, "2")
        hello = get_from_device(second, "hello", token=b"be3")
        assert hello.payload == b"Hello, world!"
    assert_clean(log)
    assert "Lost the connection to coap+tcp://127.0.0.1:" in log.read_text()


def test_over_tls_the_back_end_sees_the_devices_certificate(tmp_path: Path) -> None:
    pki = write_test_setup(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server_key"])
    context.load_verify_locations(pki["ca"])
    context.verify_mode = ssl.CERT_REQUIRED  # the back end checks who calls
    context.set_alpn_protocols(["coap"])
    listener, port = listening()
    uri = f"coaps+tcp://127.0.0.1:{port}/rd?ep=coaptcp-test-client"
    tls = ["--call-home-ca", str(pki["ca"]), "--call-home-certificate", str(pki["client"]),
           "--call-home-key", str(pki["client_key"])]
    with listener, device("--call-home", uri, *tls) as (_, log):
        connection = accept(listener, lambda sock: context.wrap_socket(sock, server_side=True))
        tls_socket: Any = connection.sock
        assert tls_socket.selected_alpn_protocol() == "coap"  # RFC 8323 section 8.2
        subject = dict(item[0] for item in tls_socket.getpeercert()["subject"])
        assert subject["commonName"] == "coaptcp-test-client"
        take_registration(connection, "1")
        hello = get_from_device(connection, "hello", token=b"be4")
        assert hello.payload == b"Hello, world!"
    assert_clean(log)


# -- aiocoap's resource directory -----------------------------------------------------


@contextlib.contextmanager
def aiocoap_rd(port: int) -> Iterator[Path]:
    """``aiocoap-rd`` on coap+tcp://127.0.0.1:PORT with ``/rd`` and its proxy extension."""
    workdir = Path(tempfile.mkdtemp(prefix="coaptcp-aiocoap-rd-"))
    log = workdir / "rd.log"
    env = {**os.environ, "AIOCOAP_SERVER_TRANSPORT": "tcpserver:tcpclient",
           "PYTHONWARNINGS": "ignore"}
    argv = [sys.executable, "-m", "aiocoap.cli.rd", "--bind", f"127.0.0.1:{port}",
            "--lwm2m-compat", "--proxy-domain", "proxy.example"]
    with log.open("wb") as sink:
        process = childproc.popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir,
                                  env=env)
    try:
        wait_for_port(port, process, log)
        yield log
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE)


def our_client(*args: str) -> dict[str, Any]:
    """``coaptcp-client`` (installed); its outcome as code and payload."""
    result = childproc.run([cli_path(), *args], capture_output=True, timeout=DEADLINE)
    return {"status": result.returncode, "out": result.stdout.decode(errors="replace"),
            "err": result.stderr.decode(errors="replace")}


def lookup(port: int, path: str) -> str:
    """What ``GET /PATH`` on the directory answers (with ``coaptcp-client``)."""
    outcome = our_client(f"coap+tcp://127.0.0.1:{port}/{path}")
    assert outcome["status"] == 0, outcome
    text: str = outcome["out"]
    return text


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE:g} s"
        time.sleep(0.1)


def test_aiocoap_rd_takes_the_registration_and_forwards_requests_to_the_device() -> None:
    port = free_port()
    uri = f"coap+tcp://127.0.0.1:{port}/rd?ep=dev1&proxy=on"
    with aiocoap_rd(port), device("--call-home", uri) as (process, log):
        wait_for(lambda: "dev1" in lookup(port, "endpoint-lookup/"), "the registration")
        resources = lookup(port, "resource-lookup/")
        assert "<coap://dev1.proxy.example/hello>" in resources, resources
        # A client asks aiocoap's RD for the device by name; the RD forwards the request
        # over the connection the device opened.
        hello = our_client("-O", "3,dev1.proxy.example", f"coap+tcp://127.0.0.1:{port}/hello")
        assert hello["status"] == 0 and hello["out"].strip() == "Hello, world!", hello
        process.send_signal(signal.SIGTERM)
        assert_stopped_by_sigterm(process, log)
        assert "dev1" not in lookup(port, "endpoint-lookup/")  # removed on the way out
    assert_clean(log)
    assert "Removed the registration /reg/1/: 2.02" in log.read_text()


def test_the_device_registers_again_when_aiocoap_rd_comes_back() -> None:
    port = free_port()
    uri = f"coap+tcp://127.0.0.1:{port}/rd?ep=dev1&proxy=on"
    with device("--call-home", uri) as (_, log):
        with aiocoap_rd(port):
            wait_for(lambda: "dev1" in lookup(port, "endpoint-lookup/"), "the registration")
        with aiocoap_rd(port):  # a new directory that knows nothing of the device
            wait_for(lambda: "dev1" in lookup(port, "endpoint-lookup/"), "registering anew")
    assert_clean(log)
    text = log.read_text()
    assert text.count("Registered dev1 at") == 2, text


# -- our own server as the back end, over coaps+tcp with a PSK --------------------------


def test_over_tls_psk_our_server_sees_the_devices_identity_and_reads_it(tmp_path: Path) -> None:
    # The device's key on one side, the back end's table of keys on the other (RFC 4279).
    (tmp_path / "device.psk").write_text("sensor-17 hex:00112233445566778899aabbccddeeff\n")
    (tmp_path / "keys.psk").write_text("sensor-17 hex:00112233445566778899aabbccddeeff\n"
                                       "other text:not this one\n")
    plain, secure = free_port(), free_port()
    backend = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
               "--tcp", f"tcp:{plain}:interface=127.0.0.1",
               "--tls", f"tcp:{secure}:interface=127.0.0.1",
               "--psk-file", str(tmp_path / "keys.psk"),
               "--resource", "callhome_backend.root"]
    uri = f"coaps+tcp://127.0.0.1:{secure}/rd?ep=sensor-17"
    with run_server(backend, plain, cwd=str(HERE)) as server, \
            device("--call-home", uri, "--call-home-psk-file",
                   str(tmp_path / "device.psk")) as (_, log):

        def seen() -> list[dict[str, Any]]:
            outcome = our_client(f"coap+tcp://127.0.0.1:{plain}/seen")
            assert outcome["status"] == 0, outcome
            parsed: list[dict[str, Any]] = json.loads(outcome["out"])
            return parsed

        wait_for(lambda: any(entry["hello"] for entry in seen()), "the back end's GET")
        [entry] = seen()
        assert entry["psk_identity"] == "sensor-17" and entry["subject"] is None
        assert entry["query"] == ["ep=sensor-17", "lt=90000"]
        assert entry["hello"] == "Hello, world!"
    assert_clean(log)
    assert "Traceback" not in server.log_text()


# -- our own resource directory (twistd coaptcp --rd) ---------------------------------


def rd_argv(port: int) -> list[str]:
    return [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--tcp", f"tcp:{port}:interface=127.0.0.1", "--rd"]


def test_the_device_registers_with_our_directory_and_comes_back_after_a_restart() -> None:
    port = free_port()
    uri = f"coap+tcp://127.0.0.1:{port}/rd?ep=dev1"
    with device("--call-home", uri, "--call-home-lifetime", "600") as (process, log):
        with run_server(rd_argv(port), port) as backend:
            wait_for(lambda: "ep=dev1" in lookup(port, "rd-lookup/ep"), "the registration")
            hello = lookup(port, "rd-lookup/res?ep=dev1&rt=demo.hello")
            assert "/hello>" in hello and 'rt="demo.hello"' in hello, hello
            assert "base=\"coap+tcp://127.0.0.1:" in lookup(port, "rd-lookup/ep")
        assert "Traceback" not in backend.log_text()
        with run_server(rd_argv(port), port) as backend:  # a directory that knows nothing
            wait_for(lambda: "ep=dev1" in lookup(port, "rd-lookup/ep"), "registering anew")
            process.send_signal(signal.SIGTERM)
            assert_stopped_by_sigterm(process, log)
            assert "ep=dev1" not in lookup(port, "rd-lookup/ep")  # removed on the way out
        assert "removed by its registrant (DELETE)" in backend.log_text()
    assert_clean(log)
    assert log.read_text().count("Registered dev1 at /rd/") == 2
