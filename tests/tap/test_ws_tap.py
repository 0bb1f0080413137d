"""``twistd coaptcp --ws``: option parsing, the services makeService builds, and the
WebSocket service's shutdown (Release on every connection), without sockets.
"""

from __future__ import annotations

import re

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.web.server import Site as WebSite
from ws_helpers import WsPeer
from ws_wire import OP_BINARY, OP_CLOSE, coap, csm, frame

from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap import plugin as tap
from coaptcp.tap.demo import make_demo_site
from coaptcp.tap.service import CoapService
from coaptcp.transport.websocket.resource import CoapWebSocketResource
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def test_ws_is_repeatable_and_drops_the_default_tcp_listener() -> None:
    options = parse("--ws", "tcp:0:interface=127.0.0.1", "--ws=tcp6:0:interface=\\:\\:1")
    assert options["ws"] == ["tcp:0:interface=127.0.0.1", "tcp6:0:interface=\\:\\:1"]
    assert options["tcp"] == []


def test_ws_and_tcp_together() -> None:
    options = parse("--ws", "tcp:0", "--tcp", "tcp:0")
    assert options["ws"] == ["tcp:0"] and options["tcp"] == ["tcp:0"]


def test_no_ws_by_default() -> None:
    assert parse()["ws"] == []
    assert parse()["tcp"] == ["tcp:5683"]


@pytest.mark.parametrize("description", ["nonsense:1", "tcp:notaport", "ssl:0"])
def test_bad_ws_endpoint_is_a_usage_error(description: str) -> None:
    with pytest.raises(usage.UsageError) as info:
        parse("--ws", description)
    assert description in str(info.value)


def test_help_documents_ws() -> None:
    # usage.Options wraps help text at hyphens; undo that before looking for a path.
    text = re.sub(r"-\n\s+", "-", str(tap.Options()))
    assert "--ws=" in text and "/.well-known/coap" in text and "coaps+ws" in text


def test_make_service_adds_a_websocket_service() -> None:
    options = parse("--ws", "tcp:0:interface=127.0.0.1", "--ws", "tcp:0:interface=127.0.0.2",
                    "--tcp", "tcp:0", "--max-message-size", "4096", "--lenient-csm")
    service = tap.makeService(options)
    children = list(service)
    assert isinstance(children[0], StreamServerEndpointService)  # the TCP listener
    (ws_service,) = [c for c in children if isinstance(c, CoapService)]
    listeners = list(ws_service)
    assert len(listeners) == 2
    assert all(isinstance(listener, StreamServerEndpointService) for listener in listeners)
    web_site = listeners[0].factory
    assert isinstance(web_site, WebSite) and listeners[1].factory is web_site
    factory = ws_service.factory
    assert isinstance(factory, CoapWebSocketServerFactory)
    assert factory.max_message_size == 4096 and factory.require_csm is False
    assert isinstance(factory.site, Site) and factory.site.root is options["root"]
    assert factory.site is service.factory.site  # one resource tree for TCP and WS
    endpoint = web_site.resource.children[b".well-known"].children[b"coap"]
    assert isinstance(endpoint, CoapWebSocketResource) and endpoint.factory is factory
    assert not service.running


def test_make_service_without_ws_has_no_websocket_service() -> None:
    service = tap.makeService(parse("--tcp", "tcp:0"))
    assert not any(isinstance(c, CoapService) for c in service)


class SlowListener(Service):
    def __init__(self) -> None:
        self.stopping: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stopping


def test_stopping_releases_websocket_connections_after_listeners_stop(clock) -> None:
    factory = CoapWebSocketServerFactory(Site(make_demo_site()), reactor=clock)
    service = CoapService(factory)
    listener = SlowListener()
    listener.setServiceParent(service)
    service.startService()
    peer = WsPeer(factory)
    assert peer.upgrade().status == 101
    peer.send(coap(csm()))
    peer.frames()
    stopped: list[object] = []
    service.stopService().addBoth(stopped.append)
    assert peer.frames() == []  # no Release while the listener is still stopping
    listener.stopping.callback(None)
    release, close = peer.frames()
    assert release.opcode == OP_BINARY and release.coap().code == Code.RELEASE
    assert release.coap().payload == b"server shutting down"
    assert close.opcode == OP_CLOSE and close.close_code == 1000
    assert stopped == []  # until the connection is gone
    peer.send(frame((1000).to_bytes(2, "big"), OP_CLOSE))
    peer.lose()
    assert len(stopped) == 1 and not factory.connections
