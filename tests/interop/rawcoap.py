"""A minimal blocking CoAP-over-TCP client on a plain socket, for the deployment tests
(workers, HAProxy): it sees exactly what arrives on the wire, signals included.

Every read is bounded by a deadline.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options

TIMEOUT = 10.0


class RawCoap:
    """One coap+tcp connection from 127.0.0.1 that has sent its CSM."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = StreamDecoder(1 << 20)
        self.received: list[Message] = []
        self.closed = False
        self.sock.sendall(encode_frame(Message(Code.CSM)))

    @property
    def local(self) -> str:
        """``host:port`` of our end, as the server should see it."""
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def send(self, message: Message) -> None:
        self.sock.sendall(encode_frame(message))

    def read_until(self, predicate: Any, timeout: float = TIMEOUT) -> Message:
        """Read until a message matching ``predicate`` arrives (kept in ``received``)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self.received):
                if predicate(message):
                    del self.received[index]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(
                    f"no matching message within {timeout:g} s "
                    f"(closed: {self.closed}; got {self.received!r})"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.closed = True
                continue
            self.decoder.feed(data)
            while (message := self.decoder.next_message()) is not None:
                self.received.append(message)

    def request(self, method: Code, *path: str, token: bytes, **options: Any) -> Message:
        """Send a request and wait for the response with its token."""
        self.send(Message(method, token, Options.build(uri_path=path, **options)))
        return self.read_until(lambda m: m.token == token and not m.code.is_signaling)

    def info(self, token: bytes = b"inf") -> dict[str, Any]:
        """``GET /info`` of the demo site, decoded."""
        response = self.request(Code.GET, "info", token=token)
        assert response.code == Code.CONTENT, response
        info: dict[str, Any] = json.loads(response.payload)
        return info

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """Read (keeping what arrives) until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"still open after {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                self.closed = True
                break
            if not data:
                self.closed = True
            else:
                self.decoder.feed(data)
                while (message := self.decoder.next_message()) is not None:
                    self.received.append(message)

    def close(self) -> None:
        self.sock.close()
