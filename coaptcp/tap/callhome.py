"""``twistd coaptcp --call-home URI``: the served tree calls home to a back end.

:mod:`coaptcp.tap.plugin` includes these options, calls :func:`check_call_home_options`
from its ``postOptions`` and :func:`add_call_home` from ``makeService``::

    twistd -n coaptcp --call-home coap+tcp://backend.example/rd?ep=node1
    twistd -n coaptcp --call-home coaps+tcp://backend.example/rd?ep=node1 \\
        --call-home-ca ca.pem --call-home-certificate node1.pem --call-home-key node1.key
    twistd -n coaptcp --tcp tcp:5683 --call-home coap+tcp://backend.example/rd?ep=node1

Each ``--call-home`` (repeatable: one back end each) is a
:class:`~coaptcp.callhome.CallHome` serving the same tree as the listeners (``--resource``
or the demo site) over its own connection (RFC 8323 section 3.3), registered in the back
end's resource directory (RFC 9176 section 5.3).  With ``--call-home`` and no listener
option nothing listens: the device is reached only over the connections it opens.

The TLS credentials a device calls home with are options of their own
(``--call-home-ca``, ``--call-home-certificate``, ``--call-home-key``,
``--call-home-psk-file``) rather than the listeners' ``--certificate``, ``--private-key``
and ``--psk-file``: those turn on a coaps+tcp listener (a device that only calls home
would then listen on 5684), the listeners' PSK file holds the keys of many clients where
a device has one identity, and a device checks its back end against CAs of its own,
which ``--client-ca`` (the CAs of the clients a listener accepts) is not.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from coaptcp.callhome import Backoff, CallHome, Directory
from coaptcp.callhome.registration import MAX_LIFETIME
from coaptcp.callhome.service import DEFAULT_KEEPALIVE
from coaptcp.client.connectors import ConnectOptions, TlsOptions
from coaptcp.core.uri import CoapUri
from coaptcp.server.resource import Site
from coaptcp.transport.tls.psk import PSKUnavailable
from coaptcp.transport.tls.settings import (
    ClientTLSSettings,
    TLSConfigurationError,
    load_psk_file,
)

__all__ = [
    "CALL_HOME_OPT_PARAMETERS",
    "DEFAULT_MAX_DELAY",
    "CallHomeOptions",
    "add_call_home",
    "check_call_home_options",
]

#: The longest back-off between attempts to call home, in seconds, by default.
DEFAULT_MAX_DELAY = Backoff().max_delay

CALL_HOME_OPT_PARAMETERS: list[list[Any]] = [
    [
        "call-home-lifetime",
        None,
        None,
        "Lifetime in seconds of the --call-home registrations (lt, RFC 9176); they are "
        "updated at 90% of it. Default: the URI's lt=, else 90000.",
    ],
    [
        "call-home-keepalive",
        None,
        f"{DEFAULT_KEEPALIVE:g}",
        "Ping a --call-home back end silent for this many seconds; call home anew if no "
        "Pong comes (0: off).",
    ],
    [
        "call-home-max-delay",
        None,
        f"{DEFAULT_MAX_DELAY:g}",
        "Longest wait in seconds between attempts to call home (the back-off starts at "
        "1 s and doubles, with jitter).",
    ],
    ["call-home-ca", None, None, "PEM file of the CAs that vouch for the --call-home back "
                                 "end (coaps+). Default: the system's."],
    ["call-home-certificate", None, None, "PEM file with the client certificate (and "
                                          "chain) a coaps+ --call-home presents."],
    ["call-home-key", None, None, "PEM file with its private key, if not in the "
                                  "certificate file."],
    [
        "call-home-psk-file",
        None,
        None,
        "The pre-shared key a coaps+tcp --call-home uses: one 'IDENTITY hex:KEY' or "
        "'IDENTITY text:KEY' line.",
    ],
]


class CallHomeOptions:
    """The repeatable ``--call-home`` option, for ``twistd coaptcp``'s ``usage.Options``
    (a mixin: its list is ``options["call-home"]``)."""

    def opt_call_home(self, uri: str) -> None:
        """Call home to a back end's resource directory and serve the tree over that
        connection, e.g. coap+tcp://backend/rd?ep=NAME (repeatable; see docs/callhome.md)."""
        calls: list[str] = self.setdefault("call-home", [])  # type: ignore[attr-defined]
        calls.append(uri)


