"""Fixtures for the CoAP-over-WebSockets tests.

In memory: autobahn schedules its own timers (handshake and close timeouts) through
txaio's configured loop, so :func:`clock` points txaio at a :class:`MemoryReactorClock`
for the duration of a test; :class:`WsPeer` attaches a server protocol to a recording
``StringTransport`` and plays the WebSocket client with the hand-written wire helpers.
"""

from ws_helpers import clock, peer, ws_factory

__all__ = ["clock", "peer", "ws_factory"]
