"""An aiocoap 0.4.17 server for the interop tests, on 127.0.0.1: CoAP over TCP only, or
over WebSockets only.

Usage: ``python aiocoap_peer.py PORT`` (TCP) or ``python aiocoap_peer.py PORT ws``.
aiocoap binds its WebSocket server 3000 ports above the port it is given, so over
WebSockets it is given PORT - 3000.  Resources: ``GET /hello`` (text, "hello from aiocoap",
with " over ws" over WebSockets), ``PUT``/``POST /echo`` (answers with the request
payload), ``GET /big`` (4,000 bytes), and aiocoap's own ``/.well-known/core``.

The other aiocoap peers build on :func:`make_site` and :func:`serve`.
"""

import asyncio
import sys

import aiocoap
import aiocoap.resource as resource

BIG = bytes(range(32, 127)) * 42 + b"!" * 10  # 4,000 bytes, recognisable at both ends


class Hello(resource.Resource):
    def __init__(self, text: bytes = b"hello from aiocoap"):
        super().__init__()
        self.text = text

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.text)


class Echo(resource.Resource):
    async def render_put(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class Big(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=BIG)


def make_site(hello: bytes = b"hello from aiocoap") -> resource.Site:
    """/hello, /echo, /big and /.well-known/core."""
    site = resource.Site()
    site.add_resource([".well-known", "core"],
                      resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["hello"], Hello(hello))
    site.add_resource(["echo"], Echo())
    site.add_resource(["big"], Big())
    return site


async def serve(
    site: resource.Site, port: int, transport: str, extra_transports=(), **kwargs
) -> None:
    """Serve ``site`` on 127.0.0.1 with the aiocoap ``transport`` (and any
    ``extra_transports``), until killed."""
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=[transport, *extra_transports], **kwargs
    )
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


async def main(port: int, over: str) -> None:
    if over == "ws":
        await serve(make_site(b"hello from aiocoap over ws"), port - 3000, "ws")
    else:
        await serve(make_site(), port, "tcpserver")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "tcp"))
