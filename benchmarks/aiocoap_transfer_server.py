"""The aiocoap side of ``benchmarks/transfer.py``: the same resources as transfer_site.py.

Usage: ``python benchmarks/aiocoap_transfer_server.py PORT SIZE``.  CoAP over TCP only
(``tcpserver``), on 127.0.0.1: ``GET /blob`` (SIZE bytes of the same pattern),
``PUT``/``POST /sink`` (2.04 with the SHA-256 of the body; aiocoap's Site reassembles
Block1), ``GET /hello``.  Runs until SIGTERM/SIGINT.
"""

import asyncio
import hashlib
import logging
import signal
import sys

import aiocoap
import aiocoap.resource as resource


def body(size: int) -> bytes:
    period = bytes(range(251))
    return (period * (size // len(period) + 1))[:size]


class Blob(resource.Resource):
    def __init__(self, size):
        super().__init__()
        self.body = body(size)

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.body)


class Sink(resource.Resource):
    async def render_put(self, request):
        digest = hashlib.sha256(request.payload).hexdigest().encode()
        return aiocoap.Message(code=aiocoap.CHANGED, payload=digest)

    render_post = render_put


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"hello")


async def main(port: int, size: int) -> None:
    site = resource.Site()
    site.add_resource(["blob"], Blob(size))
    site.add_resource(["sink"], Sink())
    site.add_resource(["hello"], Hello())
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["tcpserver"]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await context.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
