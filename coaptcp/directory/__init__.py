"""A resource directory (RFC 9176): devices register their links at ``/rd``, clients
look them up at ``/rd-lookup/ep`` and ``/rd-lookup/res``, and a back end finds them (by
name, by TLS identity) and reaches the ones that called in over their own connection.

::

    directory = install_directory(root)           # /rd, /rd-lookup/ep, /rd-lookup/res
    site = Site(root)
    directory.add_listener(on_registered=lambda registration: ...)
    registration = directory.find("node1")
    registration.request(Code.GET, "/sensors/temp")   # over the device's connection

``twistd coaptcp --rd`` serves one on every listener.
"""

from __future__ import annotations

from coaptcp.directory.directory import GoneListener, RegisteredListener, ResourceDirectory
from coaptcp.directory.links import LinkFormatError, LinkParam, StoredLink, parse_links
from coaptcp.directory.policy import (
    DEFAULT_LIFETIME,
    Authorizer,
    DirectoryFull,
    DirectoryLimits,
    PayloadTooLarge,
    identity_matches,
    identity_names,
)
from coaptcp.directory.registration import NotConnected, Registration
from coaptcp.directory.resources import install_directory

__all__ = [
    "DEFAULT_LIFETIME",
    "Authorizer",
    "DirectoryFull",
    "DirectoryLimits",
    "GoneListener",
    "LinkFormatError",
    "LinkParam",
    "NotConnected",
    "PayloadTooLarge",
    "RegisteredListener",
    "Registration",
    "ResourceDirectory",
    "StoredLink",
    "identity_matches",
    "identity_names",
    "install_directory",
    "parse_links",
]
