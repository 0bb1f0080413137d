"""The ``twistd coaptcp`` plugin: options and :func:`makeService`.

``twistd -n coaptcp`` serves the demo site on ``tcp:5683``.  ``--tcp`` takes any Twisted
server endpoint description (repeatable), so IPv6, UNIX sockets, systemd sockets and the
``haproxy:`` wrapper work as they do for ``twistd web``.  ``--ws`` (repeatable) serves CoAP
over WebSockets at ``/.well-known/coap`` and the browser client at ``/`` on one port
(``tcp:`` for coap+ws, ``ssl:`` for coaps+ws; see :mod:`coaptcp.tap.websocket`).
:func:`makeService` returns a service an application can add to its own ``Application``.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from coaptcp.channel.limits import DEFAULT_LIMITS, Limits
from coaptcp.channel.reactor import default_reactor
from coaptcp.core.blockwise import DEFAULT_MAX_BODY_SIZE
from coaptcp.core.connection import DEFAULT_MAX_MESSAGE_SIZE, MIN_PEER_MAX_MESSAGE_SIZE
from coaptcp.server.resource import Resource
from coaptcp.tap import callhome
from coaptcp.tap.descriptions import check_server_description as _check_endpoint
from coaptcp.tap.directory import RD_OPT_FLAGS, RD_OPT_PARAMETERS, add_directory, check_rd_options
from coaptcp.tap.dtls import DtlsOptions
from coaptcp.tap.metrics import MetricsOptions, add_metrics, make_site
from coaptcp.tap.proxy import (
    PROXY_OPT_PARAMETERS,
    ProxySettings,
    check_proxy_only_options,
    check_proxy_options,
    check_reverse_options,
    make_proxy,
    make_upstream,
    mount_reverse,
)
from coaptcp.tap.service import CoapService
from coaptcp.tap.tls import (
    TLS_OPT_FLAGS,
    TLS_OPT_PARAMETERS,
    add_tls_listeners,
    check_tls_options,
    tls_requested,
)
from coaptcp.tap.udp import add_udp_listeners, parse_udp_description
from coaptcp.tap.workers import WORKER_OPT_PARAMETERS, check_worker_options, make_worker_pool
from coaptcp.transport.admission import ConnectionGate, fit_descriptor_limit
from coaptcp.transport.listeners import DEFAULT_LISTEN_BACKLOG, add_listener
from coaptcp.transport.tcp import CoapFactory

__all__ = ["DEFAULT_TCP_ENDPOINT", "CoapService", "Options", "load_resource", "makeService"]

#: Where ``twistd coaptcp`` listens when no ``--tcp`` is given (RFC 8323 section 8.1).
DEFAULT_TCP_ENDPOINT = "tcp:5683"

#: The largest Max-Message-Size we accept to configure (the Len field's limit is ~4 GiB;
#: a server buffering that much per connection is a misconfiguration).
MAX_CONFIGURABLE_MESSAGE_SIZE = 64 * 1024 * 1024


_TIMEOUTS = frozenset(
    {
        "csm_timeout",
        "idle_timeout",
        "frame_timeout",
        "keepalive_interval",
        "write_timeout",
        "ws_handshake_timeout",
    }
)


def _default_text(field: str) -> str:
    value = getattr(DEFAULT_LIMITS, field)
    if value is None:
        return "0"
    return str(value) if isinstance(value, int) else f"{value:g}"


def load_resource(spec: str) -> Resource:
    """Load ``module.attribute`` (or ``module:attribute``) as a root :class:`Resource`.

    The attribute may be a Resource instance, a Resource subclass, or a callable that
    returns a Resource.  Raises :class:`usage.UsageError` with a clear message otherwise.

    Modules in the current directory are found, as ``python -m`` finds them: the current
    directory goes first on ``sys.path`` (``twistd`` does not put it there itself).
    """
    module_name, sep, attribute = spec.replace(":", ".").rpartition(".")
    if not sep or not module_name or not attribute:
        raise usage.UsageError(f"--resource wants module.attribute, not {spec!r}")
    _current_directory_first()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise usage.UsageError(f"--resource {spec}: cannot import {module_name}: {error}")
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise usage.UsageError(f"--resource {spec}: {module_name} has no {attribute!r}")
    if isinstance(value, Resource):
        return value
    if callable(value):
        try:
            made = value()
        except Exception as error:
            raise usage.UsageError(f"--resource {spec}: calling it failed: {error!r}")
        if isinstance(made, Resource):
            return made
        raise usage.UsageError(
            f"--resource {spec}() returned {type(made).__name__}, not a Resource"
        )
    raise usage.UsageError(f"--resource {spec} is a {type(value).__name__}, not a Resource")


def _current_directory_first() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does."""
    here = os.getcwd()
    if not sys.path or os.path.abspath(sys.path[0] or os.curdir) != here:
        sys.path.insert(0, here)
        importlib.invalidate_caches()


