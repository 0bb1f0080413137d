"""CoAP over WebSockets sharing a port with web pages (``websocket_resource``), in memory.

A ``twisted.web`` site built by :func:`coaptcp.tap.websocket.make_web_site` (what ``twistd coaptcp
--ws`` serves) on a StringTransport: the CoAP endpoint at ``/.well-known/coap``, 404
elsewhere.  (The static files at ``/`` go through twisted.web's producers and the global
cooperator, so they are checked against the real server in test_ws_loopback.py.)
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource as WebResource
from twisted.web.server import Site as WebSite
from twisted.web.static import Data
from ws_helpers import WebPeer
from ws_wire import OP_BINARY, coap, csm, get, handshake, parse_frames, parse_http

from coaptcp.core.codes import Code
from coaptcp.server.resource import Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.tap.websocket import make_web_site
from coaptcp.transport.websocket.resource import CoapWebSocketResource, websocket_resource
from coaptcp.transport.websocket.server import CoapWebSocketServerFactory


def http_get(site: WebSite, path: str) -> tuple[int, dict[str, str], bytes]:
    peer = WebPeer(site)
    peer.send(f"GET {path} HTTP/1.1\r\nHost: example.org\r\n\r\n".encode())
    response = parse_http(peer.output())
    assert response is not None
    return response.status, response.headers, response.body_and_rest


def test_other_paths_get_404_from_twisted_web(clock) -> None:
    web_site, _ = make_web_site(Site(make_demo_site()), reactor=clock)
    assert http_get(web_site, "/nothing-here")[0] == 404
    assert http_get(web_site, "/.well-known/other")[0] == 404


def test_plain_get_of_the_endpoint_gets_426(clock) -> None:
    web_site, _ = make_web_site(Site(make_demo_site()), reactor=clock)
    assert http_get(web_site, "/.well-known/coap")[0] == 426


def test_upgrade_on_the_shared_port_speaks_coap(clock) -> None:
    web_site, factory = make_web_site(Site(make_demo_site()), reactor=clock)
    peer = WebPeer(web_site)
    peer.send(handshake(host="shared.example:8080"))
    response = parse_http(peer.output())
    assert response is not None and response.status == 101
    assert response.headers["sec-websocket-protocol"] == "coap"
    (first,), _ = parse_frames(response.body_and_rest)
    assert first.coap().code == Code.CSM
    assert len(factory.connections) == 1
    sent = len(peer.output())
    peer.send(coap(csm(65536)) + coap(get(b"i", "info")))
    frames, rest = parse_frames(peer.output()[sent:])
    assert rest == b"" and [f.opcode for f in frames] == [OP_BINARY]
    info = json.loads(frames[0].coap().payload)
    assert info["host"] == "shared.example" and info["secure"] is False


def test_upgrade_without_coap_on_the_shared_port_is_refused(clock) -> None:
    web_site, factory = make_web_site(Site(make_demo_site()), reactor=clock)
    peer = WebPeer(web_site)
    peer.send(handshake(protocols=("chat",)))
    response = parse_http(peer.output())
    assert response is not None and response.status == 400
    assert '"coap"' in response.reason
    assert not factory.connections


def test_web_socket_resource_mounts_into_an_existing_site(clock) -> None:
    web_root = WebResource()
    web_root.putChild(b"", Data(b"<h1>my app</h1>", "text/html"))
    well_known = WebResource()
    well_known.putChild(b"security.txt", Data(b"Contact: x", "text/plain"))
    web_root.putChild(b".well-known", well_known)
    mounted = websocket_resource(web_root, make_demo_site(), reactor=clock)
    assert isinstance(mounted, CoapWebSocketResource)
    assert isinstance(mounted.factory, CoapWebSocketServerFactory)
    assert mounted.factory.path is None  # twisted.web has routed the request already
    site = WebSite(web_root)
    assert http_get(site, "/")[2] == b"<h1>my app</h1>"
    assert http_get(site, "/.well-known/security.txt")[2] == b"Contact: x"
    peer = WebPeer(site)
    peer.send(handshake())  # a client waits for the 101 before sending (RFC 6455 4.1)
    peer.send(coap(csm(65536)) + coap(get(b"h", "hello")))
    response = parse_http(peer.output())
    assert response is not None and response.status == 101
    frames, _ = parse_frames(response.body_and_rest)
    assert [f.coap().code for f in frames] == [Code.CSM, Code.CONTENT]
    assert frames[1].coap().payload == b"Hello, world!"


def test_web_socket_resource_accepts_a_ready_factory(clock) -> None:
    factory = CoapWebSocketServerFactory(None, path=None, reactor=clock)
    web_root = WebResource()
    assert websocket_resource(web_root, factory).factory is factory
    assert web_root.children[b".well-known"].children[b"coap"].factory is factory


def test_mounted_the_websocket_protocol_is_the_transports_producer(clock) -> None:
    # twisted.web's HTTP channel registered itself first; it would never pause reading
    # once the upgrade request is handed over (the request never ends), so the CoAP
    # protocol takes its place and a peer that does not read stops being read from.
    web_site, _factory = make_web_site(Site(make_demo_site()), reactor=clock)
    peer = WebPeer(web_site)
    peer.send(handshake())
    ws = peer.transport.protocol
    assert peer.transport.producer is ws and peer.transport.streaming
    ws.pauseProducing()
    assert peer.transport.producerState == "paused"
    ws.resumeProducing()
    assert peer.transport.producerState == "producing"
    sent = len(peer.output())
    peer.send(coap(csm(65536)) + coap(get(b"h", "hello")))
    frames, _ = parse_frames(peer.output()[sent:])
    assert [f.coap().payload for f in frames] == [b"Hello, world!"]
