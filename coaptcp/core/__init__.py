"""The sans-I/O core of coaptcp: CoAP over reliable transports without any I/O (RFC 8323).

Nothing here imports Twisted; the Twisted and autobahn adapters drive it.
"""

from .codes import Code
from .connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role, State
from .errors import (
    CoapTcpError,
    LocalProtocolError,
    MessageFormatError,
    MessageTooLarge,
    RemoteProtocolError,
)
from .events import (
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
from .framing import StreamDecoder, decode_ws_frame, encode_frame, encode_ws_frame
from .message import Message
from .options import OptionNumber, Options

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
    "LocalProtocolError",
    "Message",
    "MessageFormatError",
    "MessageTooLarge",
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
    "UnknownSignalReceived",
    "decode_ws_frame",
    "encode_frame",
    "encode_ws_frame",
]
