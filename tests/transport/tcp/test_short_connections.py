"""What a short connection (connect, CSM, one GET, Release) costs in timers: one, the CSM
timeout, which hands over to the watchdog if the connection lives past it; no close
timeout when the transport holds nothing unsent, no Release timer when nothing is in
flight (RFC 8323 sections 5.3 and 5.5).  Over Twisted's real TCP transport on a fake
socket (tests/support/fake_socket.py)."""

from __future__ import annotations

from typing import Any

from fake_socket import FakeSocket, fake_server
from twisted.internet.testing import MemoryReactorClock

from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory

CSM_GET = encode_frame(Message(Code.CSM)) + encode_frame(
    Message(Code.GET, b"\x01", Options.build(uri_path=["hello"]))
)



class CountingClock(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.armed: list[str] = []

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        self.armed.append(getattr(f, "__name__", repr(f)))
        return super().callLater(delay, f, *args, **kwargs)


def get(token: bytes) -> bytes:
    return encode_frame(Message(Code.GET, token, Options.build(uri_path=["hello"])))


def connect(limits: Limits | None = None) -> tuple[CountingClock, FakeSocket, Any]:
    limits = limits if limits is not None else Limits()
    clock = CountingClock()
    factory = CoapFactory(Site(make_demo_site()), reactor=clock, limits=limits)
    protocol = factory.buildProtocol(None)
    sock = FakeSocket()
    transport = fake_server(sock, protocol, clock)
    protocol.makeConnection(transport)
    return clock, sock, protocol


def messages(data: bytes) -> list[Message]:
    decoder = StreamDecoder(1 << 20)
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def test_connect_get_release_arms_only_the_csm_timer() -> None:
    clock, sock, protocol = connect()
    protocol.dataReceived(CSM_GET)
    protocol.dataReceived(encode_frame(Message(Code.RELEASE)))
    assert [m.code for m in messages(sock.wire())] == [Code.CSM, Code.CONTENT]
    assert protocol.transport.disconnecting
    assert clock.armed == ["_csm_timed_out"]
    assert [c.func.__name__ for c in clock.getDelayedCalls()] == []  # cancelled at close


def test_the_csm_timer_hands_over_to_the_watchdog() -> None:
    limits = Limits(csm_timeout=10, idle_timeout=None, keepalive_interval=30, pong_timeout=5)
    clock, sock, protocol = connect(limits)
    protocol.dataReceived(CSM_GET)
    clock.advance(9)
    protocol.dataReceived(get(b"\x02"))
    clock.advance(1)  # the CSM timeout passes: the watchdog starts
    assert clock.armed == ["_csm_timed_out", "check"]
    sock.take()
    clock.advance(28)  # silent for 29 s since the last request: no Ping yet
    assert messages(sock.take()) == []
    clock.advance(1)  # 30 s: the keepalive Ping, as if the watchdog had run from the start
    assert [m.code for m in messages(sock.take())] == [Code.PING]


def test_no_csm_still_aborts() -> None:
    clock, sock, protocol = connect(Limits(csm_timeout=10))
    clock.advance(10)
    codes = [m.code for m in messages(sock.wire())]
    assert codes == [Code.CSM, Code.ABORT] and protocol.transport.disconnecting


def test_a_close_with_output_still_buffered_keeps_its_timeout() -> None:
    clock, sock, protocol = connect()
    protocol.dataReceived(CSM_GET)
    sock.room = 0  # the peer reads nothing more
    protocol.dataReceived(get(b"\x03") + encode_frame(Message(Code.RELEASE)))
    assert "_force_close" in clock.armed


def test_a_close_to_a_full_kernel_buffer_keeps_its_timeout() -> None:
    """Nothing unsent in Twisted, but the socket not writable (a peer that reads nothing
    more filled the kernel's buffer): Twisted's close waits for writability, so the close
    timeout still bounds it."""
    clock, sock, protocol = connect()
    protocol.dataReceived(CSM_GET)
    sock.fill_kernel_buffer()
    protocol.dataReceived(encode_frame(Message(Code.RELEASE)))
    assert protocol.transport.disconnecting and not protocol.transport.dataBuffer
    assert "_force_close" in clock.armed
    clock.advance(protocol.channel.close_timeout)
    assert protocol.channel._lost
