"""CoAP over WebSockets over real loopback sockets: ``twistd coaptcp --ws``, aiocoap's
WebSocket client and server, our client as a separate process, and a hand-written raw
WebSocket peer for the cases no library would send.

Every wait is bounded (socket timeouts, subprocess timeouts); there are no sleeps.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest
from ws_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    Frame,
    HttpResponse,
    coap,
    csm,
    frame,
    get,
    handshake,
    parse_frames,
    parse_http,
)

from coaptcp.core.codes import Code
from coaptcp.tap.demo import LargeResource
from coaptcp.tap.websocket import WEB_CLIENT_DIR
from coaptcp.transport.websocket.common import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "interop"))
from datetime import UTC

from peers import (
    RunningPeer,
    aiocoap_client,
    free_port,
    run,
    run_server,
    twistd_path,
)

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parents[1] / "interop"
IO_TIMEOUT = 10.0  # seconds any single socket operation may block
AIOCOAP_BIG = bytes(range(32, 127)) * 42 + b"!" * 10


def coaptcp_ws_argv(port: int, *extra: str) -> list[str]:
    return [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", *extra]


def assert_clean_log(peer: RunningPeer) -> None:
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def ws_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp --ws`` with the demo site, from the installed package."""
    port = free_port()
    with run_server(coaptcp_ws_argv(port), port) as peer:
        yield peer
    assert_clean_log(peer)


@pytest.fixture(scope="module")
def aiocoap_ws_server() -> Iterator[RunningPeer]:
    port = free_port()
    while port < 3000 + 1024:  # aiocoap binds PORT + 3000 (see interop/aiocoap_peer.py)
        port = free_port()
    argv = [sys.executable, str(INTEROP / "aiocoap_peer.py"), str(port), "ws"]
    with run_server(argv, port) as peer:
        yield peer


def ws_client(uri: str, *args: str) -> dict[str, object]:
    """Our client (ws_client_peer.py) in its own process; its JSON report."""
    result = run([sys.executable, str(INTEROP / "ws_client_peer.py"), uri, *args])
    lines = result.stdout.decode().strip().splitlines()
    assert lines, f"no report ({result.returncode}):\n{result.stderr.decode()}"
    report: dict[str, object] = json.loads(lines[-1])
    report["returncode"] = result.returncode
    return report


# -- raw WebSocket peer -------------------------------------------------------------------


class RawPeer:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.settimeout(IO_TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"nothing from the server within {IO_TIMEOUT}s; have {self.buffer!r}")

    def http(self, request: bytes) -> HttpResponse:
        self.send(request)
        while (response := parse_http(self.buffer)) is None:
            chunk = self._recv()
            assert chunk, f"closed before the HTTP answer: {self.buffer!r}"
            self.buffer += chunk
        self.buffer = response.body_and_rest
        return response

    def frames_until(self, opcode: int) -> list[Frame]:
        """Frames until (and including) one with ``opcode``."""
        out: list[Frame] = []
        while True:
            frames, self.buffer = parse_frames(self.buffer)
            out += frames
            if any(f.opcode == opcode for f in frames):
                return out
            chunk = self._recv()
            assert chunk, f"closed before a frame with opcode {opcode}; got {out}"
            self.buffer += chunk

    def until_eof(self) -> bytes:
        """What arrives until the server closes.  After a completed closing handshake
        autobahn's server drops the TCP connection with a reset, which counts as the end."""
        data = self.buffer
        try:
            while chunk := self._recv():
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def open(self) -> list[Frame]:
        response = self.http(handshake(host="127.0.0.1"))
        assert response.status == 101, response
        assert response.headers["sec-websocket-protocol"] == "coap"
        return self.frames_until(OP_BINARY)


def check_abort_then_close(peer: RawPeer, close_code: int, diagnostic: bytes) -> None:
    frames = peer.frames_until(OP_CLOSE)
    assert [f.opcode for f in frames[-2:]] == [OP_BINARY, OP_CLOSE], frames
    abort = frames[-2].coap()
    assert abort.code == Code.ABORT and diagnostic in abort.payload, abort
    assert frames[-1].close_code == close_code
    assert not any(f.opcode == OP_BINARY and f.coap().code.is_response for f in frames)
    peer.send(frame(close_code.to_bytes(2, "big"), OP_CLOSE))  # complete the closing handshake
    assert peer.until_eof() == b""


