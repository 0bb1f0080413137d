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
    "Code",
    "Connection",
    "Role",
    "State",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BASE_MAX_MESSAGE_SIZE",
    "CoapTcpError",
    "LocalProtocolError",
    "MessageFormatError",
    "MessageTooLarge",
    "RemoteProtocolError",
    "Event",
    "PeerSettings",
    "RequestReceived",
    "ResponseReceived",
    "CsmReceived",
    "PingReceived",
    "PongReceived",
    "ReleaseReceived",
    "AbortReceived",
    "ConnectionAborted",
    "UnknownSignalReceived",
    "StreamDecoder",
    "encode_frame",
    "encode_ws_frame",
    "decode_ws_frame",
    "Message",
    "OptionNumber",
    "Options",
]
