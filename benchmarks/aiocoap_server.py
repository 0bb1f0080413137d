"""Minimal aiocoap server used as the benchmark baseline.

CoAP over TCP only (aiocoap's ``tcpserver`` transport), bound to 127.0.0.1,
serving ``GET /hello`` -> 2.05 Content, text/plain, ``Hello, world!``.

Usage: python benchmarks/aiocoap_server.py PORT [--host 127.0.0.1]

Runs until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import logging
import signal

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.contentformat import ContentFormat

PAYLOAD = b"Hello, world!"


class Hello(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(
            code=aiocoap.CONTENT,
            payload=PAYLOAD,
            content_format=ContentFormat.TEXT,
        )


async def main(host: str, port: int) -> None:
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    # transports=["tcpserver"]: no UDP, no TLS, no client transports.
    ctx = await aiocoap.Context.create_server_context(
        site, bind=(host, port), transports=["tcpserver"]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"aiocoap {aiocoap.meta.version} listening on coap+tcp://{host}:{port}/hello",
          flush=True)
    await stop.wait()
    await ctx.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.host, args.port))
