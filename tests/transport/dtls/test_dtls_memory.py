"""DtlsDatagramProtocol in memory: two sockets joined by a hand-pumped network and a
MemoryReactorClock, no real sockets (RFC 7252 section 9, RFC 6347).

The handshake (PSK and certificates), the stateless cookie exchange, requests through the
UDP message layer, and every bound: handshakes in total and per host, sessions in total and
per host, the handshake timeout, the idle timeout, garbage and a failed handshake.
"""

from __future__ import annotations

from typing import Any

import pytest
from dtls_network import SERVER, Network, client_hello, get, pair

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.transport.dtls import DtlsDatagramProtocol, DtlsLimits
from coaptcp.transport.tls import ClientTLSSettings, ServerTLSSettings


def test_psk_request_and_response() -> None:
    network, _, ours, theirs = pair()
    response = get(network, theirs)
    assert (response.code, response.payload) == (Code.CONTENT, b"hello over dtls")
    assert ours.sessions == 1 and ours.handshakes == 0
    assert theirs.established(SERVER)


def test_certificate_request_and_name_check(pki: Any) -> None:
    server = ServerTLSSettings(certificate=pki.server, private_key=pki.server_key)
    good = ClientTLSSettings(ca_file=pki.ca)
    network, _, _, theirs = pair(server, good)
    theirs.expect_name(SERVER, "localhost")
    assert get(network, theirs).payload == b"hello over dtls"


def test_certificate_for_another_name_is_refused(pki: Any) -> None:
    server = ServerTLSSettings(certificate=pki.server, private_key=pki.server_key)
    network, _, _ours, theirs = pair(server, ClientTLSSettings(ca_file=pki.ca))
    theirs.expect_name(SERVER, "not-this-host.example")
    failure = get(network, theirs)
    assert failure.check(ConnectionClosedError)
    assert "not for not-this-host.example" in str(failure.value)
    assert theirs.sessions == 0


def test_untrusted_certificate_fails_the_request(pki: Any) -> None:
    server = ServerTLSSettings(certificate=pki.rogue_server, private_key=pki.rogue_server_key)
    network, _, _, theirs = pair(server, ClientTLSSettings(ca_file=pki.ca))
    theirs.expect_name(SERVER, "localhost")
    failure = get(network, theirs)
    assert failure.check(ConnectionClosedError) and "DTLS" in str(failure.value)


def test_wrong_psk_fails_the_request_and_leaves_no_session() -> None:
    network, clock, ours, theirs = pair(client=ClientTLSSettings(psk=(b"sensor", b"wrong key")))
    results: list[Any] = []
    theirs.coap.request(Code.GET, SERVER).addBoth(results.append)
    network.pump()
    clock.advance(10.5)  # DTLS drops records it cannot verify: the handshake times out
    network.pump()
    failure = results[0]
    assert failure.check(ConnectionClosedError)
    assert ours.sessions == 0 and theirs.sessions == 0


def test_client_hello_without_cookie_leaves_no_state() -> None:
    network, _, ours, _ = pair()
    for port in range(41000, 41200):
        ours.datagramReceived(client_hello(("198.51.100.9", port)), ("198.51.100.9", port))
    assert ours.sessions == 0 and ours.handshakes == 0
    # each was answered with a HelloVerifyRequest (handshake type 3) to its address
    answers = [q for q in network.queue if q[2][0] == "198.51.100.9"]
    assert len(answers) == 200 and all(data[0] == 22 and data[13] == 3 for data, _, _ in answers)


def test_garbage_is_dropped_without_answer() -> None:
    network, _, ours, theirs = pair()
    for junk in (b"", b"\x00", b"\x16\xfe\xfd" + b"\xff" * 60, b"\x40\x01\x00\x01hello"):
        ours.datagramReceived(junk, ("203.0.113.1", 1234))
    assert ours.sessions == 0 and network.queue == []
    get(network, theirs)  # an established session ignores garbage too
    ours.datagramReceived(b"\x17\xfe\xfd" + b"\x00" * 40, ("127.0.0.1", 40000))
    assert ours.sessions == 1
    assert get(network, theirs).payload == b"hello over dtls"


def handshake_to_cookie(network: Network, ours: DtlsDatagramProtocol,
                        address: tuple[str, int]) -> DtlsDatagramProtocol:
    """A client at ``address`` that gets past the cookie and then falls silent."""
    client = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"secret key")),
                                  reactor=ours.reactor)
    network.bind(client, address)
    client.send_plaintext(b"\x40\x01\x00\x01", SERVER)
    network.pump(3)  # ClientHello -> HelloVerifyRequest -> ClientHello with the cookie
    network.queue.clear()  # the server's flight is lost: the handshake stays half-done
    return client


