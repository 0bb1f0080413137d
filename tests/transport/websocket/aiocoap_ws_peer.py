"""An aiocoap 0.4.17 CoAP-over-WebSockets server for the loopback tests, on 127.0.0.1.

Usage: ``python aiocoap_ws_peer.py PORT``.  aiocoap binds its WebSocket server 3000 ports
above the port it is given (INTEROP-NOTES 12), so it is given PORT - 3000.  Resources:
``GET /hello`` (text), ``PUT``/``POST /echo`` (answers with the request payload),
``GET /big`` (4,000 bytes), and aiocoap's own ``/.well-known/core``.
"""

import asyncio
import sys

import aiocoap
import aiocoap.resource as resource

BIG = bytes(range(32, 127)) * 42 + b"!" * 10  # 4,000 bytes, recognisable at both ends


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"hello from aiocoap over ws")


class Echo(resource.Resource):
    async def render_put(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


class Big(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=BIG)


async def main(port: int) -> None:
    site = resource.Site()
    site.add_resource([".well-known", "core"],
                      resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["hello"], Hello())
    site.add_resource(["echo"], Echo())
    site.add_resource(["big"], Big())
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port - 3000), transports=["ws"]
    )
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
