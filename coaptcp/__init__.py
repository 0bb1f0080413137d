"""coaptcp: CoAP over TCP, TLS and WebSockets for Twisted (RFC 8323).

The package root stays light so :mod:`coaptcp.core` imports without Twisted.  The main
public names are importable from here and load their modules on first use::

    from coaptcp import Resource, Response, Site, CoapFactory, Code
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Code": "coaptcp.core.codes",
    "Message": "coaptcp.core.message",
    "Options": "coaptcp.core.options",
    "OptionNumber": "coaptcp.core.options",
    "Resource": "coaptcp.resource",
    "Response": "coaptcp.resource",
    "Request": "coaptcp.resource",
    "CoapError": "coaptcp.resource",
    "Site": "coaptcp.resource",
    "CoapProtocol": "coaptcp.protocol",
    "CoapFactory": "coaptcp.protocol",
    "connectCoap": "coaptcp.protocol",
    "ConnectionClosedError": "coaptcp.channel",
    "ObservableResource": "coaptcp.observe",
    "connectCoapWebSocket": "coaptcp.websocket",
    "webSocketResource": "coaptcp.websocket",
    "CoapWebSocketServerFactory": "coaptcp.websocket",
    "Client": "coaptcp.client",
    "parse_uri": "coaptcp.uri",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coaptcp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
