"""Helpers for the UdpEndpoint tests: a fixed random source and a two-endpoint network."""

from __future__ import annotations

from collections.abc import Hashable

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.core.udp.events import UdpEvent, UdpResponseReceived
from coaptcp.core.udp.framing import MessageType, UdpMessage, decode_datagram
from coaptcp.core.udp.messaging import UdpEndpoint

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST


class FixedRandom:
    """``random()`` always gives ``uniform``; Message ID starts come from ``mids``."""

    def __init__(self, uniform: float = 0.0, mids: tuple[int, ...] = (0x1000,)) -> None:
        self.uniform = uniform
        self.mids = list(mids)

    def random(self) -> float:
        return self.uniform

    def getrandbits(self, k: int, /) -> int:
        value = self.mids.pop(0) if len(self.mids) > 1 else self.mids[0]
        return value & ((1 << k) - 1)


def endpoint(**kwargs: object) -> UdpEndpoint:
    """An endpoint with a fixed random source (first ACK timeout exactly 2 s)."""
    kwargs.setdefault("rng", FixedRandom())
    return UdpEndpoint(**kwargs)  # type: ignore[arg-type]


def sent(ep: UdpEndpoint) -> list[tuple[UdpMessage, Hashable]]:
    """What ``ep`` queued for sending, decoded."""
    return [(decode_datagram(data), peer) for data, peer in ep.datagrams_to_send()]


def get(token: bytes = b"\x01", *path: str, observe: int | None = None) -> Message:
    items: list[tuple[int, bytes | int | str | None]] = [(11, p) for p in path]
    if observe is not None:
        items.append((6, observe))
    return Message(Code.GET, token, Options(items))


def content(token: bytes, payload: bytes = b"ok", observe: int | None = None) -> Message:
    options = Options([(6, observe)]) if observe is not None else Options()
    return Message(Code.CONTENT, token, options, payload)


def responses(events: list[UdpEvent]) -> list[Message]:
    """The messages of the UdpResponseReceived events, in order."""
    return [e.message for e in events if isinstance(e, UdpResponseReceived)]


def datagram(mtype: MessageType, mid: int, message: Message | None = None) -> bytes:
    return UdpMessage(mtype, mid, message or Message(Code.EMPTY)).encode()


class Network:
    """Two endpoints, "client" at address "C" and "server" at "S", and a clock."""

    def __init__(self, **kwargs: object) -> None:
        self.client = endpoint(**kwargs)
        self.server = endpoint(**kwargs)
        self.now = 0.0
        self.client_events: list[UdpEvent] = []
        self.server_events: list[UdpEvent] = []

    def deliver(self, drop: bool = False) -> None:
        """Carry every queued datagram once (or lose them all), until nothing moves."""
        while True:
            to_server = self.client.datagrams_to_send()
            to_client = self.server.datagrams_to_send()
            if not to_server and not to_client:
                return
            if drop:
                return
            for data, peer in to_server:
                assert peer == "S"
                self.server_events += self.server.datagram_received(data, "C", self.now)
            for data, peer in to_client:
                assert peer == "C"
                self.client_events += self.client.datagram_received(data, "S", self.now)

    def advance(self, seconds: float) -> None:
        """Move the clock, running both endpoints' timers in order on the way."""
        target = self.now + seconds
        while True:
            times = [
                t for t in (self.client.next_timeout(), self.server.next_timeout()) if t is not None
            ]
            due = min(times) if times else None
            if due is None or due > target:
                break
            self.now = max(self.now, due)
            self.client_events += self.client.timer_expired(self.now)
            self.server_events += self.server.timer_expired(self.now)
        self.now = target
