"""Closing a coaps+tcp connection does not wait for the close timeout.

Twisted's TLS layer postpones its close_notify, and so the close, while a producer is
registered with it; our protocol registers itself (flow control) and must step aside when
it closes.  Before, a peer that sent Release (RFC 8323 section 5.5) and then waited for
our close kept the connection for the 5 s close timeout, which then aborted it.
In memory: real OpenSSL on both ends, an iosim pump, a MemoryReactorClock.
"""

from __future__ import annotations

from tls_helpers import (
    PKI,
    SERVER_PORT,
    Pair,
    Recorder,
    connect_pair,
    raw_client_context,
    raw_tls_client,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock

from coaptcp.core.codes import Code
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.transport.tls.settings import ServerTLSSettings


def opened(pki: PKI) -> tuple[Pair, Recorder]:
    """Our coaps+tcp server and a raw TLS client that has sent its CSM, in memory."""
    clock = MemoryReactorClock()
    client_factory, recorder = raw_tls_client(clock, raw_client_context(pki.ca, [b"coap"]))
    settings = ServerTLSSettings(certificate=pki.server, private_key=pki.server_key)
    pair = connect_pair(settings, client_factory, port=SERVER_PORT, clock=clock)
    pair.pump.flush()
    pair.client_tls.write(encode_frame(Message(Code.CSM)))
    pair.pump.flush()
    return pair, recorder


def test_release_from_the_peer_closes_the_tls_connection_without_waiting(pki: PKI) -> None:
    pair, recorder = opened(pki)
    pair.client_tls.write(encode_frame(Message(Code.RELEASE)))
    pair.pump.flush()
    decoder = StreamDecoder(1 << 20)
    decoder.feed(recorder.received)
    assert decoder.next_message().code == Code.CSM  # type: ignore[union-attr]
    # Closed with TLS's close_notify at once: no clock advance, no abort.
    assert pair.server_coap.channel.close_reason == "the peer released the connection"
    assert pair.server_coap.channel._lost
    assert recorder.lost is not None and recorder.lost.check(ConnectionDone)


def test_our_release_over_tls_closes_once_the_peer_closes(pki: PKI) -> None:
    pair, recorder = opened(pki)
    closed: list[object] = []
    pair.server_coap.release("shutting down").addBoth(closed.append)
    pair.pump.flush()
    assert closed == [None]
    assert recorder.lost is not None
