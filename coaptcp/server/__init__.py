"""The server's application layer: requests, responses, the resource tree and observable
resources (RFC 7252 sections 5.8-5.10, RFC 7641, RFC 8323 section 7).

Nothing here knows about connections or transports; :mod:`coaptcp.channel` drives it.
"""

from __future__ import annotations

from coaptcp.server.observe import (
    ObservableResource,
    ObservationRegistry,
    Observer,
    ObserverConnection,
)
from coaptcp.server.request import (
    CoapError,
    RenderResult,
    Request,
    Response,
)
from coaptcp.server.resource import (
    ProxyHandler,
    Resource,
    Site,
    WellKnownCore,
    bad_option_answer,
)
from coaptcp.server.tlsinfo import (
    TLSInfo,
)

__all__ = [
    "CoapError",
    "ObservableResource",
    "ObservationRegistry",
    "Observer",
    "ObserverConnection",
    "ProxyHandler",
    "RenderResult",
    "Request",
    "Resource",
    "Response",
    "Site",
    "TLSInfo",
    "WellKnownCore",
    "bad_option_answer",
]
