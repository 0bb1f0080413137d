"""coaps:// datagram sizes and replays, in memory (RFC 6347 sections 4.1.1, 4.1.2.6,
4.2.1 and 4.2.8).

A flight larger than the MTU (a certificate with many names) leaves as several datagrams,
none over the MTU, each holding whole records.  A ClientHello replayed from a peer's
address, cookie and all, starts a handshake beside the established session that never
replaces it; a real restart of the client on the same port does.  Cookies expire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dtls_network import SERVER, Network, get, site
from twisted.internet.task import Clock

from coaptcp.testing.certs import CertificateAuthority
from coaptcp.transport.dtls import DtlsDatagramProtocol, DtlsLimits
from coaptcp.transport.dtls.cookies import COOKIE_PERIOD, CookieJar
from coaptcp.transport.dtls.records import RECORD_HEADER, datagrams, is_client_hello
from coaptcp.transport.tls import ClientTLSSettings, ServerTLSSettings

CLIENT = ("127.0.0.1", 40000)


def record(kind: int, length: int, epoch: int = 0) -> bytes:
    return bytes([kind, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + bytes(6) \
        + length.to_bytes(2, "big") + b"x" * length


def split(data: bytes) -> list[int]:
    """The record lengths (header included) of a datagram, checking it holds whole records."""
    lengths = []
    while data:
        assert len(data) >= RECORD_HEADER
        size = RECORD_HEADER + int.from_bytes(data[11:13], "big")
        assert len(data) >= size, "a record was cut"
        lengths.append(size)
        data = data[size:]
    return lengths


def test_records_are_packed_whole_up_to_the_mtu() -> None:
    records = [record(22, 500), record(22, 500), record(22, 200), record(20, 1), record(22, 40)]
    out = list(datagrams(b"".join(records), 1232))
    assert [split(d) for d in out] == [[513, 513], [213, 14, 53]]
    assert b"".join(out) == b"".join(records)


def test_small_output_is_one_datagram_and_nothing_is_none() -> None:
    assert list(datagrams(record(23, 50), 256)) == [record(23, 50)]
    assert list(datagrams(b"", 256)) == []


def test_a_record_larger_than_the_mtu_goes_alone() -> None:
    out = list(datagrams(record(22, 100) + record(23, 2000) + record(22, 100), 1232))
    assert [split(d) for d in out] == [[113], [2013], [113]]


def test_client_hello_is_recognised_by_its_headers() -> None:
    hello = bytearray(record(22, 60))
    hello[13] = 1  # handshake type ClientHello
    assert is_client_hello(bytes(hello))
    assert not is_client_hello(record(22, 60))  # type 'x': not a ClientHello
    hello[3:5] = b"\0\1"  # epoch 1: encrypted, whatever it holds
    assert not is_client_hello(bytes(hello))


def test_mtu_out_of_range_is_refused() -> None:
    for mtu in (255, 65508):
        with pytest.raises(ValueError, match="MTU"):
            DtlsDatagramProtocol(site(), server=ServerTLSSettings(psk_keys={b"a": b"b"}),
                                 mtu=mtu, reactor=Clock())


def certificate_pair(tmp_path: Path, mtu: int) -> tuple[Network, DtlsDatagramProtocol,
                                                        DtlsDatagramProtocol]:
    ca = CertificateAuthority()
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem)
    # 80 names make a Certificate message of about 2 kB: more than one datagram
    names = ["localhost", *(f"host{i}.example.org" for i in range(80))]
    ca.issue(*names).write(tmp_path / "server.pem", tmp_path / "server.key")
    clock, network = Clock(), Network()
    ours = DtlsDatagramProtocol(
        site(), server=ServerTLSSettings(certificate=str(tmp_path / "server.pem"),
                                         private_key=str(tmp_path / "server.key")),
        reactor=clock, mtu=mtu)
    theirs = DtlsDatagramProtocol(None, client=ClientTLSSettings(ca_file=str(tmp_path / "ca.pem")),
                                  reactor=clock, mtu=mtu)
    network.bind(ours, SERVER)
    network.bind(theirs, CLIENT)
    theirs.expect_name(SERVER, "localhost")
    return network, ours, theirs


@pytest.mark.parametrize("mtu", [1232, 576])
def test_a_large_certificate_flight_leaves_in_datagrams_within_the_mtu(
        tmp_path: Path, mtu: int) -> None:
    network, _ours, theirs = certificate_pair(tmp_path, mtu)
    assert get(network, theirs).payload == b"hello over dtls"
    from_server = [len(data) for data, source in network.delivered if source == SERVER]
    assert sum(from_server) > 2000  # the flight really was larger than one datagram
    assert max(len(data) for data, _ in network.delivered) <= mtu
    assert all(split(data) for data, _ in network.delivered)  # whole records only


def recorded_handshake() -> tuple[Network, Clock, DtlsDatagramProtocol, DtlsDatagramProtocol,
                                  bytes]:
    """A PSK session set up over a recording network; and the client's ClientHello that
    carried the cookie, as an attacker on the path would have captured it."""
    clock, network = Clock(), Network()
    ours = DtlsDatagramProtocol(site(), server=ServerTLSSettings(psk_keys={b"sensor": b"k"}),
                                reactor=clock)
    theirs = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"k")),
                                  reactor=clock)
    network.bind(ours, SERVER)
    network.bind(theirs, CLIENT)
    assert get(network, theirs).payload == b"hello over dtls"
    hellos = [data for data, source in network.delivered
              if source == CLIENT and is_client_hello(data)]
    assert len(hellos) == 2  # the first, then the one with the cookie
    return network, clock, ours, theirs, hellos[1]


def test_a_replayed_client_hello_does_not_end_the_session() -> None:
    network, clock, ours, theirs, hello = recorded_handshake()
    ours.datagramReceived(hello, CLIENT)  # the replay, from the client's own address
    network.queue.clear()  # the attacker, not the client, would get the server's flight
    assert ours.sessions == 1 and ours.handshakes == 1  # a handshake beside the session
    assert ours.established(CLIENT)
    assert get(network, theirs).payload == b"hello over dtls"  # the session goes on
    clock.advance(DtlsLimits().handshake_timeout + 1)
    assert ours.handshakes == 0 and ours.sessions == 1
    assert get(network, theirs).payload == b"hello over dtls"


def test_replayed_client_hellos_never_pile_up() -> None:
    network, _, ours, theirs, hello = recorded_handshake()
    for _ in range(50):
        ours.datagramReceived(hello, CLIENT)
        network.queue.clear()
    assert ours.handshakes == 1 and ours.sessions == 1
    assert get(network, theirs).payload == b"hello over dtls"


def test_a_client_hello_replayed_after_its_cookie_expired_starts_nothing() -> None:
    network, clock, ours, theirs, hello = recorded_handshake()
    clock.advance(2 * COOKIE_PERIOD + 1)
    get(network, theirs)  # keeps the session from idling out
    ours.datagramReceived(hello, CLIENT)
    assert ours.handshakes == 0 and ours.sessions == 1
    answers = [data for data, _, target in network.queue if target == CLIENT]
    assert len(answers) == 1 and answers[0][13] == 3  # only a HelloVerifyRequest


def test_a_restarted_client_replaces_its_old_session() -> None:
    network, clock, ours, _theirs, _ = recorded_handshake()
    restarted = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"k")),
                                     reactor=clock)
    network.bind(restarted, CLIENT)  # same address, new DTLS state
    assert get(network, restarted).payload == b"hello over dtls"
    assert ours.sessions == 1 and ours.handshakes == 0
    assert get(network, restarted).payload == b"hello over dtls"


def test_a_new_handshake_that_fails_leaves_the_session() -> None:
    network, clock, ours, theirs, _ = recorded_handshake()
    impostor = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"wrong")),
                                    reactor=clock)
    network.bind(impostor, CLIENT)  # same address, a key it does not have
    results: list[Any] = []
    impostor.coap.request(1, SERVER).addBoth(results.append)
    network.pump()
    clock.advance(DtlsLimits().handshake_timeout + 1)
    network.pump()
    assert ours.handshakes == 0 and ours.sessions == 1 and ours.established(CLIENT)
    network.bound[CLIENT] = theirs  # the real client again
    assert get(network, theirs).payload == b"hello over dtls"


def test_cookies_are_per_address_and_expire() -> None:
    clock = Clock()
    jar = CookieJar(clock.seconds, period=30)
    cookie = jar.cookie(("192.0.2.1", 5000))
    assert jar.valid(("192.0.2.1", 5000), cookie)
    assert not jar.valid(("192.0.2.1", 5001), cookie)
    clock.advance(59)
    assert jar.valid(("192.0.2.1", 5000), cookie) == (clock.seconds() // 30 <= 1)
    clock.advance(2)
    assert not jar.valid(("192.0.2.1", 5000), cookie)
    with pytest.raises(ValueError):
        CookieJar(clock.seconds, period=0)