def test_handshakes_per_host_are_bounded() -> None:
    limits = DtlsLimits(max_handshakes_per_host=3)
    network, _, ours, _ = pair(limits=limits)
    for port in range(42000, 42005):
        handshake_to_cookie(network, ours, ("192.0.2.50", port))
    assert ours.handshakes == 3
    handshake_to_cookie(network, ours, ("192.0.2.51", 42000))  # another host still gets one
    assert ours.handshakes == 4


def test_handshakes_in_total_are_bounded() -> None:
    network, _, ours, _ = pair(limits=DtlsLimits(max_handshakes=4))
    for host in range(10):
        handshake_to_cookie(network, ours, (f"192.0.2.{host + 60}", 43000))
    assert ours.handshakes == 4 and ours.sessions == 4


def new_client(network: Network, clock: Any, address: tuple[str, int]) -> DtlsDatagramProtocol:
    client = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"secret key")),
                                  reactor=clock)
    network.bind(client, address)
    return client


def answered(network: Network, client: DtlsDatagramProtocol) -> bool:
    results: list[Any] = []
    client.coap.request(Code.GET, SERVER, options=Options([(11, "hello")])).addBoth(
        results.append)
    network.pump()
    return bool(results) and getattr(results[0], "payload", None) == b"hello over dtls"


def test_sessions_are_bounded_in_total_and_per_host() -> None:
    network, clock, ours, theirs = pair(limits=DtlsLimits(max_sessions=3, max_sessions_per_host=2))
    assert answered(network, theirs)
    assert answered(network, new_client(network, clock, ("127.0.0.1", 40001)))
    assert not answered(network, new_client(network, clock, ("127.0.0.1", 40002)))  # per host
    assert ours.sessions == 2
    assert answered(network, new_client(network, clock, ("127.0.0.2", 40000)))
    assert not answered(network, new_client(network, clock, ("127.0.0.3", 40000)))  # in total
    assert ours.sessions == 3
    assert answered(network, theirs)  # the sessions kept go on working


def test_half_finished_handshake_times_out() -> None:
    network, clock, ours, _ = pair(limits=DtlsLimits(handshake_timeout=5.0))
    handshake_to_cookie(network, ours, ("192.0.2.70", 44000))
    assert ours.handshakes == 1
    clock.advance(4.9)
    assert ours.handshakes == 1
    clock.advance(0.2)
    assert ours.handshakes == 0 and ours.sessions == 0


def test_idle_session_is_dropped_and_activity_keeps_it() -> None:
    network, clock, ours, theirs = pair(limits=DtlsLimits(idle_timeout=100.0))
    get(network, theirs)
    clock.advance(90)
    get(network, theirs)
    clock.advance(90)
    assert ours.sessions == 1
    clock.advance(11)
    assert ours.sessions == 0


def test_handshake_retransmission_is_on_the_reactor() -> None:
    network, clock, _ours, theirs = pair()
    theirs.send_plaintext(b"\x40\x01\x00\x01", SERVER)
    network.queue.clear()  # the first ClientHello is lost
    calls = [c for c in clock.getDelayedCalls() if c.func.__name__ == "_retransmit"]
    assert len(calls) == 1 and 0 < calls[0].getTime() <= 2.0  # RFC 6347 4.2.4: 1 s


def test_new_client_hello_from_an_established_peer_replaces_its_session() -> None:
    network, clock, ours, theirs = pair()
    get(network, theirs)
    again = DtlsDatagramProtocol(None, client=ClientTLSSettings(psk=(b"sensor", b"secret key")),
                                 reactor=clock)
    network.bind(again, ("127.0.0.1", 40000))  # the client restarted on the same port
    assert get(network, again).payload == b"hello over dtls"
    assert ours.sessions == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        DtlsLimits(max_sessions=0)
    with pytest.raises(ValueError):
        DtlsLimits(handshake_timeout=0)


def test_closing_the_client_socket_sends_close_notify_and_frees_the_server_session() -> None:
    network, _, ours, theirs = pair()
    get(network, theirs)
    assert ours.sessions == 1
    theirs.doStop()
    network.pump()
    assert ours.sessions == 0 and theirs.sessions == 0
