"""An aiocoap 0.4.17 server for the coaps+tcp interop tests, on 127.0.0.1.

Usage: ``python aiocoap_tls_peer.py PORT CERTIFICATE KEY``.  The resources of
``aiocoap_peer.py`` (``/hello``, ``/echo``, ``/big``) over TLS only, with a certificate and
ALPN "coap" set up the way aiocoap's own ``--tls-server-certificate`` option does it.

aiocoap's TLS server binds the given port plus one (5683 + 1 = 5684 by default); this
script asks for PORT - 1 so that it listens on PORT.
"""

import asyncio
import ssl
import sys

from aiocoap_peer import make_site, serve


async def main(port: int, certificate: str, key: str) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certfile=certificate, keyfile=key)
    tls.set_alpn_protocols(["coap"])
    await serve(make_site(), port - 1, "tlsserver", _ssl_context=tls)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
