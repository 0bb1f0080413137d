"""The ``twistd coaptcp`` dropin (see :mod:`coaptcp.tap.plugin`)."""

from twisted.application.service import ServiceMaker

coaptcp = ServiceMaker(
    "coaptcp",
    "coaptcp.tap.plugin",
    "CoAP over TCP (RFC 8323) server with a resource tree; a demo site by default.",
    "coaptcp",
)
