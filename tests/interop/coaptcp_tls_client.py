"""Our side as a coaps+tcp client in the interop tests: one connection, one request.

Usage::

    python coaptcp_tls_client.py HOST PORT [--ca FILE] [--cert FILE --key FILE]
        [--psk IDENTITY KEY] [--server-name NAME] [--insecure] [--max-tls12]
        [--payload TEXT] METHOD PATH

Prints one JSON line: the response (code, payload) and the TLS outcome, or
``{"error": type, "message": ...}`` when the connection could not be set up.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from OpenSSL import SSL
from twisted.internet import task
from twisted.internet.defer import Deferred

from coaptcp import Code, Options
from coaptcp.transport.tls.connect import connect_tls
from coaptcp.transport.tls.errors import InsecureTLSWarning
from coaptcp.transport.tls.settings import ClientTLSSettings


async def main(reactor: Any, arguments: argparse.Namespace) -> None:
    settings = ClientTLSSettings(
        ca_file=arguments.ca,
        certificate=arguments.cert,
        private_key=arguments.key,
        psk=(arguments.psk[0].encode(), arguments.psk[1].encode()) if arguments.psk else None,
        insecure=arguments.insecure,
        server_name=arguments.server_name,
        handshake_timeout=10,
    )
    if arguments.max_tls12:
        settings.context.set_max_proto_version(SSL.TLS1_2_VERSION)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureTLSWarning)
        try:
            protocol = await connect_tls(reactor, arguments.host, arguments.port,
                                         settings=settings, timeout=10)
        except Exception as error:
            print(json.dumps({"error": type(error).__name__, "message": str(error)}), flush=True)
            return
    options = Options.build(uri_path=[p for p in arguments.path.strip("/").split("/") if p])
    payload = arguments.payload.encode() if arguments.payload else b""
    response = await protocol.request(Code[arguments.method], options, payload, timeout=10)
    tls = protocol.channel.tls
    report = {
        "code": response.code.dotted,
        "payload": response.payload.decode("utf-8", errors="replace"),
        "tls": tls.as_dict() if tls is not None else None,
        "warnings": [w.category.__name__ for w in caught],
    }
    print(json.dumps(report), flush=True)
    await protocol.release()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--psk", nargs=2)
    parser.add_argument("--server-name")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--max-tls12", action="store_true")
    parser.add_argument("--payload")
    parser.add_argument("method")
    parser.add_argument("path")
    parsed = parser.parse_args(sys.argv[1:])
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, parsed)))
