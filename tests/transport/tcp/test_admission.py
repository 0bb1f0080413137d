"""Connection counting from accept (coaptcp.transport.admission), the descriptor limit, the listen
backlog (coaptcp.transport.listeners) and their ``twistd coaptcp`` options.

A connection holds a descriptor from the moment it is accepted, so it is counted from
then; refused connections are counted until they have closed, and beyond
``REFUSAL_MARGIN`` of them new ones are closed at once.  ``fit_descriptor_limit`` raises
``RLIMIT_NOFILE`` and keeps ``max_connections`` below it.
"""

from __future__ import annotations

import os
import resource
import socket

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python import usage

from coaptcp.channel.limits import Limits
from coaptcp.core.framing import StreamDecoder
from coaptcp.server.resource import Site
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.admission import (
    DESCRIPTOR_RESERVE,
    REFUSAL_MARGIN,
    ConnectionGate,
    Refusal,
    fit_descriptor_limit,
)
from coaptcp.transport.listeners import DEFAULT_LISTEN_BACKLOG, with_backlog
from coaptcp.transport.tcp import CoapFactory


def address(host: str = "192.0.2.1", port: int = 4000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


@pytest.fixture
def log_events():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# -- ConnectionGate -------------------------------------------------------------------------


def test_gate_counts_refuses_and_forgets() -> None:
    gate = ConnectionGate(Limits(max_connections=2, max_connections_per_address=1))
    assert gate.admit("a", address()) is None
    assert gate.admit("b", address("192.0.2.2")) is None
    assert gate.admit("c", address("192.0.2.3")) == Refusal(
        "server busy: more than 2 connections"
    )
    gate.discharge("c")
    gate.discharge("b")
    assert gate.admit("d", address()) == Refusal("more than 1 connections from 192.0.2.1")
    assert len(gate) == 2 and gate.per_address == {"192.0.2.1": 2}
    gate.discharge("d")
    gate.discharge("a")
    gate.discharge("a")  # twice: nothing more happens
    assert len(gate) == 0 and gate.per_address == {}


def test_gate_transfers_a_count() -> None:
    gate = ConnectionGate(Limits())
    gate.admit("http", address())
    assert gate.transfer("http", "ws")
    assert "ws" in gate and "http" not in gate and gate.per_address == {"192.0.2.1": 1}
    assert not gate.transfer("never-counted", "other")
    assert "other" not in gate


def test_gate_readdresses_a_connection() -> None:
    gate = ConnectionGate(Limits(max_connections_per_address=1))
    balancer, client = address("192.0.2.250"), address("192.0.2.7")
    gate.admit("a", balancer)
    gate.admit("b", balancer)  # refused while counted under the balancer
    assert gate.readdress("a", client) is None
    assert gate.per_address == {"192.0.2.250": 1, "192.0.2.7": 1}
    assert gate.readdress("b", client) == Refusal("more than 1 connections from 192.0.2.7")
    assert gate.readdress("never", client) is None and "never" not in gate
    assert len(gate) == 2


def test_far_over_the_limit_refusals_go_unanswered(log_events) -> None:
    gate = ConnectionGate(Limits(max_connections=1))
    gate.admit(0, address())
    refusals = [gate.admit(n, address()) for n in range(1, REFUSAL_MARGIN + 3)]
    assert all(r is not None and r.answer for r in refusals[:REFUSAL_MARGIN])
    assert all(r is not None and not r.answer for r in refusals[REFUSAL_MARGIN:])
    messages = [e["log_format"] for e in log_events if e.get("log_namespace", "").startswith(
        "coaptcp.transport.admission")]
    # Once each per episode, not once per connection.
    assert [m.split(":")[0] for m in messages] == [
        "Refusing connections",
        "Closing new connections unanswered",
    ]


def test_the_refusing_episode_ends_with_an_admitted_connection(log_events) -> None:
    gate = ConnectionGate(Limits(max_connections=1))
    gate.admit("a", address())
    gate.admit("b", address())
    gate.discharge("b")
    gate.discharge("a")
    gate.admit("c", address())
    gate.admit("d", address())
    refusing = [e for e in log_events if e.get("log_format", "").startswith("Refusing")]
    assert len(refusing) == 2


def test_handshake_timeouts_are_logged_once_a_minute(log_events) -> None:
    clock = MemoryReactorClock()
    gate = ConnectionGate(Limits())
    for _ in range(5):
        gate.handshake_timed_out(clock, address(), 10.0)
    clock.advance(59)
    gate.handshake_timed_out(clock, address("192.0.2.99"), 10.0)
    clock.advance(1)  # a minute after the first line: the others, in one line
    clock.advance(60)  # a quiet minute: no line, and the summary timer is gone
    assert clock.getDelayedCalls() == []
    gate.handshake_timed_out(clock, address(), 10.0)
    lines = [e for e in log_events if "handshake did not finish" in e.get("log_format", "")]
    assert [line.get("count") for line in lines] == [None, 5, None]
    assert lines[1]["peer"] == address("192.0.2.99")


# -- CoAP over TCP: counted at accept, CSM + Abort, or dropped far over -----------------


def connect(factory: CoapFactory, host: str = "192.0.2.1") -> StringTransport:
    transport = StringTransport(peerAddress=address(host))
    transport.abortConnection = lambda: setattr(transport, "aborted", True)  # type: ignore
    protocol = factory.buildProtocol(address(host))
    transport.protocol = protocol  # type: ignore[attr-defined]
    protocol.makeConnection(transport)
    return transport


def test_tcp_connection_over_the_limit_gets_csm_and_abort_far_over_nothing() -> None:
    factory = CoapFactory(
        Site(make_demo_site()), reactor=MemoryReactorClock(), limits=Limits(max_connections=1)
    )
    connect(factory)
    answered = [connect(factory) for _ in range(REFUSAL_MARGIN)]
    decoder = StreamDecoder(1 << 20)
    decoder.feed(answered[-1].value())
    csm, abort = decoder.next_message(), decoder.next_message()
    assert (csm.code.dotted, abort.code.dotted) == ("7.01", "7.05")
    assert abort.payload == b"server busy: more than 1 connections"
    dropped = connect(factory)
    assert dropped.value() == b"" and getattr(dropped, "aborted", False)
    protocol = dropped.protocol
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    protocol.connectionLost(Failure(ConnectionDone()))  # the drop completes
    assert protocol not in factory.gate


def test_tcp_and_websocket_factories_can_share_a_gate() -> None:
    from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

    clock = MemoryReactorClock()
    gate = ConnectionGate(Limits(max_connections=1))
    tcp = CoapFactory(None, reactor=clock, limits=gate.limits, gate=gate)
    ws = CoapWebSocketServerFactory(None, reactor=clock, limits=gate.limits, gate=gate)
    assert tcp.gate is ws.gate is gate
    connect(tcp)
    assert len(gate) == 1


# -- the descriptor limit -------------------------------------------------------------------


class FakeLimits:
    """``resource.getrlimit``/``setrlimit`` for RLIMIT_NOFILE.

    ``setrlimit`` refuses a soft limit above ``most`` (the hard limit unless given: Linux
    also refuses more than fs.nr_open under an infinite hard limit), or any when
    ``refuse``.
    """

    def __init__(self, soft: int, hard: int, *, most: int | None = None, refuse: bool = False):
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.most = hard if most is None else most
        self.set_calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        self.set_calls.append(limits)
        if self.refuse or limits[0] > self.most or limits[1] != self.hard:
            raise ValueError("not allowed")
        self.soft = limits[0]


def fake(monkeypatch, soft: int, hard: int, **kwargs) -> FakeLimits:
    limits = FakeLimits(soft, hard, **kwargs)
    monkeypatch.setattr(resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", limits.setrlimit)
    return limits


def test_the_soft_limit_is_raised_to_the_hard_one(monkeypatch, log_events) -> None:
    limits = fake(monkeypatch, 1024, 524288)
    result = fit_descriptor_limit(Limits(max_connections=20_000))
    assert limits.soft == 524288
    assert result.max_connections == 20_000
    assert any("Raised the descriptor limit" in e.get("log_format", "") for e in log_events)


def test_max_connections_is_lowered_to_fit_the_descriptor_limit(monkeypatch, log_events) -> None:
    fake(monkeypatch, 1024, 1024)
    configured = Limits(max_connections=20_000, max_connections_per_address=10)
    result = fit_descriptor_limit(configured)
    room = 1024 - DESCRIPTOR_RESERVE - REFUSAL_MARGIN
    assert result.max_connections == room
    assert result.max_connections_per_address == 10  # the rest as it was
    (line,) = [e for e in log_events if "Serving at most" in e.get("log_format", "")]
    assert (line["room"], line["configured"], line["usable"]) == (room, 20_000, 1024)


def test_a_limit_that_fits_is_returned_as_it_is(monkeypatch) -> None:
    fake(monkeypatch, 65536, 65536)
    configured = Limits(max_connections=1000)
    assert fit_descriptor_limit(configured) is configured


def test_a_soft_limit_that_cannot_be_raised_is_used_as_it_is(monkeypatch) -> None:
    limits = fake(monkeypatch, 1024, 4096, refuse=True)
    result = fit_descriptor_limit(Limits(max_connections=5000))
    assert limits.set_calls == [(4096, 4096)]
    assert result.max_connections == 1024 - DESCRIPTOR_RESERVE - REFUSAL_MARGIN


def test_an_infinite_hard_limit_raises_the_soft_one_as_far_as_allowed(monkeypatch) -> None:
    limits = fake(monkeypatch, 1024, resource.RLIM_INFINITY, most=10240)
    fit_descriptor_limit(Limits())
    assert limits.soft == 10240  # the first value tried that the system accepts


def test_a_select_reactor_is_kept_below_fd_setsize(monkeypatch) -> None:
    from twisted.internet.selectreactor import SelectReactor

    fake(monkeypatch, 65536, 65536)
    reactor = SelectReactor.__new__(SelectReactor)  # only its type is looked at
    result = fit_descriptor_limit(Limits(max_connections=20_000), reactor=reactor)
    assert result.max_connections == 1024 - DESCRIPTOR_RESERVE - REFUSAL_MARGIN


def test_make_service_fits_the_limit(monkeypatch) -> None:
    fake(monkeypatch, 1024, 1024)
    service = tap.makeService(tap_options("--tcp", "tcp:0", "--ws", "tcp:0"))
    room = 1024 - DESCRIPTOR_RESERVE - REFUSAL_MARGIN
    assert service.factory.limits.max_connections == room
    # One gate for all listeners, with the fitted limits.
    from coaptcp.tap.service import CoapService

    (ws_service,) = [child for child in service if isinstance(child, CoapService)]
    assert ws_service.factory.gate is service.factory.gate
    assert service.factory.gate.limits.max_connections == room


# -- the listen backlog ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:5683", "tcp:5683:backlog=1024"),
        ("tcp:5683:interface=127.0.0.1", "tcp:5683:interface=127.0.0.1:backlog=1024"),
        ("TCP6:5683:interface=\\:\\:1", "TCP6:5683:interface=\\:\\:1:backlog=1024"),
        ("ssl:8443:privateKey=k.pem", "ssl:8443:privateKey=k.pem:backlog=1024"),
        ("haproxy:tcp:5683", "haproxy:tcp:5683:backlog=1024"),
        ("tcp:5683:backlog=10", "tcp:5683:backlog=10"),
        ("tcp:port=5683:backlog = 7", "tcp:port=5683:backlog = 7"),
        ("unix:/tmp/coap.sock", "unix:/tmp/coap.sock"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
        ("tcp", "tcp"),
    ],
)
def test_with_backlog(description: str, expected: str) -> None:
    assert with_backlog(description, 1024) == expected


def test_the_tap_listens_with_the_backlog(monkeypatch) -> None:
    from twisted.internet import endpoints

    seen: list[str] = []
    real = endpoints.serverFromString

    def record(reactor, description):
        seen.append(description)
        return real(reactor, description)

    monkeypatch.setattr(endpoints, "serverFromString", record)
    options = tap_options("--tcp", "tcp:0", "--tcp", "tcp:0:backlog=5", "--ws", "tcp:0",
                          "--listen-backlog", "300")
    seen.clear()  # (postOptions parses the descriptions too)
    tap.makeService(options)
    assert seen == ["tcp:0:backlog=300", "tcp:0:backlog=5", "tcp:0:backlog=300"]
    endpoint = real(None, "tcp:0:backlog=300")
    assert endpoint._backlog == 300


def test_listen_backlog_default_and_bad_values() -> None:
    assert tap_options()["listen-backlog"] == DEFAULT_LISTEN_BACKLOG
    for bad in ("0", "-5", "many", "70000"):
        with pytest.raises(usage.UsageError, match="--listen-backlog must be between"):
            tap_options("--listen-backlog", bad)


def test_ws_handshake_timeout_option() -> None:
    assert tap_options()["limits"].ws_handshake_timeout == 10.0
    assert tap_options("--ws-handshake-timeout", "2.5")["limits"].ws_handshake_timeout == 2.5
    assert tap_options("--ws-handshake-timeout", "0")["limits"].ws_handshake_timeout is None
    with pytest.raises(usage.UsageError, match="--ws-handshake-timeout must be"):
        tap_options("--ws-handshake-timeout", "-1")


def tap_options(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


# -- turning connections away at accept (coaptcp.transport.listeners) ------------------------------


class RecordingReactor:
    """Records the listen calls an endpoint makes (nothing is bound)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        self.calls.append(("tcp", port, factory, backlog, interface))
        return object()

    def adoptStreamPort(self, fd, family, factory):
        self.calls.append(("adopt", fd, factory))
        return object()


def test_gated_factory_builds_nothing_far_over_the_limit(log_events) -> None:
    from coaptcp.transport.listeners import GatedFactory

    gate = ConnectionGate(Limits(max_connections=1))
    factory = CoapFactory(None, reactor=MemoryReactorClock(), limits=gate.limits, gate=gate)
    gated = GatedFactory(factory, gate)
    assert gated.buildProtocol(address()) is not None  # not counted until connected
    for key in range(1 + REFUSAL_MARGIN):
        gate.admit(key, address())
    assert gated.buildProtocol(address()) is None  # Twisted closes the socket at once
    assert gated.buildProtocol(address()) is None
    lines = [e for e in log_events if "unanswered" in e.get("log_format", "")]
    assert len(lines) == 1
    gate.discharge(0)
    assert gated.buildProtocol(address()) is not None
    assert gated.max_message_size == factory.max_message_size  # the rest is the factory's


def test_every_kind_of_listener_is_gated() -> None:
    from twisted.internet import endpoints
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from coaptcp.testing.certs import write_test_setup
    from coaptcp.transport.listeners import GatedFactory, GatedReactor

    gate = ConnectionGate(Limits())
    recording = RecordingReactor()
    reactor = GatedReactor(recording, gate)
    factory = CoapFactory(None, reactor=MemoryReactorClock())
    endpoints.serverFromString(reactor, "tcp:5683:backlog=9").listen(factory)
    endpoints.serverFromString(reactor, "haproxy:tcp:5684").listen(factory)
    spare = os.open(os.devnull, os.O_RDONLY)  # the endpoint closes what it adopts
    endpoints.AdoptedStreamServerEndpoint(reactor, spare, socket.AF_INET).listen(factory)
    import tempfile
    from pathlib import Path

    pki = write_test_setup(Path(tempfile.mkdtemp()) / "pki", ["localhost"])
    endpoints.serverFromString(
        reactor, f"ssl:8443:privateKey={pki['server_key']}:certKey={pki['server']}"
    ).listen(factory)
    assert [call[0] for call in recording.calls] == ["tcp", "tcp", "adopt", "tcp"]
    factories = [call[2] for call in recording.calls]
    assert all(isinstance(f, GatedFactory) and f.gate is gate for f in factories)
    assert factories[0].factory is factory and recording.calls[0][3] == 9
    assert factories[1].factory.wrappedFactory is factory  # the PROXY header's wrapper
    assert isinstance(factories[3].factory, TLSMemoryBIOFactory)  # TLS inside the gate
    assert factories[3].factory.wrappedFactory is factory
