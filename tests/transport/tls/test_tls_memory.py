"""coaps+tcp in memory: ALPN outcomes, certificate and name checks, client certificates,
PSK, what resources see, and handshake timeouts (RFC 8323 sections 8.2 and 9).

Both ends are real OpenSSL connections inside Twisted's TLS layer, joined by an iosim pump
on a MemoryReactorClock: no sockets, no sleeps.  Certificates come from the session's
throwaway PKI (tests/support/tls_helpers.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from OpenSSL import SSL
from tls_helpers import (
    OTHER_PORT,
    PKI,
    SERVER_PORT,
    connect_pair,
    demo_root,
    raw_client_context,
    raw_coap_server,
    raw_tls_client,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter

from coaptcp.channel.errors import ConnectionClosedError
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.framing import StreamDecoder, encode_frame
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.resource import Site
from coaptcp.transport.tcp import CoapFactory, CoapProtocol
from coaptcp.transport.tls.connect import connect_tls, listen_tls
from coaptcp.transport.tls.errors import (
    ALPNNotNegotiated,
    CertificateRejected,
    HandshakeFailed,
    HandshakeTimeout,
    InsecureTLSWarning,
)
from coaptcp.transport.tls.settings import ClientTLSSettings, ServerTLSSettings
from coaptcp.transport.tls.transport import tls_client_factory, tls_server_factory

PSK_KEYS = {b"sensor-17": b"\x8f\x1b\x3c\x5d\x7e\x9f\xa0\xb2\xc4\xd6", b"gateway": b"battery"}


def cert_server(pki: PKI, **kwargs: Any) -> ServerTLSSettings:
    return ServerTLSSettings(certificate=pki.server, private_key=pki.server_key, **kwargs)


def trusting_client(pki: PKI, **kwargs: Any) -> ClientTLSSettings:
    return ClientTLSSettings(ca_file=pki.ca, **kwargs)


def failure_of(outcome: Any, kind: type[BaseException]) -> str:
    assert isinstance(outcome, Failure), f"expected {kind.__name__}, got {outcome!r}"
    assert outcome.check(kind), outcome.getTraceback()
    return outcome.getErrorMessage()


CSM_AND_GET = encode_frame(Message(Code.CSM)) + encode_frame(
    Message(Code.GET, b"\x01", Options.build(uri_path=["whoami"]))
)


def decoded(data: bytes) -> list[Message]:
    decoder = StreamDecoder(1 << 20)
    decoder.feed(data)
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


# -- ALPN (RFC 8323 section 8.2) ------------------------------------------------------------


def test_our_client_and_server_negotiate_coap(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki), port=OTHER_PORT)
    protocol = pair.handshake()
    assert isinstance(protocol, CoapProtocol)
    assert protocol.channel.tls is not None and protocol.channel.tls.alpn == "coap"
    seen = pair.whoami()
    assert seen["secure"] is True
    assert seen["tls"]["alpn"] == "coap"
    assert seen["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


def test_client_offering_no_alpn_is_served_by_default(pki: PKI) -> None:
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=None))
    pair = connect_pair(cert_server(pki), client, port=OTHER_PORT, clock=clock)
    pair.client_tls.write(CSM_AND_GET)
    pair.pump.flush()
    messages = decoded(recorder.received)
    assert [m.code for m in messages] == [Code.CSM, Code.CONTENT]
    assert b'"alpn":null' in messages[1].payload
    assert recorder.lost is None


def test_require_alpn_closes_clients_without_alpn_on_other_ports(pki: PKI) -> None:
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=None))
    with capturedLogs() as events:
        pair = connect_pair(
            cert_server(pki, require_alpn=True), client, port=OTHER_PORT, clock=clock
        )
        pair.client_tls.write(CSM_AND_GET)
        pair.pump.flush()
    assert recorder.received == b""
    assert recorder.lost is not None
    assert pair.served_nothing()
    assert any("requires 'coap'" in str(e.get("error")) for e in events)


def test_require_alpn_still_serves_clients_without_alpn_on_5684(pki: PKI) -> None:
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=None))
    pair = connect_pair(cert_server(pki, require_alpn=True), client, port=SERVER_PORT,
                        clock=clock)
    pair.client_tls.write(CSM_AND_GET)
    pair.pump.flush()
    assert [m.code for m in decoded(recorder.received)] == [Code.CSM, Code.CONTENT]


def test_client_offering_alpn_without_coap_gets_no_application_protocol(pki: PKI) -> None:
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=[b"h2", b"mqtt"]))
    with capturedLogs() as events:
        pair = connect_pair(cert_server(pki), client, clock=clock)
        pair.client_tls.write(CSM_AND_GET)
        pair.pump.flush()
    assert recorder.received == b""
    assert recorder.lost is not None and recorder.lost.check(SSL.Error)
    # The alert the client received (RFC 7301 section 3.2: no_application_protocol).
    assert "no application protocol" in str(recorder.lost.value)
    assert pair.served_nothing()
    assert any("without 'coap'" in str(e.get("error")) for e in events)


def test_client_offering_coap_among_others_gets_coap(pki: PKI) -> None:
    clock = MemoryReactorClock()
    client, recorder = raw_tls_client(clock, raw_client_context(pki.ca, alpn=[b"h2", b"coap"]))
    pair = connect_pair(cert_server(pki), client, clock=clock)
    pair.client_tls.write(CSM_AND_GET)
    pair.pump.flush()
    assert pair.client_tls.negotiatedProtocol == b"coap"
    assert b'"alpn":"coap"' in decoded(recorder.received)[1].payload


def test_our_client_closes_when_the_server_ignores_alpn_on_another_port(pki: PKI) -> None:
    clock = MemoryReactorClock()
    pair = connect_pair(
        raw_coap_server(clock, pki, alpn=None), trusting_client(pki), port=OTHER_PORT,
        clock=clock,
    )
    message = failure_of(pair.handshake(), ALPNNotNegotiated)
    assert "did not select ALPN 'coap'" in message and "8.2" in message
    assert pair.client_transport.disconnected or pair.client_transport.disconnecting
    # Our CSM never went out: the raw server's CoAP side saw nothing.
    assert pair.served_nothing()


def test_our_client_accepts_no_alpn_on_5684(pki: PKI) -> None:
    clock = MemoryReactorClock()
    pair = connect_pair(
        raw_coap_server(clock, pki, alpn=None), trusting_client(pki), port=SERVER_PORT,
        clock=clock,
    )
    assert isinstance(pair.handshake(), CoapProtocol)
    assert pair.client.channel.tls is not None and pair.client.channel.tls.alpn is None
    assert pair.whoami()["secure"] is True


def test_our_client_alpn_rule_can_be_relaxed(pki: PKI) -> None:
    clock = MemoryReactorClock()
    pair = connect_pair(
        raw_coap_server(clock, pki, alpn=None), trusting_client(pki, require_alpn=False),
        port=OTHER_PORT, clock=clock,
    )
    assert isinstance(pair.handshake(), CoapProtocol)


def test_our_client_alpn_rule_can_be_tightened_on_5684(pki: PKI) -> None:
    clock = MemoryReactorClock()
    pair = connect_pair(
        raw_coap_server(clock, pki, alpn=None), trusting_client(pki, require_alpn=True),
        port=SERVER_PORT, clock=clock,
    )
    failure_of(pair.handshake(), ALPNNotNegotiated)


# -- server certificates and names ----------------------------------------------------------


def test_sni_is_sent_and_becomes_the_default_uri_host(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki))
    pair.handshake()
    seen = pair.whoami()
    assert seen["tls"]["server_name"] == "localhost"
    assert seen["host"] == "localhost"
    assert pair.client.channel.tls is not None
    assert pair.client.channel.tls.server_name == "localhost"
    assert pair.client.channel.tls.peer_subject == "CN=localhost"
    assert "DNS:localhost" in pair.client.channel.tls.peer_san


def test_uri_host_option_overrides_the_sni_default(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki))
    pair.handshake()
    response = pair.get(options=Options.build(uri_host="virtual.example", uri_path=["whoami"]))
    assert b'"host":"virtual.example"' in response.payload


def test_ip_address_is_checked_against_ip_san_and_sends_no_sni(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki, server_name="127.0.0.1"))
    assert isinstance(pair.handshake(), CoapProtocol)
    seen = pair.whoami()
    assert seen["tls"]["server_name"] is None
    assert seen["host"] == "127.0.0.1"  # the destination address (RFC 8323 section 8.5)


def test_wrong_host_is_rejected(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki, server_name="coap.example.net"))
    message = failure_of(pair.handshake(), CertificateRejected)
    assert "not valid for coap.example.net" in message
    assert pair.served_nothing()


def test_certificate_for_another_host_is_rejected(pki: PKI) -> None:
    server = ServerTLSSettings(certificate=pki.other_host, private_key=pki.other_host_key)
    pair = connect_pair(server, trusting_client(pki))
    assert "not valid for localhost" in failure_of(pair.handshake(), CertificateRejected)


def test_wrong_ip_address_is_rejected(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), trusting_client(pki, server_name="192.0.2.1"))
    assert "not valid for 192.0.2.1" in failure_of(pair.handshake(), CertificateRejected)


def test_expired_certificate_is_rejected(pki: PKI) -> None:
    server = ServerTLSSettings(certificate=pki.expired, private_key=pki.expired_key)
    pair = connect_pair(server, trusting_client(pki))
    assert "expired" in failure_of(pair.handshake(), CertificateRejected)
    assert pair.served_nothing()


def test_untrusted_ca_is_rejected(pki: PKI) -> None:
    server = ServerTLSSettings(certificate=pki.rogue_server, private_key=pki.rogue_server_key)
    pair = connect_pair(server, trusting_client(pki))
    assert "not a trusted CA" in failure_of(pair.handshake(), CertificateRejected)
    assert pair.served_nothing()


def test_system_trust_store_does_not_trust_a_private_ca(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki), ClientTLSSettings())
    failure_of(pair.handshake(), CertificateRejected)


def test_insecure_client_connects_to_anyone_and_says_so(pki: PKI) -> None:
    server = ServerTLSSettings(certificate=pki.rogue_server, private_key=pki.rogue_server_key)
    with capturedLogs() as events, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = connect_pair(server, ClientTLSSettings(insecure=True))
        assert isinstance(pair.handshake(), CoapProtocol)
    assert any(issubclass(w.category, InsecureTLSWarning) for w in caught)
    insecure = [e for e in events if "INSECURE" in e.get("log_format", "")]
    assert insecure and insecure[0]["log_level"].name == "warn"
    assert pair.whoami()["secure"] is True


# -- client certificates --------------------------------------------------------------------


def test_client_certificate_is_shown_to_resources(pki: PKI) -> None:
    server = cert_server(pki, client_ca=pki.ca)
    client = trusting_client(pki, certificate=pki.client, private_key=pki.client_key)
    pair = connect_pair(server, client)
    pair.handshake()
    seen = pair.whoami()["tls"]
    assert seen["peer_subject"] == "CN=sensor-17"
    assert seen["peer_san"] == ["DNS:sensor-17"]
    assert seen["psk_identity"] is None


@pytest.mark.parametrize("certificate", [None, "rogue_client"])
def test_missing_or_untrusted_client_certificate_is_refused(pki: PKI, certificate: str | None
                                                            ) -> None:
    kwargs: dict[str, Any] = {}
    if certificate is not None:
        kwargs = {"certificate": getattr(pki, certificate),
                  "private_key": getattr(pki, f"{certificate}_key")}
    pair = connect_pair(cert_server(pki, client_ca=pki.ca), trusting_client(pki, **kwargs))
    pair.pump.flush()
    outcome = pair.results[0]
    if isinstance(outcome, CoapProtocol):
        # TLS 1.3: the client finishes first and learns of the refusal from the alert
        # that closes the connection; its request can only fail.
        assert isinstance(pair.get("whoami"), Failure)
        assert outcome.channel.close_reason is not None
    else:
        failure_of(outcome, HandshakeFailed)
    assert pair.served_nothing()
    assert pair.server_lost


# -- PSK ------------------------------------------------------------------------------------


def psk_client(identity: bytes, key: bytes, **kwargs: Any) -> ClientTLSSettings:
    return ClientTLSSettings(psk=(identity, key), **kwargs)


def test_psk_right_key(pki: PKI) -> None:
    pair = connect_pair(ServerTLSSettings(psk_keys=PSK_KEYS),
                        psk_client(b"sensor-17", PSK_KEYS[b"sensor-17"]))
    assert isinstance(pair.handshake(), CoapProtocol)
    seen = pair.whoami()["tls"]
    assert seen["psk_identity"] == "sensor-17"
    assert seen["peer_subject"] is None
    assert pair.client.channel.tls is not None
    assert pair.client.channel.tls.psk_identity == b"sensor-17"


def test_psk_over_tls12_uses_a_psk_cipher_suite(pki: PKI) -> None:
    client = psk_client(b"gateway", PSK_KEYS[b"gateway"])
    client.context.set_max_proto_version(SSL.TLS1_2_VERSION)
    pair = connect_pair(ServerTLSSettings(psk_keys=PSK_KEYS), client)
    pair.handshake()
    seen = pair.whoami()["tls"]
    assert seen["version"] == "TLSv1.2"
    assert "PSK" in seen["cipher"]
    assert seen["psk_identity"] == "gateway"


@pytest.mark.parametrize("tls12", [False, True])
def test_psk_wrong_key_fails_and_serves_nothing(pki: PKI, tls12: bool) -> None:
    client = psk_client(b"sensor-17", b"not the right key")
    if tls12:
        client.context.set_max_proto_version(SSL.TLS1_2_VERSION)
    with capturedLogs() as events:
        pair = connect_pair(ServerTLSSettings(psk_keys=PSK_KEYS), client)
        outcome = pair.handshake()
    failure_of(outcome, HandshakeFailed)
    assert pair.served_nothing()
    assert pair.server_lost
    assert any("TLS handshake with" in e.get("log_format", "") for e in events)


def test_psk_unknown_identity_fails(pki: PKI) -> None:
    pair = connect_pair(ServerTLSSettings(psk_keys=PSK_KEYS), psk_client(b"stranger", b"x"))
    failure_of(pair.handshake(), HandshakeFailed)
    assert pair.served_nothing()


def test_psk_beside_certificates_serves_both_kinds_of_client(pki: PKI) -> None:
    both = cert_server(pki, psk_keys=PSK_KEYS)
    by_psk = connect_pair(both, psk_client(b"gateway", PSK_KEYS[b"gateway"]))
    by_psk.handshake()
    assert by_psk.whoami()["tls"]["psk_identity"] == "gateway"
    by_cert = connect_pair(both, trusting_client(pki))
    by_cert.handshake()
    assert by_cert.whoami()["tls"]["psk_identity"] is None
    assert by_cert.client.channel.tls is not None
    assert by_cert.client.channel.tls.peer_subject == "CN=localhost"


@pytest.mark.parametrize("tls12", [False, True])
def test_psk_beside_client_ca_serves_psk_clients_without_a_certificate(
    pki: PKI, tls12: bool
) -> None:
    # --certificate, --client-ca and --psk-file together (issue 13, item 4): a PSK client
    # is not asked for a certificate and is served (OpenSSL needs a session id context
    # once client verification is on, or a TLS 1.3 PSK handshake fails).
    server = cert_server(pki, client_ca=pki.ca, psk_keys=PSK_KEYS)
    client = psk_client(b"gateway", PSK_KEYS[b"gateway"])
    if tls12:
        client.context.set_max_proto_version(SSL.TLS1_2_VERSION)
    pair = connect_pair(server, client)
    assert isinstance(pair.handshake(), CoapProtocol)
    seen = pair.whoami()["tls"]
    assert seen["psk_identity"] == "gateway"
    assert seen["peer_subject"] is None
    # A certificate client is still held to the client CA.
    by_cert = connect_pair(server, trusting_client(
        pki, certificate=pki.client, private_key=pki.client_key))
    by_cert.handshake()
    assert by_cert.whoami()["tls"]["peer_subject"] == "CN=sensor-17"


def test_missing_client_certificate_is_reported_in_plain_words(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki, client_ca=pki.ca), trusting_client(pki))
    pair.pump.flush()
    outcome = pair.results[0]
    if isinstance(outcome, CoapProtocol):  # TLS 1.3: the alert comes after the handshake
        reason = outcome.channel.close_reason
    else:
        reason = failure_of(outcome, HandshakeFailed)
    assert reason is not None
    assert "the server requires a client certificate (TLS alert certificate_required)" in reason
    assert "SSL routines" not in reason


def test_psk_client_still_verifies_certificate_servers(pki: PKI) -> None:
    trusted = connect_pair(cert_server(pki), psk_client(b"gateway", b"k", ca_file=pki.ca))
    assert isinstance(trusted.handshake(), CoapProtocol)
    rogue = ServerTLSSettings(certificate=pki.rogue_server, private_key=pki.rogue_server_key)
    pair = connect_pair(rogue, psk_client(b"gateway", b"k", ca_file=pki.ca))
    failure_of(pair.handshake(), CertificateRejected)


# -- handshake timeouts and garbage ---------------------------------------------------------


class AbortRecordingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", SERVER_PORT),
            peerAddress=IPv4Address("TCP", "192.0.2.9", 50000),
        )
        self.aborted = False
        self.no_delay: list[bool] = []

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay.append(enabled)


def server_on_string_transport(pki: PKI, clock: MemoryReactorClock, timeout: float = 10.0
                               ) -> tuple[Any, AbortRecordingTransport]:
    factory = tls_server_factory(
        CoapFactory(Site(demo_root()), reactor=clock),
        cert_server(pki, handshake_timeout=timeout),
        clock=clock,
    )
    factory.doStart()
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 50000))
    transport = AbortRecordingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_stalled_handshake_is_dropped_after_the_timeout(pki: PKI) -> None:
    clock = MemoryReactorClock()
    protocol, transport = server_on_string_transport(pki, clock, timeout=7.0)
    clock.advance(6.9)
    assert not transport.aborted
    with capturedLogs() as events:
        clock.advance(0.2)
    assert transport.aborted
    assert any("did not finish within" in e.get("log_format", "") for e in events)
    protocol.connectionLost(Failure(ConnectionClosedError("gone")))
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_tls_connections_disable_nagle(pki: PKI) -> None:
    # Without TCP_NODELAY the server's post-handshake flight waits ~40 ms for a delayed ACK.
    _, transport = server_on_string_transport(pki, MemoryReactorClock())
    assert transport.no_delay == [True]


def test_half_a_client_hello_then_silence_is_dropped(pki: PKI) -> None:
    clock = MemoryReactorClock()
    hello_source = SSL.Connection(raw_client_context(pki.ca, alpn=[b"coap"]), None)
    hello_source.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        hello_source.do_handshake()
    hello = hello_source.bio_read(65536)
    protocol, transport = server_on_string_transport(pki, clock, timeout=5.0)
    protocol.dataReceived(hello[: len(hello) // 2])
    assert not transport.aborted and not transport.disconnecting
    clock.advance(5.0)
    assert transport.aborted


def test_garbage_instead_of_a_client_hello_is_closed_at_once(pki: PKI) -> None:
    clock = MemoryReactorClock()
    protocol, transport = server_on_string_transport(pki, clock)
    coap_factory = protocol.wrappedProtocol.factory
    assert len(coap_factory.connections) == 1
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
    assert transport.disconnecting
    assert b"GET" not in transport.value()
    with capturedLogs() as events:
        protocol.connectionLost(Failure(ConnectionClosedError("closed")))
    # Nothing lasting: no timer, no connection left in the factory or the TLS wrapper.
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    assert coap_factory.connections == set()
    assert not protocol.factory.protocols
    assert any("TLS handshake with" in e.get("log_format", "") for e in events)


def test_finished_handshake_cancels_the_timer(pki: PKI) -> None:
    pair = connect_pair(cert_server(pki, handshake_timeout=3.0),
                        trusting_client(pki, handshake_timeout=3.0))
    pair.handshake()
    pair.clock.advance(60)
    assert not pair.server_lost
    assert pair.whoami()["secure"] is True


def test_client_gives_up_on_a_silent_server(pki: PKI) -> None:
    clock = MemoryReactorClock()
    factory = tls_client_factory(
        CoapFactory(None, role=Role.INITIATOR, reactor=clock),
        trusting_client(pki, handshake_timeout=4.0), "localhost", SERVER_PORT, clock=clock,
    )
    protocol = factory.buildProtocol(None)
    transport = AbortRecordingTransport()
    protocol.makeConnection(transport)
    results: list[Any] = []
    assert protocol.handshake_result is not None
    protocol.handshake_result.addBoth(results.append)
    assert transport.value()  # the ClientHello went out
    clock.advance(4.0)
    assert transport.aborted
    protocol.connectionLost(Failure(ConnectionClosedError("aborted")))
    assert "did not finish within 4.0 s" in failure_of(results[0], HandshakeTimeout)


# -- the public connect/listen helpers ------------------------------------------------------


def test_connect_coap_tls_through_endpoints(pki: PKI) -> None:
    clock = MemoryReactorClock()
    server_factory = CoapFactory(Site(demo_root()), reactor=clock)
    listening: list[Any] = []
    listen_tls(TCP4ServerEndpoint(clock, 5684), server_factory, cert_server(pki)).addBoth(
        listening.append
    )
    assert listening and not isinstance(listening[0], Failure)
    results: list[Any] = []
    connect_tls(
        clock, "localhost", 5684, settings=trusting_client(pki),
        endpoint=TCP4ClientEndpoint(clock, "127.0.0.1", 5684),
    ).addBoth(results.append)
    pump = ConnectionCompleter(clock).succeedOnce()
    assert pump is not None
    pump.flush()
    protocol = results[0]
    assert isinstance(protocol, CoapProtocol), results
    responses: list[Any] = []
    protocol.request(Code.GET, Options.build(uri_path=["whoami"])).addBoth(responses.append)
    pump.flush()
    assert responses[0].code == Code.CONTENT
    assert b'"server_name":"localhost"' in responses[0].payload


def test_request_sent_the_moment_the_handshake_fires_follows_our_csm(pki: PKI) -> None:
    # Our CSM was queued before the handshake; a request written from the callback must
    # not overtake it (the server aborts connections whose first message is not a CSM).
    pair = connect_pair(cert_server(pki), trusting_client(pki))
    responses: list[Any] = []
    assert pair.client_tls.handshake_result is not None

    def send(protocol: CoapProtocol) -> CoapProtocol:
        protocol.request(Code.GET, Options.build(uri_path=["whoami"])).addBoth(responses.append)
        return protocol

    pair.client_tls.handshake_result.addCallback(send)
    pair.pump.flush()
    assert len(responses) == 1 and not isinstance(responses[0], Failure), responses
    assert responses[0].code == Code.CONTENT
    assert not pair.server_lost


def test_connect_coap_tls_can_be_cancelled_during_the_handshake(pki: PKI) -> None:
    clock = MemoryReactorClock()
    results: list[Any] = []
    d = connect_tls(
        clock, "localhost", 5684, settings=trusting_client(pki),
        endpoint=TCP4ClientEndpoint(clock, "127.0.0.1", 5684),
    )
    d.addBoth(results.append)
    # Connect the TCP side to a server that never answers.
    factory = clock.tcpClients[0][2]
    protocol = factory.buildProtocol(None)
    transport = AbortRecordingTransport()
    protocol.makeConnection(transport)
    assert results == []
    d.cancel()
    failure_of(results[0], CancelledError)
    assert transport.aborted
