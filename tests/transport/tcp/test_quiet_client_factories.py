"""Connecting factories log nothing of their own start and stop.

Twisted's ``Factory.doStart``/``doStop`` log "Starting factory" and "Stopping factory"
for a noisy factory, and our connectors make one factory per connection: through the
proxy (``--proxy``), each upstream endpoint a downstream peer named wrote those two
lines into the server's log (3,782 of each in one 1 MB log file of the attack that
filled the upstream pool).  Listening factories still say when they start and stop.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher

from coaptcp.core.connection import Role
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.tls.settings import ClientTLSSettings
from coaptcp.transport.tls.transport import tls_client_factory
from coaptcp.transport.websocket.client import CoapWebSocketClientFactory


def start_stop_lines(factory: Any) -> list[str]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        factory.doStart()
        factory.doStop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [str(e.get("log_format")) for e in events if "factory" in str(e.get("log_format"))]


def test_a_connecting_coap_factory_is_quiet_and_a_listening_one_is_not() -> None:
    assert start_stop_lines(CoapFactory(role=Role.INITIATOR)) == []
    assert len(start_stop_lines(CoapFactory(role=Role.ACCEPTOR))) == 2


def test_the_tls_and_websocket_client_factories_are_quiet() -> None:
    coap = CoapFactory(role=Role.INITIATOR)
    tls = tls_client_factory(coap, ClientTLSSettings(), "127.0.0.1", 5684)
    assert start_stop_lines(tls) == []
    ws = CoapWebSocketClientFactory("127.0.0.1", 8080)
    assert start_stop_lines(ws) == []
