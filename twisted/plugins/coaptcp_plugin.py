"""The ``twistd coaptcp`` dropin (see :mod:`coaptcp.tap`)."""

from twisted.application.service import ServiceMaker

coaptcp = ServiceMaker(
    "coaptcp",
    "coaptcp.tap",
    "CoAP over TCP (RFC 8323) server with a resource tree; a demo site by default.",
    "coaptcp",
)
