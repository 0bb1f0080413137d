"""The sans-I/O core of coaptcp: CoAP without any I/O.

Over reliable transports (RFC 8323): :class:`Connection`.  Over UDP (RFC 7252 messaging,
RFC 7641 Observe): :class:`UdpEndpoint`.  Nothing here imports Twisted; the Twisted and
autobahn adapters drive it, passing in the bytes and the time.
"""

from coaptcp.core.codes import Code
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role, State
from coaptcp.core.errors import (
    CoapTcpError,
    LocalProtocolError,
    MessageFormatError,
    MessageTooLarge,
    RemoteProtocolError,
)
from coaptcp.core.events import (
    BASE_MAX_MESSAGE_SIZE,
    AbortReceived,
    ConnectionAborted,
    CsmReceived,
    Event,
    PeerSettings,
    PingReceived,
    PongReceived,
    ReleaseReceived,
    RequestReceived,
    ResponseReceived,
    UnknownSignalReceived,
)
from coaptcp.core.framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
from coaptcp.core.message import Message
from coaptcp.core.options import OptionNumber, Options
from coaptcp.core.udp.config import TransmissionParameters, UdpLimits
from coaptcp.core.udp.framing import (
    MessageType,
    UdpFormatError,
    UdpMessage,
    decode_datagram,
    encode_datagram,
)
from coaptcp.core.udp.messaging import LimitError, UdpEndpoint

__all__ = [
    "BASE_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AbortReceived",
    "CoapTcpError",
    "Code",
    "Connection",
    "ConnectionAborted",
    "CsmReceived",
    "Event",
    "LimitError",
    "LocalProtocolError",
    "Message",
    "MessageFormatError",
    "MessageTooLarge",
    "MessageType",
    "OptionNumber",
    "Options",
    "PeerSettings",
    "PingReceived",
    "PongReceived",
    "ReleaseReceived",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "State",
    "StreamDecoder",
    "TransmissionParameters",
    "UdpEndpoint",
    "UdpFormatError",
    "UdpLimits",
    "UdpMessage",
    "UnknownSignalReceived",
    "decode_datagram",
    "decode_ws_frame",
    "encode_datagram",
    "encode_frame",
    "encode_ws_frame",
]
