"""Transmission parameters (RFC 7252 section 4.8) and the bounds of a UDP endpoint.

:class:`TransmissionParameters` holds the RFC's parameters and derives its time values
(section 4.8.2: MAX_TRANSMIT_SPAN 45 s, MAX_TRANSMIT_WAIT 93 s, EXCHANGE_LIFETIME 247 s,
NON_LIFETIME 145 s with the defaults).  :class:`UdpLimits` bounds every table a
:class:`~coaptcp.core.udp.messaging.UdpEndpoint` keeps; each bound has a safe default and what
happens when it is reached is documented on the field (and in ``docs/hardening.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = [
    "DEFAULT_MAX_UDP_MESSAGE_SIZE",
    "NOTIFICATION_CON_INTERVAL",
    "TransmissionParameters",
    "UdpLimits",
]

#: Without Path MTU knowledge a message should be at most 1152 bytes (RFC 7252 section 4.6).
DEFAULT_MAX_UDP_MESSAGE_SIZE = 1152

#: A server sends a notification as CON at least this often (RFC 7641 section 4.5).
NOTIFICATION_CON_INTERVAL = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class TransmissionParameters:
    """RFC 7252 section 4.8 (Table 2) and the derived values of section 4.8.2 (Table 3).

    Section 4.8.1: ACK_TIMEOUT should not be decreased, NSTART not increased, without
    congestion control that makes it safe; ACK_RANDOM_FACTOR must stay at least 1.0.
    """

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1
    max_latency: float = 100.0

    def __post_init__(self) -> None:
        if not self.ack_timeout > 0:
            raise ValueError(f"ACK_TIMEOUT must be positive, not {self.ack_timeout}")
        if not self.ack_random_factor >= 1.0:
            raise ValueError(
                f"ACK_RANDOM_FACTOR must be at least 1.0, not {self.ack_random_factor}"
            )
        if not 0 <= self.max_retransmit <= 16:
            raise ValueError(f"MAX_RETRANSMIT must be 0-16, not {self.max_retransmit}")
        if self.nstart < 1:
            raise ValueError(f"NSTART must be at least 1, not {self.nstart}")
        if not self.max_latency > 0:
            raise ValueError(f"MAX_LATENCY must be positive, not {self.max_latency}")

    @property
    def processing_delay(self) -> float:
        """PROCESSING_DELAY, set equal to ACK_TIMEOUT (section 4.8.2)."""
        return self.ack_timeout

    @property
    def max_transmit_span(self) -> float:
        """First transmission of a CON to its last retransmission (45 s by default)."""
        return self.ack_timeout * ((1 << self.max_retransmit) - 1) * self.ack_random_factor

    @property
    def max_transmit_wait(self) -> float:
        """First transmission of a CON to giving up on its ACK (93 s by default)."""
        return self.ack_timeout * ((1 << (self.max_retransmit + 1)) - 1) * self.ack_random_factor

    @property
    def max_rtt(self) -> float:
        """2 * MAX_LATENCY + PROCESSING_DELAY (202 s by default)."""
        return 2 * self.max_latency + self.processing_delay

    @property
    def exchange_lifetime(self) -> float:
        """How long a CON's Message ID stays in use (247 s by default)."""
        return self.max_transmit_span + 2 * self.max_latency + self.processing_delay

    @property
    def non_lifetime(self) -> float:
        """How long a NON's Message ID stays in use (145 s by default)."""
        return self.max_transmit_span + self.max_latency

    def initial_timeout(self, uniform: float) -> float:
        """The first ACK timeout for ``uniform`` drawn from [0, 1): a random duration
        between ACK_TIMEOUT and ACK_TIMEOUT * ACK_RANDOM_FACTOR (section 4.2)."""
        return self.ack_timeout * (1.0 + uniform * (self.ack_random_factor - 1.0))


@dataclass(frozen=True, slots=True)
class UdpLimits:
    """Bounds of one UDP endpoint; each field says what happens when it is reached.

    Every table is bounded: peers, the deduplication cache (entries in total and per peer,
    and the bytes of the replies it keeps), requests waiting for our answer, our CONs
    waiting for an ACK, our own requests (active and queued behind NSTART), and the
    server's notification state.
    """

    #: Peers with any state.  A datagram from a new peer beyond it: a CON request gets a
    #: 5.03 (Max-Age 10) that leaves no state, anything else is ignored.
    max_peers: int = 20_000
    #: Deduplication entries (RFC 7252 section 4.5) in all.  Beyond it the oldest entry is
    #: forgotten early (a duplicate of it would be processed again, as section 4.5 allows
    #: for idempotent requests); never a refusal.
    max_dedup_entries: int = 65_536
    #: Deduplication entries of one peer; beyond it that peer's oldest is forgotten, so
    #: one peer's flood does not shorten the others' deduplication.
    max_dedup_entries_per_peer: int = 4_096
    #: Bytes of replies (ACKs, piggybacked responses) kept for replay to duplicates;
    #: beyond it the oldest entries are forgotten.
    max_dedup_bytes: int = 16 * 1024 * 1024
    #: Requests from one peer we have not answered yet: more get 4.29 Too Many Requests
    #: with Max-Age 1 (RFC 8516), without being handed to the caller.
    max_pending_requests_per_peer: int = 256
    #: Requests from all peers we have not answered yet: more get 5.03 with Max-Age 10.
    max_pending_requests: int = 8_192
    #: Our CONs waiting for an ACK (requests, separate responses, notifications, pings).
    #: Beyond it a separate response or a notification goes as NON; a request or a ping
    #: raises :class:`~coaptcp.core.udp.messaging.LimitError`.
    max_outstanding: int = 8_192
    #: Our own requests, sent or queued behind NSTART (RFC 7252 section 4.7), in all;
    #: more raise :class:`~coaptcp.core.udp.messaging.LimitError`.
    max_client_requests: int = 4_096
    #: Our requests queued behind NSTART for one peer; more raise ``LimitError``.
    max_queued_requests_per_peer: int = 64
    #: Observations for which we send notifications (RFC 7641); a notification for a new
    #: one beyond it raises ``LimitError``.
    max_observations: int = 65_536
    #: The largest message we send (RFC 7252 section 4.6); larger raise
    #: :class:`~coaptcp.core.errors.MessageTooLarge`.
    max_message_size: int = DEFAULT_MAX_UDP_MESSAGE_SIZE

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{item.name} must be a positive integer, not {value!r}")
        if self.max_message_size < 16:
            raise ValueError(f"max_message_size {self.max_message_size} is too small")
