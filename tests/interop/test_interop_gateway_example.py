"""The draft's gateway example, message by message, over real sockets.

draft-ietf-core-coap-tcp-tls (and RFC 8323 section 4.4's figure "A CoAP client retrieves
the representation of a resource identified by a 'coap' URI via a WebSockets-enabled CoAP
proxy"): a client sends, over a WebSocket, a GET with ``Proxy-Uri: coap://.../``; the
proxy sends a Confirmable GET over UDP with a token and Message ID of its own; the UDP
server answers 2.05 "ready" piggybacked in the ACK; the client gets 2.05 "ready" with its
own token.  The UDP server here is the test itself, on a raw socket, so that it can check
what the proxy sends; the WebSocket client is ``coaptcp-client`` (which shows the payload,
not its token, so the two tokens are not compared here).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from peers import RunningPeer, cli_path, free_port, run, run_server, twistd_path

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber
from coaptcp.core.udp.framing import MessageType, UdpMessage, decode_datagram, encode_datagram

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def websocket_proxy() -> Iterator[RunningPeer]:
    port = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", "--proxy", "127.0.0.0/8"]
    with run_server(argv, port) as peer:
        yield peer


class UdpDevice:
    """A CoAP-over-UDP server that answers one GET with 2.05 "ready" and keeps it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.received: list[UdpMessage] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        data, source = self.sock.recvfrom(2048)
        request = decode_datagram(data)
        self.received.append(request)
        answer = Message(Code.CONTENT, request.message.token, payload=b"ready")
        self.sock.sendto(encode_datagram(MessageType.ACK, request.message_id, answer), source)


def test_the_drafts_websocket_to_udp_example(websocket_proxy: RunningPeer) -> None:
    device = UdpDevice()
    try:
        result = run([cli_path(), "-O", f"35,coap://127.0.0.1:{device.port}/",
                      f"coap+ws://127.0.0.1:{websocket_proxy.port}/"])
        device.thread.join(timeout=20)
    finally:
        device.sock.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"ready"
    [sent] = device.received
    # What the proxy sent over UDP: a Confirmable GET for the root of the device...
    assert sent.mtype is MessageType.CON and sent.message.code == Code.GET
    options = sent.message.options
    assert OptionNumber.PROXY_URI not in options and OptionNumber.PROXY_SCHEME not in options
    assert OptionNumber.URI_PATH not in options  # "/" is no Uri-Path at all
    assert OptionNumber.URI_HOST not in options  # the literal address names the host
    assert options.get_uint(OptionNumber.HOP_LIMIT) == 15
    # ... with a token of its own.  The device answered on that token and Message ID, and
    # the client still got "ready": the proxy matched the two exchanges.
    assert 1 <= len(sent.message.token) <= 8


def test_the_proxy_refuses_a_udp_destination_outside_its_networks(
    websocket_proxy: RunningPeer,
) -> None:
    result = run([cli_path(), "-O", "35,coap://198.51.100.7/",
                  f"coap+ws://127.0.0.1:{websocket_proxy.port}/"])
    assert result.returncode != 0
    assert b"5.05" in result.stdout + result.stderr


