"""Partial Block1 uploads over CoAP over WebSockets, in memory: the same bounds as over TCP
(issue 12, item 2). The factory's ``max_body_size`` and upload budget reach every
connection, a budget given to several factories (what ``twistd coaptcp`` does for its TCP,
TLS and WebSocket listeners) is shared, and the upload timer runs on the reactor's clock.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from ws_helpers import WsPeer, opened
from ws_wire import coap

from coaptcp.channel.limits import Limits
from coaptcp.core.blockwise import Block, UploadBudget
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

KIB = 1024


def part(num: int, *, more: bool = True, size: int = KIB) -> Message:
    options = Options(
        [(OptionNumber.URI_PATH, "store"), (OptionNumber.BLOCK1, Block(num, more, 6).encode())]
    )
    return Message(Code.PUT, bytes([num]), options, b"w" * size)  # type: ignore[arg-type]


def answers(peer: WsPeer, *messages: Message) -> list[Code]:
    for message in messages:
        peer.send(coap(message))
    return [f.coap().code for f in peer.frames()]


def test_websocket_uploads_share_the_tcp_factory_budget(clock: MemoryReactorClock) -> None:
    budget = UploadBudget(3 * KIB)
    limits = Limits(max_upload_bytes_per_connection=3 * KIB, upload_timeout=30.0)
    tcp = CoapFactory(Site(make_demo_site()), reactor=clock, limits=limits,
                      max_body_size=3 * KIB, upload_budget=budget)
    ws = CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock, limits=limits,
                                    max_body_size=3 * KIB, upload_budget=tcp.upload_budget)
    peer = opened(ws)
    blockwise = peer.protocol.channel.blockwise
    assert blockwise.budget is budget and blockwise.max_body_size == 3 * KIB
    assert answers(peer, part(0), part(1)) == [Code.CONTINUE, Code.CONTINUE]
    assert budget.held == 2 * KIB
    budget.take(KIB)  # a TCP connection's upload, say
    assert answers(peer, part(2)) == [Code.SERVICE_UNAVAILABLE]
    assert budget.held == KIB
    budget.give(KIB)
    # Expiry on the clock, over WebSockets too.
    assert answers(peer, part(0)) == [Code.CONTINUE]
    clock.advance(30)
    assert blockwise.uploads_in_progress == 0 and budget.held == 0
    assert answers(peer, part(1, more=False)) == [Code.REQUEST_ENTITY_INCOMPLETE]


def test_a_websocket_closed_mid_upload_gives_the_bytes_back(clock: MemoryReactorClock) -> None:
    ws = CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock)
    peer = opened(ws)
    assert answers(peer, part(0), part(1)) == [Code.CONTINUE, Code.CONTINUE]
    assert ws.upload_budget.held == 2 * KIB
    assert ws.upload_budget.limit == Limits().max_upload_bytes
    peer.lose()
    assert ws.upload_budget.held == 0
