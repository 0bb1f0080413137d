"""DTLS records into datagrams no larger than the path MTU (RFC 6347 section 4.1.1).

OpenSSL cuts handshake messages into records that each fit the MTU it is given
(``set_ciphertext_mtu``), but a memory BIO is a byte stream: a whole flight (ServerHello,
Certificate, ServerKeyExchange, ServerHelloDone) comes out of ``bio_read`` as one string,
which sent as it is would be one datagram far beyond the MTU, fragmented by IP or dropped
on the way.  :func:`datagrams` splits that string on record boundaries (each record's
13-byte header carries its length, RFC 6347 section 4.1) and packs whole records into
datagrams of at most ``mtu`` bytes; a record is never split (section 4.1.1: "each DTLS
record MUST fit within a single datagram").
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["MAX_MTU", "MIN_MTU", "RECORD_HEADER", "check_mtu", "datagrams", "is_client_hello",
           "is_one_record"]

#: Bytes of a DTLS record header: type, version, epoch, sequence number, length
#: (RFC 6347 section 4.1).
RECORD_HEADER = 13
#: The smallest MTU we accept: room for a handshake fragment after the record and
#: handshake headers (OpenSSL refuses less than 208 bytes of payload in a datagram).
MIN_MTU = 256
#: The largest UDP payload over IPv4 (65,535 less the IPv4 and UDP headers).
MAX_MTU = 65507


def check_mtu(mtu: int) -> int:
    """``mtu`` when it is a datagram size we can send in; :class:`ValueError` otherwise."""
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise ValueError(f"the DTLS MTU must be in {MIN_MTU}-{MAX_MTU} bytes, not {mtu}")
    return mtu


def _record_size(data: bytes, start: int = 0) -> int:
    """The size, header included, of the record at ``start`` (its length field)."""
    return RECORD_HEADER + int.from_bytes(data[start + 11:start + RECORD_HEADER], "big")


def is_one_record(datagram: bytes) -> bool:
    """Whether ``datagram`` holds exactly one record (as application data is sent)."""
    return _record_size(datagram) == len(datagram)


def _records(data: bytes) -> Iterator[bytes]:
    """The records of ``data`` in order; what is left after the last whole record (never
    produced by OpenSSL) comes as one last piece."""
    start, end = 0, len(data)
    while start < end:
        if end - start < RECORD_HEADER:
            yield data[start:]
            return
        stop = start + _record_size(data, start)
        yield data[start:stop]
        start = stop


def datagrams(data: bytes, mtu: int) -> Iterator[bytes]:
    """The datagrams to send ``data`` (DTLS records as OpenSSL wrote them) in: whole
    records packed in order, each datagram at most ``mtu`` bytes unless one record alone
    is larger (it then goes alone)."""
    if len(data) <= mtu:
        if data:
            yield data
        return
    current: list[bytes] = []
    size = 0
    for record in _records(data):
        if current and size + len(record) > mtu:
            yield b"".join(current)
            current, size = [], 0
        current.append(record)
        size += len(record)
    if current:
        yield b"".join(current)


def is_client_hello(datagram: bytes) -> bool:
    """Whether ``datagram`` starts with a DTLS handshake record of epoch 0 carrying a
    ClientHello (RFC 6347 sections 4.1 and 4.2.2)."""
    return len(datagram) > 25 and datagram[0] == 22 and datagram[3:5] == b"\0\0" \
        and datagram[13] == 1