def _seconds(options: Any, option: str, *, zero_ok: bool) -> float:
    text = options[option]
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{option} must be a number of seconds, not {text!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise usage.UsageError(f"--{option} must be positive, not {text!r}")
    return value


def _tls(options: Any, uris: list[CoapUri]) -> TlsOptions | None:
    """The client TLS settings of the ``--call-home-*`` options, checked now."""
    given = [name for name in ("call-home-ca", "call-home-certificate", "call-home-key",
                               "call-home-psk-file") if options[name]]
    if not given:
        return None
    if not any(uri.secure for uri in uris):
        raise usage.UsageError(
            f"--{given[0]} is for coaps+tcp or coaps+ws --call-home URIs, and none is"
        )
    if options["call-home-key"] and not options["call-home-certificate"]:
        raise usage.UsageError("--call-home-key needs --call-home-certificate")
    psk_identity = psk_key = None
    try:
        if options["call-home-psk-file"]:
            keys = load_psk_file(options["call-home-psk-file"])
            if len(keys) != 1:
                raise usage.UsageError(
                    f"--call-home-psk-file {options['call-home-psk-file']}: want exactly "
                    f"one 'IDENTITY KEY' line, not {len(keys)}"
                )
            [(psk_identity, psk_key)] = keys.items()
            if any(uri.secure and uri.websocket for uri in uris):
                raise usage.UsageError(
                    "--call-home-psk-file: pre-shared keys work over coaps+tcp only, "
                    "not coaps+ws"
                )
        tls = TlsOptions(
            cafile=options["call-home-ca"],
            certfile=options["call-home-certificate"],
            keyfile=options["call-home-key"],
            psk_identity=psk_identity,
            psk_key=psk_key,
        )
        psk = (psk_identity, psk_key) if psk_identity is not None else None
        settings = ClientTLSSettings(
            ca_file=tls.cafile,
            certificate=tls.certfile,
            private_key=tls.keyfile,
            psk=psk,  # type: ignore[arg-type]
        )
        settings.context  # noqa: B018 - build it now: bad files are usage errors
    except (TLSConfigurationError, PSKUnavailable, ValueError) as error:
        raise usage.UsageError(f"--call-home TLS: {error}")
    return tls


def check_call_home_options(options: Any) -> None:
    """Validate the call-home options and set ``options["call-home-settings"]`` (a dict
    of what :func:`add_call_home` needs, or ``None`` without ``--call-home``).

    Every problem (a bad URI, a lifetime out of range, missing or mismatched TLS files,
    ``--workers``) is a :class:`usage.UsageError`.
    """
    options["call-home-settings"] = None
    uris: list[str] = options.setdefault("call-home", [])
    stray = [name for name in ("call-home-lifetime", "call-home-ca", "call-home-certificate",
                               "call-home-key", "call-home-psk-file") if options[name]]
    if not uris:
        if stray:
            raise usage.UsageError(f"--{stray[0]} needs --call-home")
        return
    if options.get("workers"):
        raise usage.UsageError(
            "--call-home cannot be combined with --workers: every worker would call home "
            "and register under the same name; run the device in one process"
        )
    lifetime: int | None = None
    if options["call-home-lifetime"] is not None:
        text = options["call-home-lifetime"]
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIFETIME:
            raise usage.UsageError(
                f"--call-home-lifetime must be a whole number of seconds from 1 to "
                f"{MAX_LIFETIME}, not {text!r}"
            )
        lifetime = int(text)
    directories = []
    for uri in uris:
        try:
            directories.append(Directory.from_uri(uri, lifetime))
        except ValueError as error:
            raise usage.UsageError(f"--call-home {uri}: {error}")
    keepalive = _seconds(options, "call-home-keepalive", zero_ok=True)
    max_delay = _seconds(options, "call-home-max-delay", zero_ok=False)
    if max_delay < Backoff().initial:
        raise usage.UsageError(
            f"--call-home-max-delay must be at least {Backoff().initial:g} s, the first delay"
        )
    tls = _tls(options, [directory.uri for directory in directories])
    options["call-home-settings"] = {
        "uris": uris,
        "lifetime": lifetime,
        "keepalive": keepalive or None,
        "backoff": Backoff(max_delay=max_delay),
        "tls": tls,
    }


def add_call_home(service: MultiService, options: Any, site: Site, reactor: Any) -> None:
    """Add a :class:`~coaptcp.callhome.CallHome` serving ``site`` to ``service`` for every
    ``--call-home`` URI (none without)."""
    settings = options.get("call-home-settings")
    if settings is None:
        return
    connect = ConnectOptions(
        max_message_size=int(options["max-message-size"]),
        require_csm=not options.get("lenient-csm"),
    )
    for uri in settings["uris"]:
        device = CallHome(
            uri,
            site,
            reactor=reactor,
            lifetime=settings["lifetime"],
            tls=settings["tls"],
            connect_options=connect,
            keepalive=settings["keepalive"],
            backoff=settings["backoff"],
        )
        device.setServiceParent(service)
