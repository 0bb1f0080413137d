"""The bare Twisted ceiling: a CoAP-over-TCP server that does nothing but frame.

    python benchmarks/bare_server.py PORT [--eager | --turn] [--reactor epoll|poll|select]

It splits the stream into RFC 8323 section 3.2 frames and answers every request with the
same 2.05 ``Hello, world!`` (its token echoed; no option is parsed, nothing is checked),
sends its CSM when connected, answers a Ping with a Pong and closes on a Release: what the
same reactor and transport cost with (almost) no CoAP work.  ``--eager`` sends each read's
answers from ``dataReceived`` when Twisted holds nothing unsent (``socket.send``, the rest
to ``transport.write``) instead of leaving them to the reactor's next turn: the ceiling of
writing at once; ``--turn`` holds them in Twisted's buffer and sends every connection's at
the end of the turn (one ``callLater(0)``), before the reactor polls again.  Not a CoAP
implementation: for ``run.py``, ``connsetup.py`` only.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet.protocol import Factory, Protocol

CSM = b"\x00\xe1"
# 2.05, Content-Format 0 (text/plain), payload "Hello, world!": the others' answer.
BODY = b"\x45"  # code; then the token, then OPTIONS_PAYLOAD
OPTIONS_PAYLOAD = b"\xc0\xffHello, world!"
EXTENDED = {13: 1, 14: 2, 15: 4}
OFFSET = {13: 13, 14: 269, 15: 65805}


def answer(token: bytes) -> bytes:
    length = len(OPTIONS_PAYLOAD)  # 15: one extended length byte (13 + 2)
    return bytes([13 << 4 | len(token), length - 13]) + BODY + token + OPTIONS_PAYLOAD


class Bare(Protocol):
    eager = False
    turn = False  # --turn: queue in Twisted's buffer, send all at the end of the turn
    reactor = None
    queued: list = []
    call = None

    def connectionMade(self) -> None:
        self.buffer = b""
        self.transport.setTcpNoDelay(True)
        self.transport.write(CSM)

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        out = []
        pos = 0
        end = len(buf)
        while pos + 2 <= end:
            first = buf[pos]
            nib, tkl = first >> 4, first & 15
            ext = EXTENDED.get(nib, 0)
            if pos + 2 + ext > end:
                break
            length = nib
            if nib >= 13:
                length = int.from_bytes(buf[pos + 1:pos + 1 + ext], "big") + OFFSET[nib]
            code_at = pos + 1 + ext
            total = 2 + ext + tkl + length
            if pos + total > end:
                break
            code = buf[code_at]
            token = buf[code_at + 1:code_at + 1 + tkl]
            pos += total
            if 1 <= code <= 31:
                out.append(answer(token))
            elif code == 0xE2:  # Ping -> Pong
                out.append(bytes([tkl]) + b"\xe3" + token)
            elif code in (0xE4, 0xE5):  # Release, Abort
                self.send(b"".join(out))
                out = []
                self.transport.loseConnection()
                break
        self.buffer = buf[pos:]
        if out:
            self.send(b"".join(out))

    def send(self, data: bytes) -> None:
        if not data:
            return
        transport = self.transport
        if self.turn:
            if not transport.dataBuffer and not transport._tempDataLen:
                transport._tempDataBuffer.append(data)
                transport._tempDataLen += len(data)
                Bare.queued.append(transport)
                if Bare.call is None:
                    Bare.call = Bare.reactor.callLater(0, flush_turn)
            else:
                transport.write(data)
            return
        if self.eager and not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                transport.write(data)
                return
            if sent < len(data):
                transport.write(data[sent:])
            return
        transport.write(data)


def flush_turn() -> None:
    Bare.call = None
    queued, Bare.queued = Bare.queued, []
    for transport in queued:
        if transport.connected and not transport.disconnecting:
            if transport.doWrite() is not None or transport._tempDataLen or transport.dataBuffer:
                transport.startWriting()
        else:
            transport.startWriting()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--eager", action="store_true", help="send from dataReceived")
    parser.add_argument("--turn", action="store_true",
                        help="send at the end of the reactor's turn (one callLater(0))")
    parser.add_argument("--reactor", default="epoll", choices=["epoll", "poll", "select"])
    args = parser.parse_args()
    if args.reactor == "epoll":
        from twisted.internet import epollreactor as chosen
    elif args.reactor == "poll":
        from twisted.internet import pollreactor as chosen  # type: ignore[no-redef]
    else:
        from twisted.internet import selectreactor as chosen  # type: ignore[no-redef]
    chosen.install()
    from twisted.internet import reactor

    Bare.eager = args.eager
    Bare.turn = args.turn
    Bare.reactor = reactor
    factory = Factory.forProtocol(Bare)
    factory.noisy = False
    reactor.listenTCP(args.port, factory, backlog=1024, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"bare{' eager' if args.eager else ''} on 127.0.0.1:{args.port}", file=sys.stderr)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
