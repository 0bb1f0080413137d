"""An aiocoap 0.4.17 coaps:// server (its tinydtls_server transport, DTLS PSK) for the
interop tests, on 127.0.0.1.

Usage: ``python aiocoap_dtls_peer.py PORT IDENTITY KEY``.  The resources of
``aiocoap_peer.py`` (``/hello``, ``/echo``, ``/big``) over DTLS on PORT + 1, and over plain
coap+tcp on PORT, only so that the fixture can see that the server is up.
aiocoap's DTLS transports need the DTLSSocket package (tinydtls), in the test extra.
"""

import asyncio
import sys

from aiocoap.credentials import CredentialsMap
from aiocoap_peer import make_site, serve


async def main(port: int, identity: str, key: str) -> None:
    credentials = CredentialsMap()
    credentials.load_from_dict({
        ":client": {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}},
    })
    await serve(make_site(b"hello from aiocoap over dtls"), port, "tcpserver",
                extra_transports=["tinydtls_server"], server_credentials=credentials)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
