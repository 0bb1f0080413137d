"""The resource directory part of ``twistd coaptcp``: ``--rd`` (RFC 9176).

``--rd`` serves a resource directory at ``/rd``, ``/rd-lookup/ep`` and ``/rd-lookup/res``
on every listener (TCP, TLS, WebSockets, UDP), advertised in ``/.well-known/core``.  The
``--rd-*`` options bound its tables (see :class:`~coaptcp.directory.DirectoryLimits`).
It also serves the registered endpoints at ``/ep/NAME/...`` (see
:mod:`coaptcp.tap.endpoints`).

``--rd`` and ``--workers`` are refused together: the registrations live in the memory of
the process that received them, and a registration made over a connection is tied to
that connection, so each worker would hold a directory of its own and a lookup would see
only the devices that happened to reach the same worker.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from coaptcp.directory import DirectoryLimits, ResourceDirectory, install_directory
from coaptcp.directory.resources import DirectoryResource
from coaptcp.server.resource import Resource
from coaptcp.tap.endpoints import EP_OPT_PARAMETERS, check_endpoint_options, mount_endpoints

__all__ = [
    "RD_OPT_FLAGS",
    "RD_OPT_PARAMETERS",
    "add_directory",
    "check_rd_options",
]

_DEFAULTS = DirectoryLimits()

#: ``twistd coaptcp`` options of the directory: (option, field, help).
_RD_OPTIONS: list[tuple[str, str, str]] = [
    ("rd-max-registrations", "max_registrations",
     "Registrations the resource directory holds; more get 5.03 with Max-Age."),
    ("rd-max-per-peer", "max_per_peer",
     "Registrations made from one IP address; more get 5.03 with Max-Age."),
    ("rd-max-payload", "max_payload",
     "Bytes of link-format one registration may carry; more get 4.13."),
    ("rd-max-links", "max_links", "Links one registration may carry; more get 4.13."),
    ("rd-max-total-links", "max_total_links",
     "Links all registrations together may hold; more get 5.03 with Max-Age."),
    ("rd-default-lifetime", "default_lifetime",
     "Seconds a registration that gives no lt= lives without an update (RFC 9176: 90000)."),
]
RD_OPT_PARAMETERS = [*[[option, None, str(getattr(_DEFAULTS, field)), text]
                       for option, field, text in _RD_OPTIONS], *EP_OPT_PARAMETERS]
RD_OPT_FLAGS = [
    ["rd", None, "Serve a resource directory (RFC 9176) at /rd, /rd-lookup/ep and "
                 "/rd-lookup/res on every listener. Not with --workers."],
]


def check_rd_options(options: Any) -> DirectoryLimits | None:
    """The directory's bounds from the ``--rd-*`` options, or ``None`` without ``--rd``;
    a bad value, ``--rd`` with ``--workers``, or a resource tree that has ``/rd`` or
    ``/rd-lookup`` already is a usage error."""
    values: dict[str, int] = {}
    for option, field, _ in _RD_OPTIONS:
        raw = options.get(option, getattr(_DEFAULTS, field))
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise usage.UsageError(f"--{option} must be a whole number, not {raw!r}")
        values[field] = value
    try:
        limits = DirectoryLimits(**values)
    except ValueError as error:
        option = _option_named_in(str(error))
        raise usage.UsageError(f"--{option}: {error}".replace("DirectoryLimits.", ""))
    check_endpoint_options(options)
    if not options.get("rd"):
        return None
    if options.get("workers"):
        raise usage.UsageError(
            "--rd cannot be combined with --workers: registrations live in the process "
            "that received them (and end with their connection), so each worker would "
            "hold a directory of its own and lookups would miss the others' devices; run "
            "the resource directory in a single process"
        )
    root = options.get("root")
    if isinstance(root, Resource):
        for name in ("rd", "rd-lookup"):
            if name in root.children:
                raise usage.UsageError(f"--rd needs /{name}, and the resource tree has one")
    return limits


def _option_named_in(message: str) -> str:
    for option, field, _ in _RD_OPTIONS:
        if f".{field} " in message:
            return option
    return "rd"


def add_directory(root: Resource, options: Any, reactor: Any = None) -> ResourceDirectory | None:
    """With ``--rd``, serve a resource directory below ``root`` and return it."""
    if not options.get("rd"):
        return None
    served = root.children.get("rd")
    if isinstance(served, DirectoryResource):
        return served.directory  # a second service from the same options shares it
    limits = options.get("rd-limits") or check_rd_options(options)
    directory = install_directory(root, reactor=reactor, limits=limits)
    mount_endpoints(root, directory, options, reactor)
    return directory
