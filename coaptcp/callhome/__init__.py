"""Devices that call home: a connection to a back end that serves the device's resources,
registered in the back end's resource directory and kept up (RFC 8323 section 3.3,
RFC 9176 section 5.3).  See :mod:`coaptcp.callhome.service` and docs/callhome.md."""

from __future__ import annotations

from coaptcp.callhome.backoff import DEFAULT_BACKOFF, Backoff
from coaptcp.callhome.observations import DEFAULT_MAX_OBSERVATIONS, BackendObservation
from coaptcp.callhome.registration import (
    DEFAULT_LIFETIME,
    CallHomeError,
    Directory,
    NotRegistered,
    Registration,
    RegistrationRefused,
)
from coaptcp.callhome.service import (
    DEFAULT_KEEPALIVE,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    CallHome,
    CallHomeState,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_OBSERVATIONS",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "BackendObservation",
    "Backoff",
    "CallHome",
    "CallHomeError",
    "CallHomeState",
    "Directory",
    "NotRegistered",
    "Registration",
    "RegistrationRefused",
]
