"""An aiocoap 0.4.17 server for the client's Observe and block-wise interop tests.

Usage: ``python aiocoap_observed_peer.py PORT [udp]``.  CoAP over TCP on 127.0.0.1; with
``udp``, CoAP over UDP on the same port too (the TCP port still says when it is ready).
Resources:

- ``GET /time``: observable; a notification every 0.2 s while observed (aiocoap numbers
  them 0, 1, 2, ...: its first response carries an empty Observe, RFC 8323 section 7.1).
- ``GET /observers``: how many observations ``/time`` has, as text.
- ``GET /mib``: 1 MiB of ``i * 7 % 251`` (the bytes of our demo ``/big``).
- ``PUT /store``: keeps the body (aiocoap reassembles Block1); ``GET /store`` returns it.
"""

import asyncio
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap_peer import serve

MIB = bytes(i * 7 % 251 for i in range(1 << 20))


class Time(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.count = 0
        self.ticks = 0
        self.handle = None

    def update_observation_count(self, newcount):
        self.count = newcount
        if newcount and self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(0.2, self.tick)
        elif not newcount and self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def tick(self):
        self.ticks += 1
        self.updated_state()
        self.handle = asyncio.get_running_loop().call_later(0.2, self.tick)

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"tick %d" % self.ticks)


class Observers(resource.Resource):
    def __init__(self, time):
        super().__init__()
        self.time = time

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=str(self.time.count).encode())


class Mib(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=MIB)


class Store(resource.Resource):
    def __init__(self):
        super().__init__()
        self.value = b""

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.value)

    async def render_put(self, request):
        self.value = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


async def main(port: int, udp: bool) -> None:
    site = resource.Site()
    time = Time()
    site.add_resource(["time"], time)
    site.add_resource(["observers"], Observers(time))
    site.add_resource(["mib"], Mib())
    site.add_resource(["store"], Store())
    if udp:
        await serve(site, port, "tcpserver", extra_transports=["udp6"])
    else:
        await serve(site, port, "tcpserver")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:] == ["udp"]))
