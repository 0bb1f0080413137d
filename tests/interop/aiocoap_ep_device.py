"""An aiocoap 0.4.17 device that calls in: it registers with a resource directory over
its own outgoing coap+tcp connection and serves its site on that same connection (RFC
8323 section 3.3: either side may send requests; aiocoap serves requests that arrive on
a client connection with the context's ``serversite``).

Usage: ``python aiocoap_ep_device.py coap+tcp://HOST:PORT NAME``.  Prints
``registered LOCATION`` once the directory answered 2.01, then serves until killed:

- ``GET /hello``: ``hello from NAME`` (with the request's query, if any, after ``?``).
- ``GET /time``: observable; a notification every 0.2 s while observed.
"""

import asyncio
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap_observed_peer import Time


class Hello(resource.Resource):
    def __init__(self, name):
        super().__init__()
        self.name = name

    async def render_get(self, request):
        text = "hello from " + self.name
        query = request.opt.uri_query
        if query:
            text += "?" + "&".join(query)
        return aiocoap.Message(code=aiocoap.CONTENT, payload=text.encode())


async def main(directory, name):
    site = resource.Site()
    site.add_resource(["hello"], Hello(name))
    site.add_resource(["time"], Time())
    context = await aiocoap.Context.create_client_context()
    context.serversite = site  # requests on our own connections are served from it
    request = aiocoap.Message(
        code=aiocoap.POST, uri=f"{directory}/rd?ep={name}",
        payload=b"</hello>,</time>;obs", content_format=40,
    )
    response = await context.request(request).response
    if response.code != aiocoap.CREATED:
        print("refused", response.code, response.payload, flush=True)
        return 1
    print("registered", "/" + "/".join(response.opt.location_path), flush=True)
    await asyncio.get_running_loop().create_future()  # serve until killed


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
