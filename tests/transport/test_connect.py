"""connect_tcp, connect_tls and connect_websocket: one shape (RFC 8323 sections 3, 4, 9)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport

from coaptcp import connect_tcp, connect_tls, connect_websocket
from coaptcp.channel.limits import CLIENT_LIMITS
from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder
from coaptcp.transport.tcp import DEFAULT_CONNECT_TIMEOUT, CoapProtocol

SHARED = ["site", "limits", "max_message_size", "timeout", "endpoint", "require_csm"]


@pytest.mark.parametrize("connect", [connect_tcp, connect_tls, connect_websocket])
def test_every_connect_function_has_the_same_shape(connect: Any) -> None:
    parameters = inspect.signature(connect).parameters
    positional = [p.name for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["reactor", "host", "port"]
    keywords = [p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert keywords[: len(SHARED)] == SHARED
    shared = {name: parameters[name].default for name in SHARED}
    reference = inspect.signature(connect_tcp).parameters
    assert shared == {name: reference[name].default for name in SHARED}
    assert shared["timeout"] == DEFAULT_CONNECT_TIMEOUT and shared["endpoint"] is None


def test_transport_specific_keywords() -> None:
    tls = inspect.signature(connect_tls).parameters
    ws = inspect.signature(connect_websocket).parameters
    assert [n for n in tls if n not in SHARED][3:] == ["settings"]
    assert [n for n in ws if n not in SHARED][3:] == [
        "secure", "path", "tls_options", "trust_root", "origin"
    ]
    assert inspect.signature(connect_tcp).parameters["port"].default == 5683
    assert tls["port"].default == 5684
    assert ws["port"].default is None  # 80, or 443 with secure=True


def test_connect_tcp_through_an_endpoint_fires_with_a_protocol_that_sent_its_csm() -> None:
    clock = MemoryReactorClock()
    results: list[Any] = []
    connect_tcp(
        clock, "192.0.2.1", 5683, limits=CLIENT_LIMITS, max_message_size=4096,
        require_csm=False, endpoint=TCP4ClientEndpoint(clock, "192.0.2.1", 5683),
    ).addBoth(results.append)
    host, port, factory, _, _ = clock.tcpClients[0]
    assert (host, port) == ("192.0.2.1", 5683)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    (connected,) = results
    assert isinstance(connected, CoapProtocol), connected
    assert connected.factory.limits is CLIENT_LIMITS and connected.factory.require_csm is False
    decoder = StreamDecoder(1 << 16)
    decoder.feed(transport.value())
    csm = decoder.next_message()
    assert csm is not None and csm.code == Code.CSM
    assert connected.channel.connection.max_message_size == 4096


def test_connect_tcp_without_an_endpoint_connects_to_host_and_port() -> None:
    clock = MemoryReactorClock()  # its resolver answers 127.0.0.1 for every name
    results: list[Any] = []
    connect_tcp(clock, "coap.example", 5700, timeout=3).addBoth(results.append)
    _, port, factory, timeout, _ = clock.tcpClients[0]
    assert (port, timeout) == (5700, 3)
    assert results == []  # fires once connected
    factory.buildProtocol(None).makeConnection(StringTransport())
    assert isinstance(results[0], CoapProtocol), results
