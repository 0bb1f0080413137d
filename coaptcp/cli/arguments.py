"""The command line of ``coaptcp-client``: its arguments, checked into :class:`Settings`.

Usage errors (a bad URI or option, flags that do not go together, an unreadable file)
exit with code 2 after argparse's usage line and one line saying what is wrong.  The URI
is one of RFC 8323 section 8's schemes; ``-O`` options are read by their format (RFC 7252
section 3.2); the TLS flags configure coaps+tcp and coaps+ws (RFC 8323 section 9).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coaptcp.client.connectors import TlsOptions
from coaptcp.client.pool import DEFAULT_KEEPALIVE
from coaptcp.client.targets import parse_method
from coaptcp.core.codes import Code
from coaptcp.core.mediatypes import parse_content_format
from coaptcp.core.options import OPTION_SPECS, OptionFormat, OptionNumber, Options, OptionValue
from coaptcp.core.uri import CoapUri, UriError, parse_uri
from coaptcp.core.version import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_ERROR_RESPONSE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NO_RESPONSE",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_USAGE",
    "PROG",
    "Settings",
    "build_parser",
    "parse_args",
]

PROG = "coaptcp-client"

#: Exit codes: a 2.xx response (or every Pong), a 4.xx/5.xx response, a usage error, no
#: response (connection failed, lost or timed out), an unexpected error, stdout not
#: writable, interrupted.
EXIT_OK = 0
EXIT_ERROR_RESPONSE = 1
EXIT_USAGE = 2
EXIT_NO_RESPONSE = 3
EXIT_INTERNAL = 70
EXIT_OUTPUT = 74  # stdout cannot be written (EX_IOERR of sysexits.h)
EXIT_INTERRUPTED = 130

#: The largest payload read from a file or stdin (``-f``, ``-e @FILE``): 64 MiB, the
#: client's default limit for a body it receives (a bound, so ``-f /dev/zero`` ends).
MAX_PAYLOAD = 64 * 1024 * 1024

#: Seconds a request may take, connection set-up included, unless ``--timeout`` says.
DEFAULT_TIMEOUT = 30.0


@dataclass
class Settings:
    """Everything the command line asked for, checked."""

    uri: CoapUri
    method: Code = Code.GET
    payload: bytes = b""
    options: Options = field(default_factory=Options)
    ping: bool = False
    observe: bool = False
    count: int = 1  # with observe: notifications to wait for, 0 for no limit
    verbose: int = 0
    timeout: float | None = DEFAULT_TIMEOUT
    interval: float | None = None  # --ping: seconds between Pings (a series)
    duration: float | None = None  # --observe / --ping --interval: seconds, then stop
    keepalive: float | None = DEFAULT_KEEPALIVE  # seconds of silence before a Ping
    tls: TlsOptions = field(default_factory=TlsOptions)
    pretty: bool | None = None  # None: when stdout is a terminal


class _Parser(argparse.ArgumentParser):
    """argparse with our one-line usage errors (exit code 2)."""

    def error(self, message: str) -> Any:  # argparse's signature returns NoReturn
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog=PROG,
        description="Send a CoAP request over TCP, TLS or WebSockets (RFC 8323), or UDP or "
                    "DTLS (RFC 7252), and print the response.",
        epilog=(
            "Exit codes: 0 success (2.xx), 1 error response (4.xx/5.xx), 2 usage error, "
            "3 no response (connection failed, lost or timed out), 70 internal error (a bug), "
            "74 output not written (disk full, ...), 130 interrupted."
        ),
    )
    parser.add_argument("uri", metavar="URI",
                        help="coap+tcp://host[:port]/path[?query]; coaps+tcp://, coap+ws://, "
                             "coaps+ws:// (RFC 8323 section 8), coap:// and coaps:// (RFC 7252 "
                             "section 6) work the same way")
    parser.add_argument("-m", "--method", default="GET",
                        help="GET (default), POST, PUT, DELETE, FETCH, PATCH or iPATCH; any case")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("-e", "--payload", metavar="TEXT",
                      help="request payload as text (UTF-8); @FILE reads a file, @- stdin")
    body.add_argument("-f", "--payload-file", metavar="FILE",
                      help="request payload from FILE ('-' for stdin)")
    parser.add_argument("-t", "--content-format", metavar="FORMAT",
                        help="Content-Format of the payload: a number or a name "
                             "(text, json, cbor, link-format, application/senml+json, ...)")
    parser.add_argument("-A", "--accept", metavar="FORMAT",
                        help="Accept option: the Content-Format wanted, number or name")
    parser.add_argument("-O", "--option", metavar="NUMBER[,VALUE]", action="append", default=[],
                        help="add an option by number; the value is read by the option's "
                             "format (uint, text, or hex for opaque with a 0x prefix); repeatable")
    parser.add_argument("--observe", action="store_true",
                        help="observe the resource (RFC 7641): print each notification until "
                             "interrupted (Ctrl-C deregisters), --count notifications came "
                             "or --duration passed")
    parser.add_argument("-c", "--count", type=_count, default=None, metavar="N",
                        help="send the request (or Ping) N times over the same connection; "
                             "with --observe, stop after N notifications")
    parser.add_argument("--ping", action="store_true",
                        help="send a CoAP Ping (RFC 8323 section 5.4) instead of a request "
                             "and print the round-trip time")
    parser.add_argument("--interval", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="with --ping: Ping every SECONDS on one connection, printing "
                             "each round trip, until --count, --duration or Ctrl-C")
    parser.add_argument("--duration", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="with --observe (or --ping --interval): stop after SECONDS "
                             "(deregister) and exit 0, or 3 if nothing was answered")
    parser.add_argument("--keepalive", type=_seconds, default=DEFAULT_KEEPALIVE,
                        metavar="SECONDS",
                        help=f"Ping the server after SECONDS of silence and drop the "
                             f"connection if no Pong comes (default {DEFAULT_KEEPALIVE:g}; "
                             f"0 for off): keeps an --observe connection checked")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show the request, response code, options and timing on stderr; "
                             "-vv adds the protocol log")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up after SECONDS, connecting included (default "
                             f"{DEFAULT_TIMEOUT:g}; 0 for no limit)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--pretty", action="store_true", default=None,
                        help="pretty-print the payload even when stdout is not a terminal")
    output.add_argument("--raw", dest="pretty", action="store_false",
                        help="write the exact payload bytes even to a terminal")
    tls = parser.add_argument_group("TLS and DTLS (coaps+tcp, coaps+ws and coaps)")
    tls.add_argument("--cafile", metavar="FILE",
                     help="PEM file of the CA certificates to verify the server with")
    tls.add_argument("--cert", metavar="FILE", help="our client certificate (PEM)")
    tls.add_argument("--key", metavar="FILE",
                     help="the private key of --cert (PEM), if not in that file")
    tls.add_argument("--psk-identity", metavar="IDENTITY", help="pre-shared key identity")
    tls.add_argument("--psk-key", metavar="KEY",
                     help="pre-shared key, as text or hex:HEXDIGITS")
    tls.add_argument("--insecure", action="store_true",
                     help="do not verify the server certificate (testing only)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _seconds(text: str) -> float:
    """A number of seconds: finite and not negative (argparse type; 0 is allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be negative")
    return value


def _positive_seconds(text: str) -> float:
    """A number of seconds above 0 (argparse type)."""
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _count(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _read_file(parser: argparse.ArgumentParser, name: str, what: str) -> bytes:
    try:
        if name == "-":
            if sys.stdin is None:  # started with <&-
                parser.error(f"cannot read {what} -: stdin is closed")
            data = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
        else:
            with open(name, "rb") as source:
                data = source.read(MAX_PAYLOAD + 1)
    except OSError as error:
        parser.error(f"cannot read {what} {name}: {error.strerror or error}")
    if len(data) > MAX_PAYLOAD:
        parser.error(f"{what} {name} is larger than {MAX_PAYLOAD} bytes, the most "
                     f"{PROG} sends")
    return data


def _check_readable(parser: argparse.ArgumentParser, name: str | None, flag: str) -> None:
    if name is not None and not os.access(name, os.R_OK):
        reason = "no such file" if not os.path.exists(name) else "not readable"
        parser.error(f"cannot read {flag} {name}: {reason}")


def _option_value(number: int, text: str | None) -> OptionValue:
    spec = OPTION_SPECS.get(number)
    if text is None or text == "":
        return None
    if text.lower().startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise ValueError(f"{text!r} is not hex: 0x then pairs of hex digits") from None
    if spec is not None and spec.format is OptionFormat.UINT:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{spec.name} takes a whole number, not {text!r}")
        value = int(text, 10)
        largest = 256**spec.max_length - 1  # RFC 7252 section 3.2: at most max_length bytes
        if value > largest:
            raise ValueError(f"{spec.name} {value} is out of range (0-{largest})")
        return value
    if spec is not None and spec.format is OptionFormat.EMPTY:
        raise ValueError(f"{spec.name} takes no value")
    try:
        _utf8(text)
    except ValueError:
        raise ValueError("the text is not UTF-8 (write other bytes as 0x...)") from None
    return text


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; argv bytes that are not UTF-8 (lone surrogates) are a ValueError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text is not UTF-8") from None


def _parse_option(text: str) -> tuple[int, OptionValue]:
    number_text, _, value_text = text.partition(",")
    try:
        number = int(number_text.strip(), 0)
    except ValueError:
        raise ValueError(
            f"the option number must be a number such as 11 or 0x0b, not {number_text!r}"
        ) from None
    if not 0 < number <= 0xFFFF:
        raise ValueError(f"option number {number} is out of range (1-65535)")
    return number, _option_value(number, value_text if "," in text else None)


def _psk_key(text: str) -> bytes:
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise ValueError(f"{text!r} is not hex: hex: then pairs of hex digits") from None
    return _utf8(text)


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Parse and check the command line; usage errors exit with code 2 and one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        uri = parse_uri(args.uri)
    except UriError as error:
        parser.error(str(error))
    try:
        method = parse_method(args.method)
    except ValueError as error:
        parser.error(str(error))
    if args.observe and args.ping:
        parser.error("--observe and --ping do not go together")
    if args.observe and method != Code.GET:
        parser.error("--observe sends GET (RFC 7641): drop -m")
    if args.interval is not None and not args.ping:
        parser.error("--interval paces Pings: it goes with --ping")
    if args.duration is not None and not (args.observe or args.interval is not None):
        parser.error("--duration goes with --observe or --ping --interval")
    payload = b""
    if args.payload is not None:
        if args.payload.startswith("@"):
            payload = _read_file(parser, args.payload[1:], "payload file")
        else:
            try:
                payload = _utf8(args.payload)
            except ValueError as error:
                parser.error(f"--payload: {error} (send other bytes with -f FILE)")
    elif args.payload_file is not None:
        payload = _read_file(parser, args.payload_file, "payload file")
    if args.ping and (payload or args.method.upper() != "GET" or args.content_format
                      or args.accept or args.option):
        parser.error("--ping sends a Ping, not a request: drop -m, payload and option flags")
    if args.observe and payload:
        parser.error("--observe sends GET without a payload: drop -e/-f")
    items: list[tuple[int, OptionValue]] = []
    for flag, text, number in (("--content-format", args.content_format,
                                OptionNumber.CONTENT_FORMAT),
                               ("--accept", args.accept, OptionNumber.ACCEPT)):
        if text is not None:
            try:
                items.append((number, parse_content_format(text)))
            except ValueError as error:
                parser.error(f"{flag}: {error}")
    for text in args.option:
        try:
            items.append(_parse_option(text))
        except ValueError as error:
            parser.error(f"--option {text!r}: {error}")
    tls = _tls_options(parser, args, uri)
    return Settings(
        uri=uri,
        method=method,
        payload=payload,
        options=Options(items),
        ping=args.ping,
        observe=args.observe,
        count=args.count if args.count is not None else (
            0 if args.observe or args.interval is not None else 1
        ),
        verbose=args.verbose,
        timeout=args.timeout or None,
        interval=args.interval,
        duration=args.duration,
        keepalive=args.keepalive or None,
        tls=tls,
        pretty=args.pretty,
    )


def _tls_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 uri: CoapUri) -> TlsOptions:
    _check_readable(parser, args.cafile, "--cafile")
    _check_readable(parser, args.cert, "--cert")
    _check_readable(parser, args.key, "--key")
    if args.key is not None and args.cert is None:
        parser.error("--key needs --cert")
    if (args.psk_identity is None) != (args.psk_key is None):
        parser.error("--psk-identity and --psk-key go together")
    psk_identity = psk_key = None
    try:
        flag = "--psk-identity"
        psk_identity = None if args.psk_identity is None else _utf8(args.psk_identity)
        flag = "--psk-key"
        psk_key = None if args.psk_key is None else _psk_key(args.psk_key)
    except ValueError as error:
        parser.error(f"{flag}: {error}")
    try:
        tls = TlsOptions(
            cafile=args.cafile,
            certfile=args.cert,
            keyfile=args.key,
            psk_identity=psk_identity,
            psk_key=psk_key,
            insecure=args.insecure,
        )
    except ValueError as error:
        parser.error(f"TLS options: {error}")
    if tls.configured and not uri.secure:
        parser.error(f"TLS options apply to coaps://, coaps+tcp:// and coaps+ws:// URIs, "
                     f"not {uri.scheme}://")
    if tls.psk_identity is not None and uri.scheme == "coaps+ws":
        parser.error("--psk-identity: pre-shared keys are not supported for coaps+ws; "
                     "use coaps+tcp or coaps")
    if args.cafile is not None or args.cert is not None:
        # Files that cannot make a TLS context are our mistake, not the server's (exit 2).
        from coaptcp.transport.tls.settings import ClientTLSSettings

        try:
            _ = ClientTLSSettings(ca_file=args.cafile, certificate=args.cert,
                                  private_key=args.key, insecure=args.insecure).context
        except ValueError as error:
            parser.error(f"TLS options: {error}")
    return tls
