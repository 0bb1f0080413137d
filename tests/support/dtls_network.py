"""A hand-pumped network of :class:`~coaptcp.transport.dtls.DtlsDatagramProtocol`
sockets on one :class:`~twisted.internet.task.Clock`, for the in-memory coaps:// tests."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.server import Request, Resource, Response
from coaptcp.transport.dtls import DtlsDatagramProtocol, DtlsLimits
from coaptcp.transport.tls import ClientTLSSettings, ServerTLSSettings

SERVER = ("127.0.0.1", 5684)
KEYS = {b"sensor": b"secret key"}


class Hello(Resource):
    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, b"hello over dtls")


def site() -> Resource:
    root = Resource()
    root.putChild("hello", Hello())
    return root


class Network:
    """Datagrams in flight between the protocols bound to addresses; delivered by pump()."""

    def __init__(self) -> None:
        self.bound: dict[tuple[str, int], Any] = {}
        self.queue: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = []
        self.sent_by: dict[tuple[str, int], int] = {}
        #: Every datagram delivered, with its source: what an observer on the path sees.
        self.delivered: list[tuple[bytes, tuple[str, int]]] = []

    def bind(self, protocol: Any, address: tuple[str, int]) -> None:
        self.bound[address] = protocol
        protocol.makeConnection(Port(self, address))

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            queue, self.queue = self.queue, []
            if not queue:
                return
            for data, source, target in queue:
                self.delivered.append((data, source))
                protocol = self.bound.get(target)
                if protocol is not None:
                    protocol.datagramReceived(data, source)


class Port:
    def __init__(self, network: Network, address: tuple[str, int]) -> None:
        self.network, self.address = network, address

    def write(self, data: bytes, addr: Any = None) -> None:
        self.network.queue.append((data, self.address, (addr[0], addr[1])))
        self.network.sent_by[self.address] = self.network.sent_by.get(self.address, 0) + 1

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", *self.address)


def pair(
    server: ServerTLSSettings | None = None,
    client: ClientTLSSettings | None = None,
    limits: DtlsLimits | None = None,
    client_address: tuple[str, int] = ("127.0.0.1", 40000),
) -> tuple[Network, Clock, DtlsDatagramProtocol, DtlsDatagramProtocol]:
    clock, network = Clock(), Network()
    ours = DtlsDatagramProtocol(site(), server=server or ServerTLSSettings(psk_keys=KEYS),
                                limits=limits, reactor=clock)
    theirs = DtlsDatagramProtocol(
        None, client=client or ClientTLSSettings(psk=(b"sensor", b"secret key")), reactor=clock
    )
    network.bind(ours, SERVER)
    network.bind(theirs, client_address)
    return network, clock, ours, theirs


def get(network: Network, client: DtlsDatagramProtocol, peer: tuple[str, int] = SERVER) -> Any:
    results: list[Any] = []
    d = client.coap.request(Code.GET, peer, options=Options([(11, "hello")]))
    d.addBoth(results.append)
    network.pump()
    assert results, "no answer"
    return results[0]


def client_hello(address: tuple[str, int]) -> bytes:
    """A real first ClientHello (no cookie), as a fresh client sends it."""
    clock, network = Clock(), Network()
    client = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"x")),
                                  reactor=clock)
    network.bind(client, address)
    client.send_plaintext(b"\x40\x01\x00\x01", SERVER)
    assert network.queue
    return network.queue[0][0]
