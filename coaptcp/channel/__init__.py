"""One CoAP connection driven for Twisted: the :class:`Channel` between a sans-I/O
:class:`~coaptcp.core.Connection` and a transport, and the :class:`Limits` it enforces
(RFC 8323 sections 3-7).
"""

from __future__ import annotations

from coaptcp.channel.channel import Channel
from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.channel.limits import (
    CLIENT_LIMITS,
    DEFAULT_LIMITS,
    Limits,
)
from coaptcp.channel.observing import ChannelObservation
from coaptcp.channel.owner import ChannelOwner
from coaptcp.channel.watchdog import Watchdog

__all__ = [
    "CLIENT_LIMITS",
    "DEFAULT_LIMITS",
    "Channel",
    "ChannelObservation",
    "ChannelOwner",
    "ConnectionClosedError",
    "Limits",
    "RequestNotSent",
    "Watchdog",
]