def test_raw_missing_subprotocol_is_refused(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    response = peer.http(handshake(protocols=None))
    assert response.status == 400 and '"coap"' in response.reason
    assert peer.until_eof() == b""


def test_raw_wrong_path_is_404(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    response = peer.http(handshake(path="/coap"))
    assert response.status == 404


def test_raw_text_frame_gets_abort_then_close(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    peer.open()
    peer.send(coap(csm()) + frame(b"GET /hello", OP_TEXT))
    check_abort_then_close(peer, CLOSE_UNSUPPORTED_DATA, b"text WebSocket message")


def test_raw_non_zero_len_gets_abort_then_close(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    peer.open()
    peer.send(coap(csm()) + frame(bytes([0x20, Code.GET]) + b"\xb1a"))
    check_abort_then_close(peer, CLOSE_PROTOCOL_ERROR, b"Len is 2")


def test_raw_request_before_csm_gets_abort_then_close(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    (server_csm,) = peer.open()
    assert server_csm.coap().code == Code.CSM
    peer.send(coap(get(b"early", "hello")))
    check_abort_then_close(peer, CLOSE_PROTOCOL_ERROR, b"expected a CSM")


def test_raw_well_behaved_peer_still_served(ws_server: RunningPeer) -> None:
    peer = RawPeer(ws_server.port)
    peer.open()
    peer.send(coap(csm(65536)) + coap(get(b"ok", "hello")))
    frames = peer.frames_until(OP_BINARY)
    assert frames[-1].coap().payload == b"Hello, world!"
    peer.send(frame(CLOSE_NORMAL.to_bytes(2, "big"), OP_CLOSE))
    (close,) = peer.frames_until(OP_CLOSE)
    assert close.close_code == CLOSE_NORMAL
    assert peer.until_eof() == b""


def test_server_stop_releases_websocket_connections() -> None:
    port = free_port()
    with run_server(coaptcp_ws_argv(port), port) as server:
        peer = RawPeer(port)
        peer.open()
        peer.send(coap(csm()))
        server.process.terminate()
        frames = peer.frames_until(OP_CLOSE)
        assert frames[-2].coap().code == Code.RELEASE
        assert frames[-1].close_code == CLOSE_NORMAL
        peer.send(frame(CLOSE_NORMAL.to_bytes(2, "big"), OP_CLOSE))
        assert peer.until_eof() == b""
        server.process.wait(timeout=IO_TIMEOUT)
    assert_clean_log(server)


# -- the web page on the same port ---------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=IO_TIMEOUT) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_browser_client_files_are_served(ws_server: RunningPeer) -> None:
    status, content_type, body = http_get(ws_server.port, "/")
    assert status == 200 and content_type.startswith("text/html")
    assert body == (WEB_CLIENT_DIR / "index.html").read_bytes()
    for name in ("app.js", "coap.js"):
        status, content_type, body = http_get(ws_server.port, f"/{name}")
        assert status == 200 and content_type.startswith("text/javascript"), content_type
        assert body == (WEB_CLIENT_DIR / name).read_bytes()
    assert http_get(ws_server.port, "/missing")[0] == 404
    assert http_get(ws_server.port, "/.well-known/coap")[0] == 426


# -- aiocoap's client against our server --------------------------------------------------


def ws_uri(peer: RunningPeer, path: str) -> str:
    return f"coap+ws://127.0.0.1:{peer.port}{path}"


def test_aiocoap_client_get(ws_server: RunningPeer) -> None:
    result = aiocoap_client(ws_uri(ws_server, "/hello"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"Hello, world!"


def test_aiocoap_client_gets_json_with_host_header_as_uri_host(ws_server: RunningPeer) -> None:
    result = aiocoap_client("--no-pretty-print", ws_uri(ws_server, "/info"))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["server"].startswith("coaptcp ")
    assert info["host"] == "127.0.0.1"


def test_aiocoap_client_large_response(ws_server: RunningPeer) -> None:
    result = aiocoap_client(ws_uri(ws_server, "/large"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip(b"\n") == LargeResource.body.rstrip(b"\n")


def test_aiocoap_client_put_then_get(ws_server: RunningPeer) -> None:
    put = aiocoap_client("-m", "PUT", "--content-format", "application/json",
                         "--payload", '{"via": "ws"}', ws_uri(ws_server, "/store"))
    assert put.returncode == 0, put.stderr
    result = aiocoap_client("--no-pretty-print", ws_uri(ws_server, "/store"))
    assert json.loads(result.stdout) == {"via": "ws"}


def test_aiocoap_client_discovery(ws_server: RunningPeer) -> None:
    result = aiocoap_client("--no-pretty-print", ws_uri(ws_server, "/.well-known/core"))
    assert result.returncode == 0, result.stderr
    for path in (b"</hello>", b"</info>", b"</large>", b"</store>"):
        assert path in result.stdout


# -- our client against our server and against aiocoap's --------------------------------


def test_our_client_against_our_server(ws_server: RunningPeer) -> None:
    report = ws_client(ws_uri(ws_server, ""), "request", "GET", "/hello")
    assert (report["code"], report["payload"]) == ("2.05", "Hello, world!")
    assert report["secure"] is False
    pipelined = ws_client(ws_uri(ws_server, ""), "pipeline", "50", "/hello")
    assert pipelined["codes"] == ["2.05"] * 50


def test_our_client_reports_a_refused_upgrade(ws_server: RunningPeer) -> None:
    report = ws_client(ws_uri(ws_server, ""), "ping", "--path", "/not-coap")
    assert report["returncode"] == 3
    assert "404" in str(report["error"])


def test_our_client_reports_connection_refused() -> None:
    report = ws_client(f"coap+ws://127.0.0.1:{free_port()}", "ping")
    assert report["returncode"] == 3
    assert "cannot connect" in str(report["error"])


def test_our_client_get_from_aiocoap(aiocoap_ws_server: RunningPeer) -> None:
    report = ws_client(ws_uri(aiocoap_ws_server, ""), "request", "GET", "/hello")
    assert (report["code"], report["payload"]) == ("2.05", "hello from aiocoap over ws")


def test_our_client_post_and_ping_to_aiocoap(aiocoap_ws_server: RunningPeer) -> None:
    post = ws_client(ws_uri(aiocoap_ws_server, ""), "request", "POST", "/echo", "over ws")
    assert (post["code"], post["payload"]) == ("2.04", "over ws")
    ping = ws_client(ws_uri(aiocoap_ws_server, ""), "ping")
    assert isinstance(ping["rtt"], float)


def test_our_client_large_response_from_aiocoap(aiocoap_ws_server: RunningPeer) -> None:
    # Our CSM announces Block-Wise-Transfer and a Max-Message-Size above 1,152 (BERT), so
    # aiocoap sends the 4,000 bytes in one message rather than 1,024-byte blocks.
    report = ws_client(ws_uri(aiocoap_ws_server, ""), "request", "GET", "/big")
    assert report["code"] == "2.05"
    assert report["payload"] == AIOCOAP_BIG.decode()


def test_our_client_pipelines_to_aiocoap(aiocoap_ws_server: RunningPeer) -> None:
    report = ws_client(ws_uri(aiocoap_ws_server, ""), "pipeline", "30", "/hello")
    assert report["codes"] == ["2.05"] * 30


# -- coaps+ws: TLS with certificate and host name checks ---------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (and one for another name)."""
    from datetime import datetime, timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("certs")
    paths = {}
    for label, names in (("good", [x509.IPAddress(ip_address("127.0.0.1"))]),
                         ("other", [x509.DNSName("other.example")])):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"coaptcp test {label}")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_path = directory / f"{label}.key"
        cert_path = directory / f"{label}.pem"
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{label}_key"] = key_path
        paths[f"{label}_cert"] = cert_path
    return paths


def tls_server_argv(port: int, key: Path, cert: Path) -> list[str]:
    return [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"]


def test_coaps_ws_with_a_trusted_certificate(certificate: dict[str, Path]) -> None:
    port = free_port()
    argv = tls_server_argv(port, certificate["good_key"], certificate["good_cert"])
    with run_server(argv, port) as server:
        uri = f"coaps+ws://127.0.0.1:{port}"
        report = ws_client(uri, "request", "GET", "/info", "--ca", str(certificate["good_cert"]))
        assert report["code"] == "2.05" and report["secure"] is True
        info = json.loads(str(report["payload"]))
        assert info["secure"] is True
        # Without the certificate in the trust root, verification fails.
        untrusted = ws_client(uri, "ping")
        assert untrusted["returncode"] == 3
        assert "certificate verify failed" in str(untrusted["error"])
    assert_clean_log_ignoring_tls(server)


def test_coaps_ws_rejects_a_certificate_for_another_host(certificate: dict[str, Path]) -> None:
    port = free_port()
    argv = tls_server_argv(port, certificate["other_key"], certificate["other_cert"])
    with run_server(argv, port):
        report = ws_client(f"coaps+ws://127.0.0.1:{port}", "ping",
                           "--ca", str(certificate["other_cert"]))
        assert report["returncode"] == 3
        assert "certificate is not valid for 127.0.0.1" in str(report["error"])
        assert "IPAddressMismatch" in str(report["error"])


def assert_clean_log_ignoring_tls(peer: RunningPeer) -> None:
    # A client that rejects our certificate makes the server log a TLS alert; that is
    # the expected outcome, not a crash.  Anything else unhandled is a failure.
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled Error" not in log, log


def test_server_process_help_lists_ws_option() -> None:
    result = childproc.run([twistd_path(), "coaptcp", "--help"], capture_output=True,
                            timeout=60, text=True)
    assert "--ws=" in result.stdout and "coaps+ws" in result.stdout
