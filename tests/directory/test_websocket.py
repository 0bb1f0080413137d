"""A registration over CoAP over WebSockets (RFC 8323 section 4, RFC 9176 section 5): its
base has the coap+ws scheme, and it ends with the WebSocket connection."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from ws_helpers import PEER_ADDRESS, clock, opened
from ws_wire import coap

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.directory import install_directory
from coaptcp.server import Resource, Site
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory

__all__ = ["clock"]


def test_a_websocket_registration_has_a_coap_ws_base_and_ends_with_the_socket(
    clock: MemoryReactorClock,
) -> None:
    root = Resource()
    directory = install_directory(root, reactor=clock)
    peer = opened(CoapWebSocketServerFactory(Site(root), reactor=clock))
    options = Options.build(uri_path=["rd"], uri_query=["ep=browser1"], content_format=40)
    peer.send(coap(Message(Code.POST, b"r1", options, b"</clicks>;rt=counter;obs")))
    [answer] = [frame.coap() for frame in peer.frames()]
    assert answer.code == Code.CREATED and answer.options.location_path[0] == "rd"
    registration = directory.find("browser1")
    assert registration is not None and registration.connection is peer.protocol.channel
    assert registration.base == f"coap+ws://{PEER_ADDRESS.host}:{PEER_ADDRESS.port}"
    gone: list[str] = []
    registration.when_gone().addCallback(gone.append)
    peer.lose()
    assert len(gone) == 1 and gone[0].startswith("its connection ended")
    assert directory.find("browser1") is None
