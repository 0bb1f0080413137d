"""The bounds of a coaps:// socket (RFC 7925 section 11) and its datagram size (RFC 6347
section 4.1.1.1)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MTU", "DtlsLimits"]

#: The largest DTLS datagram we send: IPv6's minimum MTU, 1280 bytes, less the IPv6 and
#: UDP headers (RFC 7252 section 4.6, RFC 6347 section 4.1.1.1).
DEFAULT_MTU = 1280 - 48


@dataclass(frozen=True)
class DtlsLimits:
    """Bounds of one coaps:// socket (RFC 7925 section 11: a server must limit the state
    that unauthenticated peers cost it).

    :param max_handshakes: handshakes in progress at once, in total.
    :param max_handshakes_per_host: handshakes in progress from one IP address.
    :param max_sessions: sessions (handshaking or established) in total.
    :param max_sessions_per_host: sessions from one IP address (one per port).
    :param handshake_timeout: seconds a handshake may take before it is dropped.
    :param idle_timeout: seconds without a datagram before a session is dropped.
    """

    max_handshakes: int = 64
    max_handshakes_per_host: int = 8
    max_sessions: int = 1024
    max_sessions_per_host: int = 64
    handshake_timeout: float = 10.0
    idle_timeout: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_handshakes", "max_handshakes_per_host", "max_sessions",
                     "max_sessions_per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not (self.handshake_timeout > 0 and self.idle_timeout > 0):
            raise ValueError("the DTLS timeouts must be positive")
