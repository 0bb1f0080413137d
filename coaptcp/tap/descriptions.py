"""Checking the listener options of ``twistd coaptcp`` before anything listens.

A Twisted endpoint description is parsed by :func:`~twisted.internet.endpoints.serverFromString`,
but a port outside 0-65535 only fails when the socket is bound (an ``OverflowError``
traceback), and a port another process holds fails with a ``CannotListenError`` traceback
from the middle of twistd's start-up.  :func:`check_server_description` makes the first a
usage error; :func:`listen_failure_exit` turns the second into one line and exit status 1.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import CannotListenError
from twisted.python import usage

from coaptcp.channel.reactor import default_reactor

__all__ = ["check_server_description", "listen_failure_exit", "split_description"]

#: Endpoint types whose first argument (or ``port=``) is a TCP port (Twisted's own).
_PORTED = frozenset({"tcp", "tcp6", "ssl"})
#: Endpoint types that wrap another description (``haproxy:tcp:5683``).
_WRAPPERS = frozenset({"haproxy"})


def split_description(description: str) -> list[str]:
    """Split an endpoint description at its unescaped colons, dropping the escapes."""
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _port_of(parts: list[str]) -> str | None:
    while parts and parts[0] in _WRAPPERS:
        parts = parts[1:]
    if not parts or parts[0] not in _PORTED:
        return None
    for argument in parts[1:]:
        key, equals, value = argument.partition("=")
        if not equals:
            return argument  # the first positional argument is the port
        if key == "port":
            return value
    return None


def check_server_description(description: str, option: str | None = None) -> None:
    """Parse ``description`` as a Twisted server endpoint now and check its port, so that a
    typo is a :class:`usage.UsageError` rather than a traceback when it is bound."""
    from twisted.internet import endpoints

    what = f"--{option} description" if option else "endpoint description"
    try:
        endpoints.serverFromString(default_reactor(), description)
    except Exception as error:
        # Not only ValueError & co.: ssl: endpoints read their key and certificate files
        # while parsing (OSError, OpenSSL errors), and those are usage errors too.
        raise usage.UsageError(f"bad {what} {description!r}: {error}")
    port = _port_of(split_description(description))
    if port is not None and port.isdigit() and not 0 <= int(port) <= 65535:
        raise usage.UsageError(f"bad {what} {description!r}: port {port} is not in 0-65535")


def listen_failure_exit(error: CannotListenError) -> SystemExit:
    """The exit for a listener that could not bind (say, its port is taken): one line
    naming the address and the reason, and exit status 1 (no traceback)."""
    reason: Any = error.socketError
    detail = getattr(reason, "strerror", None) or str(reason)
    where = f"{error.interface or '*'}:{error.port}"
    return SystemExit(f"twistd coaptcp: cannot listen on {where}: {detail}")