#: ``twistd coaptcp`` options for :class:`~coaptcp.channel.limits.Limits`: (option, field, kind,
#: help).  A timeout of 0 turns it off.
_LIMIT_OPTIONS: list[tuple[str, str, type, str]] = [
    (
        "csm-timeout",
        "csm_timeout",
        float,
        "Seconds a peer has to send its CSM before it is aborted (0: no limit).",
    ),
    (
        "idle-timeout",
        "idle_timeout",
        float,
        "Seconds of silence after which an idle connection is released (0: never).",
    ),
    (
        "frame-timeout",
        "frame_timeout",
        float,
        "Seconds a frame (over WebSockets also a fragmented message) may take to arrive; "
        "slower peers are aborted (0: no limit).",
    ),
    (
        "ws-handshake-timeout",
        "ws_handshake_timeout",
        float,
        "Seconds a connection to a --ws port has from accept to finish its WebSocket "
        "handshake (TLS included) or HTTP request; slower ones are dropped (0: no limit).",
    ),
    (
        "keepalive",
        "keepalive_interval",
        float,
        "Ping a peer silent for this many seconds; close it if no Pong comes (0: off).",
    ),
    ("pong-timeout", "pong_timeout", float, "Seconds to wait for a keepalive Pong."),
    (
        "max-requests-in-progress",
        "max_inbound_requests",
        int,
        "Requests one peer may have in progress; more get 4.29 Too Many Requests.",
    ),
    (
        "write-timeout",
        "write_timeout",
        float,
        "Seconds a peer may leave a full buffer of our output unread before it is "
        "aborted (0: never).",
    ),
    (
        "messages-per-read",
        "messages_per_read",
        int,
        "Messages of one connection processed per reactor turn; the rest wait a turn.",
    ),
    (
        "max-custody-pings",
        "max_custody_pings",
        int,
        "Custody Pings one peer may have waiting; more are answered without Custody.",
    ),
    (
        "max-connections",
        "max_connections",
        int,
        "Open connections in total, on all listeners, counted from accept (lowered to fit "
        "the descriptor limit).",
    ),
    (
        "upload-timeout",
        "upload_timeout",
        float,
        "Seconds a partial Block1 upload may go without a block before it is dropped "
        "(a later block gets 4.08).",
    ),
    (
        "max-upload-bytes-per-connection",
        "max_upload_bytes_per_connection",
        int,
        "Bytes the partial Block1 uploads of one connection may hold; a block beyond "
        "gets 5.03. At least --max-body-size.",
    ),
    (
        "max-upload-bytes",
        "max_upload_bytes",
        int,
        "Bytes the partial Block1 uploads of all connections (every listener) may hold; "
        "a block beyond gets 5.03. At least --max-upload-bytes-per-connection.",
    ),
    (
        "max-connections-per-address",
        "max_connections_per_address",
        int,
        "Open connections from one IP address, on all listeners, counted from accept.",
    ),
]
LIMIT_PARAMETERS = [
    [option, None, _default_text(field), text] for option, field, _, text in _LIMIT_OPTIONS
]


