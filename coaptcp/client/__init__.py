"""The client: requests by URI over pooled connections, block-wise transfers and
observations (RFC 8323 sections 3, 6-8; RFC 7641; RFC 7959).
"""

from __future__ import annotations

from coaptcp.client.client import (
    Client,
)
from coaptcp.client.connectors import (
    ClientError,
    ConnectFailed,
    ConnectOptions,
    SchemeNotAvailable,
    TlsOptions,
)
from coaptcp.client.errors import (
    ClientClosed,
    PoolFull,
    RequestTimeout,
)
from coaptcp.client.observe import (
    Observation,
)
from coaptcp.client.pool import (
    ConnectionTimings,
)
from coaptcp.client.targets import (
    parse_method,
)
from coaptcp.client.transfer import (
    Progress,
    TransferSettings,
)

__all__ = [
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ConnectOptions",
    "ConnectionTimings",
    "Observation",
    "PoolFull",
    "Progress",
    "RequestTimeout",
    "SchemeNotAvailable",
    "TlsOptions",
    "TransferSettings",
    "parse_method",
]
