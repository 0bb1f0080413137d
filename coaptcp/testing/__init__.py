"""Helpers for testing applications built on coaptcp (never for production).

In memory, on a fake clock, with no sockets and no sleeps:

* :func:`connected_pair`: our client connected to our server serving your
  :class:`~coaptcp.Site`, joined by ``twisted.test.iosim`` (:func:`join` for protocols of
  your own, TLS or WebSocket wrappers included);
* :class:`Harness`: one protocol on a :class:`RecordingTransport`, the test playing its
  peer in raw frames (:func:`csm`, :func:`get`, :func:`custody_ping`, :func:`frames`;
  :func:`decode_all` and :class:`FrameReader` for what came back), to check the wire as
  RFC 8323 section 3 describes it;
* :func:`result_of`, :func:`success`, :func:`failure`: a Deferred's outcome, read
  synchronously once the test has moved the bytes.

And throwaway certificates for coaps+tcp test setups (:mod:`coaptcp.testing.certs`,
also ``python -m coaptcp.testing.certs DIRECTORY``).  See docs/testing.md.
"""

from __future__ import annotations

from coaptcp.testing.certs import (
    CertificateAuthority,
    Issued,
    write_test_setup,
)
from coaptcp.testing.deferreds import failure, result_of, success
from coaptcp.testing.frames import FrameReader, csm, custody_ping, decode_all, frames, get
from coaptcp.testing.harness import Harness
from coaptcp.testing.memory import ConnectedPair, MemoryLink, connected_pair, join
from coaptcp.testing.transports import HOST_ADDRESS, PEER_ADDRESS, RecordingTransport

__all__ = [
    "HOST_ADDRESS",
    "PEER_ADDRESS",
    "CertificateAuthority",
    "ConnectedPair",
    "FrameReader",
    "Harness",
    "Issued",
    "MemoryLink",
    "RecordingTransport",
    "connected_pair",
    "csm",
    "custody_ping",
    "decode_all",
    "failure",
    "frames",
    "get",
    "join",
    "result_of",
    "success",
    "write_test_setup",
]
