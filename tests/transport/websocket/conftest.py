"""Fixtures for the CoAP-over-WebSockets tests.

In memory: autobahn schedules its own timers (handshake and close timeouts) through
txaio's configured loop, so :func:`clock` points txaio at a :class:`MemoryReactorClock`
for the duration of a test; :class:`WsPeer` attaches a server protocol to a recording
``StringTransport`` and plays the WebSocket client with the hand-written wire helpers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import txaio
from twisted.internet.testing import MemoryReactorClock
from ws_helpers import WsPeer

from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.websocket.protocol import CoapWebSocketServerFactory


@pytest.fixture
def clock() -> Iterator[MemoryReactorClock]:
    clock = MemoryReactorClock()
    previous = txaio.config.loop
    txaio.config.loop = clock
    try:
        yield clock
    finally:
        txaio.config.loop = previous


@pytest.fixture
def ws_factory(clock: MemoryReactorClock) -> CoapWebSocketServerFactory:
    return CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock)


@pytest.fixture
def peer(ws_factory: CoapWebSocketServerFactory) -> WsPeer:
    return WsPeer(ws_factory)
