"""CoAP over UDP, without I/O: RFC 7252 messaging, RFC 7641 Observe over UDP and
RFC 7959 block-wise without BERT.
"""

from __future__ import annotations

from coaptcp.core.udp.config import (
    TransmissionParameters,
    UdpLimits,
)
from coaptcp.core.udp.framing import (
    MessageType,
    UdpFormatError,
    UdpMessage,
    decode_datagram,
    encode_datagram,
)
from coaptcp.core.udp.messaging import (
    LimitError,
    UdpEndpoint,
)

__all__ = [
    "LimitError",
    "MessageType",
    "TransmissionParameters",
    "UdpEndpoint",
    "UdpFormatError",
    "UdpLimits",
    "UdpMessage",
    "decode_datagram",
    "encode_datagram",
]
