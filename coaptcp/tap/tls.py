"""The coaps+tcp part of ``twistd coaptcp``: TLS options and listeners (RFC 8323 section 9).

:mod:`coaptcp.tap.plugin` includes these options and calls :func:`check_tls_options` from its
``postOptions`` and :func:`add_tls_listeners` from ``makeService``::

    twistd -n coaptcp --tls tcp:5684 --certificate server.pem --private-key server.key
    twistd -n coaptcp --psk-file keys.txt                     # PSK only, on tcp:5684
    twistd -n coaptcp --tcp tcp:5683 --tls tcp:5684 --certificate both.pem --psk-file keys.txt

Giving credentials without ``--tls`` listens on tcp:5684 (the coaps+tcp default port,
RFC 8323 section 8.2).  When TLS is on and no ``--tcp`` is given, nothing is served in the
clear.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from coaptcp.transport.admission import ConnectionGate
from coaptcp.transport.listeners import DEFAULT_LISTEN_BACKLOG, add_listener
from coaptcp.transport.tcp import CoapFactory
from coaptcp.transport.tls.psk import PSKUnavailable
from coaptcp.transport.tls.settings import (
    COAPS_TCP_PORT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    ServerTLSSettings,
    TLSConfigurationError,
    load_psk_file,
)

__all__ = [
    "DEFAULT_TLS_ENDPOINT",
    "TLS_OPT_FLAGS",
    "TLS_OPT_PARAMETERS",
    "add_tls_listeners",
    "check_tls_options",
    "tls_requested",
]

#: Where coaps+tcp is served when TLS credentials come without ``--tls``.
DEFAULT_TLS_ENDPOINT = f"tcp:{COAPS_TCP_PORT}"

TLS_OPT_PARAMETERS: list[list[Any]] = [
    [
        "certificate",
        None,
        None,
        "PEM file with the server certificate (and chain) for --tls; it may also hold "
        "the private key.",
    ],
    ["private-key", None, None, "PEM file with the certificate's private key."],
    [
        "client-ca",
        None,
        None,
        "PEM file of CAs: TLS clients must present a certificate they issued (PSK clients "
        "are not asked). Resources see it as request.tls.",
    ],
    [
        "psk-file",
        None,
        None,
        "Pre-shared keys for TLS-PSK: one 'IDENTITY hex:KEY' or 'IDENTITY text:KEY' per "
        "line. Alone or beside --certificate.",
    ],
    [
        "tls-handshake-timeout",
        None,
        str(DEFAULT_HANDSHAKE_TIMEOUT),
        "Seconds a TLS handshake may take before the connection is dropped.",
    ],
]

TLS_OPT_FLAGS: list[list[Any]] = [
    [
        "require-alpn",
        None,
        "Close TLS clients that offer no ALPN at all, except on port 5684 (RFC 8323 "
        "section 8.2). By default they are served.",
    ],
]


def tls_requested(options: usage.Options) -> bool:
    """Whether any TLS option was given (so TLS listeners are wanted)."""
    return bool(options["tls"] or options["certificate"] or options["psk-file"]) or bool(
        options["client-ca"] or options["private-key"] or options["require-alpn"]
    )


def check_tls_options(options: usage.Options, check_endpoint: Any) -> None:
    """Validate the TLS options and build ``options["tls-settings"]`` (or ``None``).

    Every problem (a missing file, a key that does not match, a bad PSK file, PSK not
    available in this cryptography) is a :class:`usage.UsageError` naming the option.
    """
    options["tls-settings"] = None
    if not tls_requested(options):
        from coaptcp.tap.dtls import check_dtls_options

        check_dtls_options(options)  # --dtls without credentials, --dtls-mtu without --dtls
        return
    if not options["certificate"] and not options["psk-file"]:
        raise usage.UsageError(
            "--tls needs --certificate (and --private-key) or --psk-file, or both"
        )
    try:
        timeout = float(options["tls-handshake-timeout"])
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        raise usage.UsageError(
            "--tls-handshake-timeout must be a positive number of seconds, not "
            f"{options['tls-handshake-timeout']!r}"
        )
    if not options["tls"] and not options.get("dtls"):
        options["tls"] = [DEFAULT_TLS_ENDPOINT]
    for description in options["tls"]:
        if description.split(":", 1)[0].lower() == "ssl":
            raise usage.UsageError(
                f"--tls {description}: give a plain stream endpoint such as tcp:5684; "
                "coaptcp adds TLS itself"
            )
        check_endpoint(description)
    try:
        psk_keys = load_psk_file(options["psk-file"]) if options["psk-file"] else None
        settings = ServerTLSSettings(
            certificate=options["certificate"],
            private_key=options["private-key"],
            client_ca=options["client-ca"],
            psk_keys=psk_keys,
            require_alpn=bool(options["require-alpn"]),
            handshake_timeout=timeout,
        )
        settings.context  # noqa: B018 - build it now: bad files are usage errors
    except (TLSConfigurationError, PSKUnavailable) as error:
        raise usage.UsageError(f"TLS: {error}")
    options["tls-handshake-timeout"] = timeout
    options["tls-settings"] = settings
    from coaptcp.tap.dtls import check_dtls_options

    check_dtls_options(options)


def add_tls_listeners(
    service: MultiService,
    factory: CoapFactory,
    options: Any,
    reactor: Any,
    backlog: int = DEFAULT_LISTEN_BACKLOG,
    gate: ConnectionGate | None = None,
) -> None:
    """Add a coaps+tcp listener to ``service`` for every ``--tls`` endpoint (gated by
    ``gate``, see :func:`coaptcp.transport.listeners.add_listener`)."""
    from coaptcp.tap.dtls import add_dtls_listeners
    from coaptcp.transport.tls.transport import tls_server_factory

    settings = options.get("tls-settings")
    if settings is None:
        return
    add_dtls_listeners(service, options, factory, reactor)
    tls_factory = tls_server_factory(factory, settings)
    for description in options["tls"]:
        add_listener(service, description, tls_factory, reactor, backlog, gate)
