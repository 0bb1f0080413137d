"""CoapDatagramProtocol in memory: a recording UDP transport and a Clock, no sockets.

Drives the Twisted glue of CoAP over UDP (RFC 7252) with datagrams written by hand and
read back with the core's decoder: piggybacked and separate responses, retransmission on
the reactor's clock, Block2 cutting and Block1 reassembly without BERT (RFC 7959), the
client side's retries and failure, and the bound on addresses uploading at once.
"""

from __future__ import annotations

from typing import Any

from sites import Slow
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from coaptcp.core.blockwise import Block
from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.udp.framing import MessageType, UdpMessage, decode_datagram, encode_datagram
from coaptcp.server import ObservableResource, Request, Resource, Response, Site
from coaptcp.transport.udp import CoapDatagramProtocol, RequestTimedOut

CLIENT = ("192.0.2.7", 40000)
OTHER = ("192.0.2.8", 40001)


class RecordingUdpTransport:
    """What the protocol writes, as (datagram, address) pairs."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, datagram: bytes, addr: Any = None) -> None:
        self.sent.append((datagram, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", 5683)

    def take(self) -> list[tuple[UdpMessage, Any]]:
        sent, self.sent = self.sent, []
        return [(decode_datagram(datagram), addr) for datagram, addr in sent]


class Hello(Resource):
    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, b"hello " + request.peer.host.encode())  # type: ignore[union-attr]


class Big(Resource):
    body = bytes(range(256)) * 20  # 5,120 bytes: five blocks of 1024

    def render_GET(self, request: Request) -> Response:
        return Response(Code.CONTENT, self.body)


class Store(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.value = b""

    def render_PUT(self, request: Request) -> Response:
        self.value = request.payload
        return Response(Code.CHANGED)


def make_server(**kwargs: Any) -> tuple[CoapDatagramProtocol, RecordingUdpTransport, Clock, Any]:
    root = Resource()
    store, slow = Store(), Slow()
    root.putChild("hello", Hello())
    root.putChild("big", Big())
    root.putChild("store", store)
    root.putChild("slow", slow)
    clock = Clock()
    protocol = CoapDatagramProtocol(Site(root), reactor=clock, **kwargs)
    transport = RecordingUdpTransport()
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return protocol, transport, clock, (store, slow)


def datagram(mtype: MessageType, mid: int, code: Code, token: bytes, options: Options,
             payload: bytes = b"") -> bytes:
    return encode_datagram(mtype, mid, Message(code, token, options, payload))


def path(*segments: str) -> list[tuple[int, bytes]]:
    return [(OptionNumber.URI_PATH, s.encode()) for s in segments]


def test_a_confirmable_get_is_answered_piggybacked_in_the_ack() -> None:
    protocol, transport, _, _ = make_server()
    protocol.datagramReceived(
        datagram(MessageType.CON, 0x1234, Code.GET, b"tk", Options(path("hello"))), CLIENT
    )
    [(answer, addr)] = transport.take()
    assert addr == CLIENT
    assert answer.mtype is MessageType.ACK and answer.message_id == 0x1234
    assert answer.message.code == Code.CONTENT and answer.message.token == b"tk"
    assert answer.message.payload == b"hello 192.0.2.7"


def test_a_non_request_gets_a_non_response_and_a_missing_resource_4_04() -> None:
    protocol, transport, _, _ = make_server()
    protocol.datagramReceived(
        datagram(MessageType.NON, 7, Code.GET, b"n", Options(path("nothing"))), CLIENT
    )
    [(answer, _)] = transport.take()
    assert answer.mtype is MessageType.NON
    assert answer.message.code == Code.NOT_FOUND and answer.message.token == b"n"


def test_a_duplicate_con_gets_the_same_answer_without_rendering_again() -> None:
    protocol, transport, _, (store, _) = make_server()
    request = datagram(MessageType.CON, 9, Code.PUT, b"p", Options(path("store")), b"one")
    protocol.datagramReceived(request, CLIENT)
    first = transport.sent[:]
    store.value = b"changed meanwhile"
    protocol.datagramReceived(request, CLIENT)
    assert transport.sent[1:] == first  # the very same ACK, replayed
    assert store.value == b"changed meanwhile"  # the PUT was not done twice


def test_a_slow_answer_gets_an_empty_ack_then_a_separate_con_retransmitted() -> None:
    protocol, transport, clock, (_, slow) = make_server()
    protocol.datagramReceived(
        datagram(MessageType.CON, 0x0101, Code.GET, b"s", Options(path("slow"))), CLIENT
    )
    assert transport.take() == []
    clock.advance(1.0)  # not answered within 1 s: the Empty ACK (RFC 7252 section 5.2.2)
    [(ack, _)] = transport.take()
    assert ack.mtype is MessageType.ACK and ack.message.code == Code.EMPTY
    slow.waiting.pop().callback(Response(Code.CONTENT, b"late"))
    [(separate, _)] = transport.take()
    assert separate.mtype is MessageType.CON and separate.message.payload == b"late"
    clock.advance(3.0)  # ACK_TIMEOUT * ACK_RANDOM_FACTOR at most: retransmitted
    [(again, _)] = transport.take()
    assert again.message_id == separate.message_id and again.message == separate.message
    protocol.datagramReceived(encode_datagram(MessageType.ACK, separate.message_id,
                                              Message(Code.EMPTY, b"")), CLIENT)
    clock.advance(100.0)
    assert transport.take() == []  # acknowledged: no more retransmissions


def test_a_large_response_is_cut_into_blocks_of_at_most_1024() -> None:
    protocol, transport, _, _ = make_server()
    body = b""
    for num in range(10):
        options = Options([*path("big"), (OptionNumber.BLOCK2, Block(num, False, 6).encode())])
        protocol.datagramReceived(datagram(MessageType.CON, 100 + num, Code.GET, b"b", options),
                                  CLIENT)
        [(answer, _)] = transport.take()
        assert answer.message.code == Code.CONTENT
        block = Block.decode(answer.message.options.get_uint(OptionNumber.BLOCK2) or 0)
        assert block.num == num and block.szx <= 6 and len(answer.message.payload) <= 1024
        body += answer.message.payload
        if not block.more:
            break
    assert body == Big.body


def test_a_block1_upload_is_reassembled_and_bert_is_refused() -> None:
    protocol, transport, _, (store, _) = make_server()
    body = bytes(range(256)) * 12  # 3,072 bytes: three blocks of 1024
    for num in range(3):
        more = num < 2
        options = Options([*path("store"), (OptionNumber.BLOCK1, Block(num, more, 6).encode())])
        chunk = body[num * 1024 : (num + 1) * 1024]
        protocol.datagramReceived(
            datagram(MessageType.CON, 200 + num, Code.PUT, b"u", options, chunk), CLIENT
        )
        [(answer, _)] = transport.take()
        assert answer.message.code == (Code.CONTINUE if more else Code.CHANGED)
    assert store.value == body
    bert = Options([*path("store"), (OptionNumber.BLOCK1, Block(0, True, 7).encode())])
    protocol.datagramReceived(datagram(MessageType.CON, 300, Code.PUT, b"x", bert, bytes(1024)),
                              CLIENT)
    [(answer, _)] = transport.take()
    assert answer.message.code == Code.BAD_REQUEST


def test_a_block_with_an_unrecognized_critical_option_is_4_02_not_held() -> None:
    # RFC 7252 section 5.4.1; the first blocks used to be answered 2.31 and held.
    protocol, transport, _, _ = make_server()
    options = Options([*path("store"), (OptionNumber.BLOCK1, Block(0, True, 6).encode()),
                       (9999, b"x")])
    protocol.datagramReceived(
        datagram(MessageType.CON, 400, Code.PUT, b"u", options, bytes(1024)), CLIENT
    )
    [(answer, _)] = transport.take()
    assert answer.message.code == Code.BAD_OPTION
    assert answer.message.payload == b"unrecognized critical option 9999"
    assert not protocol._uploads


def test_an_error_answer_to_a_block2_request_is_not_cut() -> None:
    # It used to be 4.02 "offset 1024 lies past the end of a 0-byte body", not the 4.04.
    protocol, transport, _, _ = make_server()
    options = Options([*path("nothere"), (OptionNumber.BLOCK2, Block(1, False, 6).encode())])
    protocol.datagramReceived(datagram(MessageType.CON, 401, Code.GET, b"n", options), CLIENT)
    [(answer, _)] = transport.take()
    assert answer.message.code == Code.NOT_FOUND
    assert OptionNumber.BLOCK2 not in answer.message.options


def test_addresses_uploading_at_once_are_bounded_with_a_5_03_and_max_age() -> None:
    protocol, transport, clock, _ = make_server(max_upload_peers=1)
    first = Options([*path("store"), (OptionNumber.BLOCK1, Block(0, True, 6).encode())])
    protocol.datagramReceived(datagram(MessageType.CON, 1, Code.PUT, b"a", first, bytes(1024)),
                              CLIENT)
    assert transport.take()[0][0].message.code == Code.CONTINUE
    protocol.datagramReceived(datagram(MessageType.CON, 2, Code.PUT, b"b", first, bytes(1024)),
                              OTHER)
    [(refused, addr)] = transport.take()
    assert addr == OTHER and refused.message.code == Code.SERVICE_UNAVAILABLE
    assert refused.message.options.get_uint(OptionNumber.MAX_AGE) == 10
    clock.advance(61.0)  # the first upload expires (60 s without a block): its slot is free
    assert protocol._uploads == {}
    protocol.datagramReceived(datagram(MessageType.CON, 3, Code.PUT, b"c", first, bytes(1024)),
                              OTHER)
    assert transport.take()[0][0].message.code == Code.CONTINUE


def test_the_client_side_retransmits_and_fires_with_the_response() -> None:
    protocol, transport, clock, _ = make_server()
    answered = protocol.request(Code.GET, OTHER, options=Options(path("x")))
    [(sent, addr)] = transport.take()
    assert addr == OTHER and sent.mtype is MessageType.CON and sent.message.code == Code.GET
    clock.advance(3.0)
    [(again, _)] = transport.take()
    assert again.message_id == sent.message_id
    reply = Message(Code.CONTENT, sent.message.token, payload=b"there")
    protocol.datagramReceived(encode_datagram(MessageType.ACK, sent.message_id, reply), OTHER)
    result: list[Response] = []
    answered.addCallback(result.append)
    assert result and result[0].code == Code.CONTENT and result[0].payload == b"there"


def test_the_client_side_fails_after_max_transmit_wait() -> None:
    protocol, transport, clock, _ = make_server()
    answered = protocol.request(Code.GET, OTHER, options=Options(path("x")))
    failures: list[Any] = []
    answered.addErrback(failures.append)
    assert len(transport.take()) == 1
    sends = 0
    for _ in range(200):
        clock.advance(1.0)
        sends += len(transport.take())
    assert sends == 4  # MAX_RETRANSMIT retransmissions, then the failure (RFC 7252 4.2)
    assert failures and failures[0].check(RequestTimedOut)
    assert protocol.endpoint.client_requests == 0


class Counter(ObservableResource):
    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    def render_GET(self, request: Request) -> Response:
        if self.value < 0:
            return Response(Code.SERVICE_UNAVAILABLE, b"gone")
        return Response(Code.CONTENT, str(self.value).encode())


def observed_server() -> tuple[CoapDatagramProtocol, RecordingUdpTransport, Clock, Counter]:
    root = Resource()
    counter = Counter()
    root.putChild("counter", counter)
    clock = Clock()
    protocol = CoapDatagramProtocol(Site(root), reactor=clock)
    transport = RecordingUdpTransport()
    protocol.makeConnection(transport)  # type: ignore[arg-type]
    return protocol, transport, clock, counter


def register(protocol: CoapDatagramProtocol, peer: Any = CLIENT, token: bytes = b"ob",
             value: int = 0, mid: int = 0x500) -> None:
    options = Options([(OptionNumber.OBSERVE, value), *path("counter")])
    protocol.datagramReceived(datagram(MessageType.CON, mid, Code.GET, token, options), peer)


def test_an_observation_over_udp_gets_non_notifications_until_a_reset() -> None:
    protocol, transport, _, counter = observed_server()
    register(protocol)
    [(first, _)] = transport.take()
    assert first.mtype is MessageType.ACK and first.message.payload == b"0"
    assert first.message.options.observe is not None
    assert counter.observer_count == 1
    counter.value = 1
    counter.notify()
    [(note, addr)] = transport.take()
    assert addr == CLIENT and note.mtype is MessageType.NON and note.message.token == b"ob"
    assert note.message.payload == b"1"
    assert note.message.options.observe > first.message.options.observe  # type: ignore[operator]
    # A Reset to the notification cancels the observation (RFC 7641 section 3.6).
    protocol.datagramReceived(
        encode_datagram(MessageType.RST, note.message_id, Message(Code.EMPTY, b"")), CLIENT
    )
    assert counter.observer_count == 0
    counter.notify()
    assert transport.take() == []


def test_a_get_with_observe_1_deregisters_and_an_error_ends_the_observation() -> None:
    protocol, transport, _, counter = observed_server()
    register(protocol, token=b"a")
    register(protocol, peer=OTHER, token=b"b", mid=0x501)
    transport.take()
    assert counter.observer_count == 2
    register(protocol, token=b"a", value=1, mid=0x502)
    [(answer, _)] = transport.take()
    assert answer.message.code == Code.CONTENT and answer.message.options.observe is None
    assert counter.observer_count == 1
    counter.value = -1
    counter.notify()
    [(error, addr)] = transport.take()
    assert addr == OTHER and error.message.code == Code.SERVICE_UNAVAILABLE
    assert counter.observer_count == 0 and protocol._observers == {}


def test_observations_per_address_are_bounded_and_closing_drops_them() -> None:
    protocol, transport, _, counter = observed_server()
    for n in range(70):
        register(protocol, token=b"t%d" % n, mid=0x600 + n)
    answers = transport.take()
    assert len(answers) == 70 and all(a.message.code == Code.CONTENT for a, _ in answers)
    assert counter.observer_count == 64  # the rest answered without registering
    assert sum(a.message.options.observe is not None for a, _ in answers) == 64
    protocol.stopProtocol()
    assert counter.observer_count == 0


def test_uploads_count_against_the_server_wide_budget_shared_with_other_listeners() -> None:
    from coaptcp.core.blockwise import UploadBudget

    budget = UploadBudget(2048)  # what a TCP listener of the same server would share
    budget.take(1024)  # a stream connection's partial upload holds half of it
    protocol, transport, _, _ = make_server(upload_budget=budget)
    block = Options([*path("store"), (OptionNumber.BLOCK1, Block(0, True, 6).encode())])
    protocol.datagramReceived(datagram(MessageType.CON, 1, Code.PUT, b"a", block, bytes(1024)),
                              CLIENT)
    assert transport.take()[0][0].message.code == Code.CONTINUE
    assert budget.held == 2048
    protocol.datagramReceived(datagram(MessageType.CON, 2, Code.PUT, b"b", block, bytes(1024)),
                              OTHER)
    [(refused, _)] = transport.take()
    assert refused.message.code == Code.SERVICE_UNAVAILABLE  # the budget is spent
    assert refused.message.options.get_uint(OptionNumber.MAX_AGE)
    protocol.stopProtocol()
    assert budget.held == 1024  # the UDP upload's bytes went back on closing


def test_a_block_with_a_uri_host_that_is_not_utf8_is_4_02_not_held() -> None:
    # RFC 7252 section 3.2: Uri-Host is a string; the first block used to get 2.31.
    protocol, transport, _, _ = make_server()
    options = Options([(OptionNumber.URI_HOST, b"h\xfe"), *path("store"),
                       (OptionNumber.BLOCK1, Block(0, True, 6).encode())])
    protocol.datagramReceived(
        datagram(MessageType.CON, 402, Code.PUT, b"u", options, bytes(1024)), CLIENT
    )
    [(answer, _)] = transport.take()
    assert answer.message.code == Code.BAD_OPTION
    assert not protocol._uploads
