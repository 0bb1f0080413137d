"""Minimal aiocoap server used as the benchmark baseline.

One transport per process, bound to 127.0.0.1, serving ``GET /hello`` -> 2.05
Content, text/plain, ``Hello, world!`` (and ``/obs``, observable, its state set by PUT,
for fanout.py):

  tcp  aiocoap's ``tcpserver`` transport (coap+tcp) on PORT (the default)
  tls  ``tlsserver`` (coaps+tcp) on PORT; aiocoap binds "bind port + 1", so it is
       given PORT - 1.  The certificate and key go into an ``ssl.SSLContext``
       with ALPN "coap", as aiocoap's own ``--tls-server-certificate`` does.
  ws   ``ws`` (coap+ws, path /.well-known/coap) on PORT; aiocoap binds "bind
       port + 3000", so it is given PORT - 3000
  wss  ``ws`` with the SSLContext: aiocoap serves coaps+ws on "bind port + 3001"
       (= PORT) and, unavoidably, plain coap+ws on PORT - 1 as well
  udp  ``udp6`` (coap://, RFC 7252) on PORT

Usage: python benchmarks/aiocoap_server.py PORT [--host 127.0.0.1]
           [--transport tcp|tls|ws|wss|udp --cert PEM --key PEM]

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


class State(resource.ObservableResource):
    """``/obs`` (fanout.py): GET the last PUT's payload; a PUT notifies every observer."""

    def __init__(self):
        super().__init__()
        self.value = b"0"

    async def render_get(self, request):
        return aiocoap.Message(code=aiocoap.CONTENT, payload=self.value)

    async def render_put(self, request):
        self.value = request.payload
        self.updated_state()
        return aiocoap.Message(code=aiocoap.CHANGED)


def tls_context(cert, key, alpn):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    if alpn:
        ctx.set_alpn_protocols([alpn])
    return ctx


async def main(host: str, port: int, transport: str, cert, key) -> None:
    site = resource.Site()
    site.add_resource(["hello"], Hello())
    site.add_resource(["obs"], State())
    # one server transport: no UDP, no client transports
    name, bind_port, ssl_ctx = {
        "tcp": ("tcpserver", port, None),
        "tls": ("tlsserver", port - 1, "coap"),
        "ws": ("ws", port - 3000, None),
        "wss": ("ws", port - 3001, "http/1.1"),
        "udp": ("udp6", port, None),
    }[transport]
    if ssl_ctx is not None:
        ssl_ctx = tls_context(cert, key, ssl_ctx if transport == "tls" else None)
    ctx = await aiocoap.Context.create_server_context(
        site, bind=(host, bind_port), transports=[name], _ssl_context=ssl_ctx
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = {"tcp": "coap+tcp", "tls": "coaps+tcp", "ws": "coap+ws", "wss": "coaps+ws",
              "udp": "coap"}
    print(f"aiocoap {aiocoap.meta.version} listening on {scheme[transport]}://{host}:{port}/hello",
          flush=True)
    await stop.wait()
    await ctx.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--transport", choices=("tcp", "tls", "ws", "wss", "udp"), default="tcp")
    ap.add_argument("--cert", help="server certificate (PEM), for tls and wss")
    ap.add_argument("--key", help="its private key (PEM)")
    args = ap.parse_args()
    if args.transport in ("tls", "wss") and not args.cert:
        ap.error(f"--transport {args.transport} needs --cert (and --key)")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.host, args.port, args.transport, args.cert, args.key))
