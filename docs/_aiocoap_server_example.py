"""Minimal aiocoap (0.4.17) CoAP-over-TCP server for interop testing.

Binds ONLY a plain-TCP listener (aiocoap transport name "tcpserver") on
127.0.0.1:PORT -- no UDP, TLS, WebSocket, DTLS or OSCORE.

    python3 docs/_aiocoap_server_example.py 24001 [-v]

Resources:
    GET       /hello   -> 2.05 "hello world" (text/plain)
    PUT/POST  /echo    -> 2.04 (PUT) / 2.05 (POST), payload echoed back
    GET       /big     -> 2.05, 4000 bytes (b"0123456789" * 400)
    GET       /.well-known/core

Prints "READY <port>" on stdout once the listener is bound, so a test
harness can wait for that line instead of sleeping.
"""

import argparse
import asyncio
import logging

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.contentformat import ContentFormat

TEXT = ContentFormat.TEXT  # text/plain; charset=utf-8 (== 0)
BIG = b"0123456789" * 400  # 4000 bytes


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"hello world", content_format=TEXT)


class Echo(resource.Resource):
    async def render_put(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=request.payload)


class Big(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=BIG, content_format=TEXT)


async def main(port):
    site = resource.Site()
    site.add_resource([".well-known", "core"],
                      resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["hello"], Hello())
    site.add_resource(["echo"], Echo())
    site.add_resource(["big"], Big())

    # transports=["tcpserver"] overrides the default list (oscore, tcpserver,
    # tcpclient, tlsserver, tlsclient, ws, udp6 ...); the environment variable
    # AIOCOAP_SERVER_TRANSPORT=tcpserver has the same effect when transports
    # is not passed.  bind=(host, port) is used as-is for coap+tcp.
    ctx = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["tcpserver"])
    print("READY", port, flush=True)
    try:
        await asyncio.get_running_loop().create_future()  # run forever
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        asyncio.run(main(args.port))
    except KeyboardInterrupt:
        pass
