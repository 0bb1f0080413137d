"""The ``/ep`` part of ``twistd coaptcp --rd``: the reverse proxy to registered
endpoints (:class:`~coaptcp.proxy.endpoints.EndpointProxy`).

With ``--rd``, requests for ``/ep/NAME/...`` on every listener go to the device that
registered as NAME over its own connection (RFC 9176 section 5, RFC 8323 section 3.3).
It is on whenever ``--rd`` is: a device that calls in is reachable at once, which is
what calling in is for; who may register under a name is the directory's rule (its TLS
identity, and a name held by a live connection stays with it).
``--rd-proxy-prefix`` moves it (``/devices``) or, with ``none``, switches it off; the
``--rd-proxy-*`` options bound it.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.python import usage

from coaptcp.directory import ResourceDirectory
from coaptcp.proxy.endpoints import (
    DEFAULT_ENDPOINT_PREFIX,
    EndpointLimits,
    EndpointProxy,
)
from coaptcp.server.resource import Resource

__all__ = ["EP_OPT_PARAMETERS", "check_endpoint_options", "mount_endpoints"]

_DEFAULTS = EndpointLimits()
#: (option, field, kind, help) of the ``--rd-proxy-*`` bounds.
_EP_OPTIONS: list[tuple[str, str, type, str]] = [
    ("rd-proxy-timeout", "timeout", float,
     "Seconds a registered device may take to answer through /ep (then 5.04)."),
    ("rd-proxy-max-in-flight", "max_in_flight", int,
     "Requests in flight through /ep in total; more get 5.03 with Max-Age."),
    ("rd-proxy-max-in-flight-per-endpoint", "max_in_flight_per_endpoint", int,
     "Requests in flight to one registered endpoint; more get 5.03 with Max-Age."),
    ("rd-proxy-max-observations", "max_observations", int,
     "Observations of registered endpoints' resources at once (each shared by its "
     "observers); more get 5.03 with Max-Age."),
]
EP_OPT_PARAMETERS = [
    ["rd-proxy-prefix", None, DEFAULT_ENDPOINT_PREFIX,
     "With --rd, requests for PREFIX/NAME/... go to the endpoint registered as NAME over "
     "its own connection; 'none' switches this off."],
    *[[option, None, str(getattr(_DEFAULTS, field)), text]
      for option, field, _, text in _EP_OPTIONS],
]


def check_endpoint_options(options: Any) -> tuple[tuple[str, ...] | None, EndpointLimits]:
    """The prefix's path segments (``None``: switched off) and the bounds from the
    ``--rd-proxy-*`` options; a bad value, or a prefix the resource tree already has, is
    a usage error."""
    values: dict[str, Any] = {}
    for option, field, kind, _ in _EP_OPTIONS:
        raw = options.get(option, getattr(_DEFAULTS, field))
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise usage.UsageError(f"--{option} must be a number, not {raw!r}")
        if not (math.isfinite(value) and value > 0):
            raise usage.UsageError(f"--{option} must be positive, not {raw!r}")
        values[field] = value
    limits = EndpointLimits(**values)
    text = str(options.get("rd-proxy-prefix", DEFAULT_ENDPOINT_PREFIX))
    if text.lower() == "none":
        return None, limits
    path = tuple(segment for segment in text.split("/") if segment)
    if not text.startswith("/") or not path:
        raise usage.UsageError(f"--rd-proxy-prefix must be a path such as /ep, or none, "
                               f"not {text!r}")
    if path[0] in ("rd", "rd-lookup", ".well-known"):
        raise usage.UsageError(f"--rd-proxy-prefix {text} clashes with /{path[0]}")
    root = options.get("root")
    if options.get("rd") and isinstance(root, Resource) and _find(root, path) is not None:
        raise usage.UsageError(f"--rd serves registered endpoints at {text}, and the "
                               f"resource tree has one; give --rd-proxy-prefix another "
                               f"path, or none")
    return path, limits


def _find(root: Resource, path: tuple[str, ...]) -> Resource | None:
    node: Resource | None = root
    for segment in path:
        node = node.children.get(segment) if node is not None else None
    return node


def mount_endpoints(root: Resource, directory: ResourceDirectory, options: Any,
                    reactor: Any = None) -> EndpointProxy | None:
    """Serve ``directory``'s endpoints at the ``--rd-proxy-prefix`` of ``root``."""
    path, limits = check_endpoint_options(options)
    if path is None:
        return None
    parent = root
    for segment in path[:-1]:
        child = parent.children.get(segment)
        if child is None:
            child = Resource()
            parent.putChild(segment, child)
        parent = child
    served = parent.children.get(path[-1])
    if isinstance(served, EndpointProxy) and served.directory is directory:
        return served  # a second service from the same options shares it
    proxy = EndpointProxy(directory, limits, reactor=reactor)
    parent.putChild(path[-1], proxy)
    return proxy
