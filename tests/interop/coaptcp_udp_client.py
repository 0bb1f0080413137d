"""Our UDP client side as a child process: one request, the answer as one JSON line.

``python coaptcp_udp_client.py HOST PORT METHOD PATH [PAYLOAD]`` sends one CON request
with :class:`coaptcp.transport.udp.CoapDatagramProtocol` and prints
``{"code": "2.05", "payload": "..."}`` (or ``{"error": ...}`` and exit status 3).
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server import Response
from coaptcp.transport.udp import CoapDatagramProtocol


def main() -> int:
    host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    payload = sys.argv[5].encode() if len(sys.argv) > 5 else b""
    protocol = CoapDatagramProtocol(None, reactor=reactor)
    reactor.listenUDP(0, protocol, interface="127.0.0.1")  # type: ignore[attr-defined]
    segments = [s for s in path.strip("/").split("/") if s]
    options = Options([(OptionNumber.URI_PATH, s.encode()) for s in segments])
    status = [0]

    def answered(response: Response) -> None:
        payload = response.payload.decode("latin-1")
        print(json.dumps({"code": str(response.code), "payload": payload}))

    def failed(failure: Failure) -> None:
        print(json.dumps({"error": failure.getErrorMessage()}))
        status[0] = 3

    d: Deferred[Response] = protocol.request(Code[method], (host, port), payload, options=options)
    d.addCallbacks(answered, failed)
    d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
