"""What a coaps:// socket counts for ``--metrics`` (RFC 7252 section 9): handshakes that
fail after the cookie, by kind, and handshakes refused at a bound, by the bound's name."""

from __future__ import annotations

from typing import Any

from dtls_network import SERVER, Network, site
from twisted.internet.task import Clock

from coaptcp.core.codes import Code
from coaptcp.server import Site
from coaptcp.server.counts import EventCounts
from coaptcp.transport.dtls import DtlsDatagramProtocol, DtlsLimits
from coaptcp.transport.tls import ClientTLSSettings, ServerTLSSettings


def counted_server(network: Network, clock: Clock, limits: DtlsLimits | None = None
                   ) -> tuple[DtlsDatagramProtocol, EventCounts]:
    counts = EventCounts()
    served = Site(site())
    served.counts = counts
    ours = DtlsDatagramProtocol(served, server=ServerTLSSettings(psk_keys={b"sensor": b"key"}),
                                limits=limits, reactor=clock)
    network.bind(ours, SERVER)
    return ours, counts


def client(network: Network, clock: Clock, address: tuple[str, int], key: bytes) -> Any:
    theirs = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", key)),
                                  reactor=clock)
    network.bind(theirs, address)
    results: list[Any] = []
    theirs.coap.request(Code.GET, SERVER).addBoth(results.append)
    network.pump()
    return results


def test_a_wrong_key_is_counted_as_a_timed_out_handshake() -> None:
    clock, network = Clock(), Network()
    ours, counts = counted_server(network, clock)
    assert client(network, clock, ("127.0.0.1", 40000), b"key")  # a good one: not counted
    client(network, clock, ("127.0.0.1", 40001), b"wrong key")
    clock.advance(DtlsLimits().handshake_timeout + 1)
    assert counts.dtls_failures == {"timeout": 1}
    assert ours.sessions == 1


def test_handshakes_refused_at_a_bound_are_counted_by_its_name() -> None:
    clock, network = Clock(), Network()
    _, counts = counted_server(network, clock, DtlsLimits(max_sessions=1))
    client(network, clock, ("127.0.0.1", 40000), b"key")
    client(network, clock, ("127.0.0.2", 40000), b"key")
    assert counts.limits == {"dtls_max_sessions": 1}


def test_without_counts_nothing_is_counted_and_nothing_breaks() -> None:
    clock, network = Clock(), Network()
    ours = DtlsDatagramProtocol(site(), server=ServerTLSSettings(psk_keys={b"sensor": b"key"}),
                                limits=DtlsLimits(max_sessions=1), reactor=clock)
    network.bind(ours, SERVER)
    assert ours.coap.counts is None
    client(network, clock, ("127.0.0.1", 40001), b"wrong key")
    client(network, clock, ("127.0.0.2", 40000), b"key")
    clock.advance(DtlsLimits().handshake_timeout + 1)
    assert ours.sessions == 0