def limits_from_options(options: Options | dict[str, Any]) -> Limits:
    """Build :class:`Limits` from parsed options (validated by ``postOptions``)."""
    values: dict[str, Any] = {}
    for option, field, kind, _ in _LIMIT_OPTIONS:
        value = kind(options.get(option, _default_text(field)))
        if field in _TIMEOUTS and value == 0:
            value = None
        values[field] = value
    return Limits(**values)


class Options(callhome.CallHomeOptions, DtlsOptions, MetricsOptions):
    """Command-line options of ``twistd coaptcp`` (see ``twistd coaptcp --help``)."""

    synopsis = "[options]"
    longdesc = (
        "Serve CoAP over TCP (RFC 8323, draft-ietf-core-coap-tcp-tls) with a resource tree. "
        "With no --resource, a demo site is served: /, /big, /hello, /info, /large, "
        "/store, /time and /.well-known/core. "
        "With no --tcp, --ws, --udp, TLS or --call-home option, it listens on tcp:5683. "
        "--tls serves coaps+tcp (RFC 8323 section 9) with --certificate and/or --psk-file; "
        "credentials without --tls listen on tcp:5684."
    )

    optParameters = [
        [
            "resource",
            "r",
            None,
            "Root resource to serve, as module.attribute (a Resource, a Resource class, "
            "or a callable returning one). Default: the demo site.",
        ],
        [
            "max-message-size",
            None,
            str(DEFAULT_MAX_MESSAGE_SIZE),
            "Largest message in bytes accepted from a peer, advertised in our CSM "
            "(RFC 8323 section 5.3.1).",
        ],
        [
            "max-body-size",
            None,
            str(DEFAULT_MAX_BODY_SIZE),
            "Largest request body reassembled from Block1 blocks; more is answered 4.13 "
            "(RFC 7959). Every listener.",
        ],
        *LIMIT_PARAMETERS,
        [
            "listen-backlog",
            None,
            str(DEFAULT_LISTEN_BACKLOG),
            "Listen backlog of tcp:, tcp6: and ssl: listeners whose description gives no "
            "backlog= (the kernel caps it at net.core.somaxconn).",
        ],
        *TLS_OPT_PARAMETERS,
        *WORKER_OPT_PARAMETERS,
        *PROXY_OPT_PARAMETERS,
        *RD_OPT_PARAMETERS,
        *callhome.CALL_HOME_OPT_PARAMETERS,
    ]
    optFlags = [
        [
            "lenient-csm",
            None,
            "Accept peers whose first message is not a CSM (for peers such as "
            "Californium that send none). By default they are aborted.",
        ],
        *TLS_OPT_FLAGS,
        *RD_OPT_FLAGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        # --help wraps docs as they stand: a docstring's line breaks showed as runs of spaces
        self.docs = {name: " ".join(doc.split()) if doc else doc for name, doc in self.docs.items()}
        self["tcp"] = []
        self["ws"] = []
        self["tls"] = []
        self["udp"] = []
        self["proxy"] = []
        self["reverse"] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse, keeping the arguments as given (``--workers`` hands them to workers)."""
        self["argv"] = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_tcp(self, description: str) -> None:
        """Listen for CoAP over TCP on a Twisted endpoint description, e.g. tcp:5683 or
        tcp6:5683:interface=\\:\\:1 (repeatable; default tcp:5683)."""
        self["tcp"].append(description)

    def opt_ws(self, description: str) -> None:
        """Serve CoAP over WebSockets at /.well-known/coap and the browser client at /
        on a Twisted endpoint description: tcp:8080 for coap+ws, or for coaps+ws
        ssl:8443:privateKey=KEY:certKey=CERT (PEM files; repeatable)."""
        self["ws"].append(description)

    def opt_udp(self, description: str) -> None:
        """Listen for CoAP over UDP (coap://, RFC 7252) on udp:PORT, optionally with
        :interface=ADDRESS (IPv6 colons escaped: udp:5683:interface=\\:\\:1; repeatable)."""
        self["udp"].append(description)

    def opt_proxy(self, network: str) -> None:
        """Act as a forward proxy (Proxy-Uri, Proxy-Scheme) to destinations in NETWORK,
        e.g. 127.0.0.0/8 or fd00::/8, or any (repeatable; without it, no proxying)."""
        self["proxy"].append(network)

    def opt_reverse(self, mount: str) -> None:
        """Act as a reverse proxy: requests under /PATH go to the base URI, on any scheme,
        e.g. /plant=coap://[fd00::17]/ (repeatable)."""
        self["reverse"].append(mount)

    def opt_tls(self, description: str) -> None:
        """Listen for CoAP over TLS (coaps+tcp) on a Twisted endpoint description, e.g.
        tcp:5684 (repeatable; default tcp:5684 when --certificate or --psk-file is given)."""
        self["tls"].append(description)

    def postOptions(self) -> None:
        try:
            size = int(self["max-message-size"])
        except ValueError:
            raise usage.UsageError(
                f"--max-message-size must be a whole number, not {self['max-message-size']!r}"
            )
        if not MIN_PEER_MAX_MESSAGE_SIZE <= size <= MAX_CONFIGURABLE_MESSAGE_SIZE:
            raise usage.UsageError(
                f"--max-message-size must be between {MIN_PEER_MAX_MESSAGE_SIZE} and "
                f"{MAX_CONFIGURABLE_MESSAGE_SIZE}"
            )
        self["max-message-size"] = size
        try:
            body = int(self["max-body-size"])
        except ValueError:
            raise usage.UsageError(
                f"--max-body-size must be a whole number, not {self['max-body-size']!r}"
            )
        if body < 1:
            raise usage.UsageError("--max-body-size must be positive")
        self["max-body-size"] = body
        for option, _, kind, _ in _LIMIT_OPTIONS:
            try:
                value = kind(self[option])
            except ValueError:
                raise usage.UsageError(f"--{option} must be a number, not {self[option]!r}")
            if not math.isfinite(value) or value < 0 or (kind is int and value < 1):
                raise usage.UsageError(f"--{option} must be positive, not {self[option]!r}")
        self["limits"] = limits_from_options(self)
        _check_upload_limits(self["limits"], body)
        try:
            backlog = int(self["listen-backlog"])
        except ValueError:
            backlog = 0
        if not 1 <= backlog <= 65535:
            raise usage.UsageError(
                f"--listen-backlog must be between 1 and 65535, not {self['listen-backlog']!r}"
            )
        self["listen-backlog"] = backlog
        listeners = self["tcp"] or self["ws"] or self["udp"] or tls_requested(self)
        if not listeners and not self.get("call-home"):
            self["tcp"] = [DEFAULT_TCP_ENDPOINT]
        for description in self["udp"]:
            parse_udp_description(description)
        self["proxy-policy"] = check_proxy_options(self["proxy"])
        self["proxy-settings"] = ProxySettings(self)
        self["reverse-mounts"] = check_reverse_options(self["reverse"])
        check_proxy_only_options(self)
        for description in [*self["tcp"], *self["ws"]]:
            _check_endpoint(description)
        check_tls_options(self, _check_endpoint)
        check_worker_options(self)
        callhome.check_call_home_options(self)
        if self["udp"] and self.get("workers"):
            raise usage.UsageError(
                "--udp cannot be combined with --workers: a worker keeps the message layer "
                "of its clients (deduplication, retransmission), which a shared UDP port "
                "would spread over the workers; run UDP in a server of its own"
            )
        if self["resource"] is not None:
            self["root"] = load_resource(self["resource"])
        else:
            from coaptcp.tap.demo import make_demo_site

            self["root"] = make_demo_site()
        self["rd-limits"] = check_rd_options(self)


def _check_upload_limits(limits: Limits, max_body_size: int) -> None:
    """The upload bounds nest: a body fits a connection's budget, which fits the server's."""
    if not limits.upload_timeout > 0:
        raise usage.UsageError("--upload-timeout must be a positive number of seconds")
    if max_body_size > limits.max_upload_bytes_per_connection:
        raise usage.UsageError(
            f"--max-body-size {max_body_size} exceeds --max-upload-bytes-per-connection "
            f"{limits.max_upload_bytes_per_connection}: such a body could never be received"
        )
    if limits.max_upload_bytes_per_connection > limits.max_upload_bytes:
        raise usage.UsageError(
            f"--max-upload-bytes-per-connection {limits.max_upload_bytes_per_connection} "
            f"exceeds --max-upload-bytes {limits.max_upload_bytes}"
        )


def makeService(options: Options | dict[str, Any]) -> MultiService:
    """Build the service for parsed :class:`Options` (also usable from an app's .tac).

    A plain dict needs ``"root"`` and its listeners; other keys take their defaults.

    Raises the process's descriptor limit where it may and lowers ``--max-connections``
    to fit it (:func:`~coaptcp.transport.admission.fit_descriptor_limit`); all listeners count
    their connections together, from accept.
    """
    reactor = default_reactor()
    if options.get("workers"):
        return make_worker_pool(options)  # type: ignore[arg-type]
    if "root" not in options:
        raise ValueError("makeService needs options['root'] (a Resource or Site)")

    root = options["root"]
    policy = options.get("proxy-policy") or check_proxy_options(options.get("proxy", []))
    mounts = options.get("reverse-mounts") or check_reverse_options(options.get("reverse", []))
    proxy = upstream = None
    if policy is not None or mounts:
        settings = options.get("proxy-settings") or ProxySettings(dict(options))
        upstream = make_upstream(settings, reactor)
        if policy is not None:
            proxy = make_proxy(policy, settings, reactor, upstream)
        mount_reverse(root, mounts, upstream)
    directory = add_directory(root, options, reactor)
    site = make_site(root, proxy, options)
    limits = options.get("limits") or limits_from_options(options)
    # Every connection holds a descriptor from accept: the limit must answer first.
    limits = fit_descriptor_limit(limits, reactor=reactor)
    # One count for all listeners: the descriptors they use come from one budget.
    gate = ConnectionGate(limits)
    backlog = int(options.get("listen-backlog", DEFAULT_LISTEN_BACKLOG))
    factory = CoapFactory(
        site,
        max_message_size=int(options["max-message-size"]),
        require_csm=not options.get("lenient-csm"),
        limits=limits,
        max_body_size=int(options.get("max-body-size", DEFAULT_MAX_BODY_SIZE)),
        gate=gate,
    )
    service = CoapService(factory)
    for description in options["tcp"]:
        add_listener(service, description, factory, reactor, backlog, gate)
    if options.get("ws"):
        from coaptcp.tap.websocket import add_websocket_listeners

        add_websocket_listeners(
            service,
            options["ws"],
            site,
            max_message_size=int(options["max-message-size"]),
            require_csm=not options.get("lenient-csm"),
            limits=limits,
            max_body_size=factory.max_body_size,
            upload_budget=factory.upload_budget,  # one budget for every listener
            gate=gate,
            backlog=backlog,
        )
    add_tls_listeners(service, factory, options, reactor, backlog, gate)
    add_udp_listeners(service, options.get("udp", []), factory, reactor)
    callhome.add_call_home(service, options, site, reactor)
    add_metrics(
        service, options, reactor, site, gate=gate, upstream=upstream, directory=directory
    )
    return service
