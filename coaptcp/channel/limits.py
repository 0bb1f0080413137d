"""Per-connection and per-server limits and timeouts, with safe defaults.

RFC 8323 leaves connection management to the application (section 3 intro, section 4.4
for Ping); a server on the open Internet needs bounds on every resource a peer can make it
hold.  One :class:`Limits` instance is shared by a factory's connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from coaptcp.core.blockwise import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONNECTION_UPLOAD_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_UPLOAD_LIFETIME,
    BlockwiseServer,
    UploadBudget,
)

__all__ = [
    "CLIENT_LIMITS",
    "DEFAULT_LIMITS",
    "Limits",
    "make_blockwise_server",
    "make_upload_budget",
]


@dataclass(frozen=True)
class Limits:
    """Bounds for the connections of one factory; ``None`` turns a timeout off.

    :ivar csm_timeout: seconds a peer has to send its first CSM before we abort
        (RFC 8323 section 3.3 makes the CSM mandatory; a peer that never sends it holds
        a connection for nothing).
    :ivar idle_timeout: seconds without traffic, requests in flight or observations
        after which we send Release and close (RFC 8323 section 5.5).
    :ivar frame_timeout: seconds a frame may take from its first byte to its last; a
        peer trickling a frame slower than that (a slowloris) is aborted.  Over
        WebSockets it also bounds a fragmented message from its first frame to its last
        (RFC 6455 section 5.4).
    :ivar ws_handshake_timeout: seconds a connection to a WebSocket listener has, from the
        moment it is accepted, to complete its opening handshake (RFC 6455 section 4.2;
        TLS included for ``coaps+ws``) or, on a ``twisted.web`` port, each HTTP request;
        slower connections are dropped.
    :ivar keepalive_interval: seconds of silence after which we send a Ping (section
        5.4); a missing Pong within ``pong_timeout`` closes the connection.
    :ivar max_inbound_requests: requests from one peer being answered at once (renders
        still running); more get 4.29 Too Many Requests (RFC 8516) with Max-Age.
    :ivar max_outbound_requests: our own requests waiting for answers on one connection;
        more fail locally.
    :ivar max_connections: open connections, counted from the moment they are accepted
        (by a :class:`~coaptcp.transport.admission.ConnectionGate`, which ``twistd coaptcp`` shares
        between all its listeners); more are answered with our CSM and an Abort (HTTP
        503 on a WebSocket listener), then closed.
    :ivar max_connections_per_address: the same bound per peer IP address.
    :ivar upload_timeout: seconds a partial Block1 upload may go without a new block
        before it is dropped, whatever else the peer sends; a later block gets 4.08
        (RFC 7959 section 2.9.2).
    :ivar max_upload_bytes_per_connection: bytes the partial uploads of one connection
        may hold together; a block beyond gets 5.03 with Max-Age.
    :ivar max_upload_bytes: bytes the partial uploads of all connections may hold
        together (shared by every listener given the same budget); a block beyond gets
        5.03 with Max-Age.
    :ivar write_timeout: seconds a peer may leave our output unread (the transport's
        write buffer over its high-water mark, when we stop processing the peer's
        requests) before we abort it; its observations are freed with it.
    :ivar messages_per_read: messages of one connection processed in one reactor turn;
        more wait for the next turn, so a flooding peer cannot starve the others.
    :ivar max_custody_pings: Pings with Custody (RFC 8323 section 5.4.1) waiting for
        earlier requests on one connection; more are answered at once, without Custody.
    """

    csm_timeout: float | None = 10.0
    idle_timeout: float | None = 300.0
    frame_timeout: float | None = 30.0
    ws_handshake_timeout: float | None = 10.0
    keepalive_interval: float | None = 60.0
    pong_timeout: float = 10.0
    max_inbound_requests: int = 256
    max_outbound_requests: int = 4096
    max_connections: int = 20_000
    max_connections_per_address: int = 1_000
    retry_after: int = 1
    upload_timeout: float = DEFAULT_UPLOAD_LIFETIME
    max_upload_bytes_per_connection: int = DEFAULT_MAX_CONNECTION_UPLOAD_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    write_timeout: float | None = 60.0
    messages_per_read: int = 64
    max_custody_pings: int = 64


DEFAULT_LIMITS = Limits()

#: For connections a :class:`~coaptcp.client.client.Client` opens: its pool releases idle
#: connections and pings silent ones itself, with its own (client-side) timeouts.
CLIENT_LIMITS = Limits(idle_timeout=None, keepalive_interval=None)


def make_upload_budget(limits: Limits) -> UploadBudget:
    """A server-wide budget of ``limits.max_upload_bytes`` for partial Block1 uploads.

    Give the same one to every factory of a server (TCP, TLS and WebSocket listeners):
    the bytes held by all their connections' partial uploads count against it.
    """
    return UploadBudget(limits.max_upload_bytes)


def make_blockwise_server(
    limits: Limits,
    budget: UploadBudget | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> BlockwiseServer:
    """The block-wise state of one new connection, bounded by ``limits`` and ``budget``
    (RFC 7959 sections 2.5 and 2.9; the largest body is the least of ``max_body_size``
    and the two byte budgets)."""
    return BlockwiseServer(
        max_body_size=max_body_size,
        upload_lifetime=limits.upload_timeout,
        max_connection_bytes=limits.max_upload_bytes_per_connection,
        budget=budget,
    )
