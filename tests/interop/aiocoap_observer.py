"""Observe a resource with the aiocoap 0.4.17 library and print each notification.

Usage: ``python aiocoap_observer.py URI COUNT DEADLINE [PROXY]``.  Registers with GET
Observe=0 (through the forward proxy at the URI PROXY, with Proxy-Scheme, when given),
prints one JSON line per response (the first one included): ``{"code": "2.05 Content",
"observe": N or null, "max_age": N or null, "payload": "..."}``, and stops after ``COUNT``
of them or ``DEADLINE`` seconds, whichever comes first.  Exit status 0 when ``COUNT``
arrived, 1 otherwise.  (aiocoap-client prints notifications only on a terminal.)
"""

import asyncio
import json
import sys

import aiocoap
import aiocoap.proxy.client


def report(message: aiocoap.Message) -> None:
    line = {
        "code": str(message.code),
        "observe": message.opt.observe,
        "max_age": message.opt.max_age,
        "payload": message.payload.decode("utf-8", "replace"),
    }
    print(json.dumps(line), flush=True)


async def observe(uri: str, count: int, proxy: str | None) -> int:
    context = await aiocoap.Context.create_client_context()
    try:
        request = aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0)
        interface = context
        if proxy is not None:
            interface = aiocoap.proxy.client.ProxyForwarder(proxy, context)
        pending = interface.request(request)
        first = await pending.response
        report(first)
        seen = 1
        if seen < count:
            async for notification in pending.observation:
                report(notification)
                seen += 1
                if seen >= count:
                    break
        pending.observation.cancel()
        return seen
    finally:
        await context.shutdown()


async def main(uri: str, count: int, deadline: float, proxy: str | None) -> int:
    try:
        seen = await asyncio.wait_for(observe(uri, count, proxy), deadline)
    except TimeoutError:
        print(json.dumps({"timeout": deadline}), flush=True)
        return 1
    return 0 if seen >= count else 1


if __name__ == "__main__":
    proxy = sys.argv[4] if len(sys.argv) > 4 else None
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), proxy)))
