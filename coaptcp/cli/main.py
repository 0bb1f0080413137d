"""``coaptcp-client``: send one CoAP request (or Ping) from the command line (RFC 8323).

Modelled on ``aiocoap-client`` and libcoap's ``coap-client``::

    coaptcp-client coap+tcp://127.0.0.1/hello
    coaptcp-client -m put -e 'new value' coap+tcp://127.0.0.1/store
    coaptcp-client -m post -f body.cbor -t cbor coap+tcp://[::1]:5683/items
    coaptcp-client --ping --count 3 coap+tcp://127.0.0.1
    coaptcp-client --ping --interval 1 coap+tcp://127.0.0.1
    coaptcp-client -v --accept json coap+tcp://127.0.0.1/info
    coaptcp-client --observe coap+tcp://127.0.0.1/time
    coaptcp-client --observe --duration 10 coap+tcp://127.0.0.1/time
    coaptcp-client coap+tcp://127.0.0.1/big > big.bin

The payload goes to stdout: pretty-printed when stdout is a terminal (JSON indented, CBOR
in diagnostic notation, link-format one link per line), the exact bytes otherwise.  ``-v``
adds the request, the response code, its options and the times (connecting, the TLS
handshake, the request) on stderr.
Large bodies move block-wise (RFC 7959, BERT) both ways, with a progress bar on stderr
when it is a terminal.  ``--observe`` prints each notification (RFC 7641) on its own line
until interrupted (Ctrl-C deregisters and exits 0), ``--count`` of them arrived or
``--duration`` seconds passed.  ``--ping --interval`` Pings once per interval on one
connection, as ``coap-client -K`` keeps one alive (RFC 8323 section 5.4).

Exit codes: 0 for a 2.xx response (or every Pong), 1 for a 4.xx/5.xx response, 2 for a
usage error (a bad URI or option, a scheme not available), 3 when no response came (the
connection could not be made, was lost, or timed out; TLS failures included), 130 when
interrupted.  Failures are one line on stderr, without a traceback (a usage error is
argparse's usage line, then that line).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from zope.interface import provider

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.cli.pretty import describe_option, pretty_payload
from coaptcp.client.client import (
    DEFAULT_KEEPALIVE,
    Client,
    ClientError,
    ConnectFailed,
    RequestTimeout,
    SchemeNotAvailable,
    TransferError,
    parse_method,
)
from coaptcp.client.connectors import TlsOptions
from coaptcp.core.codes import Code
from coaptcp.core.mediatypes import parse_content_format
from coaptcp.core.options import OPTION_SPECS, OptionFormat, OptionNumber, Options, OptionValue
from coaptcp.core.uri import CoapUri, UriError, parse_uri
from coaptcp.core.version import __version__
from coaptcp.server.resource import Response

__all__ = [
    "EXIT_ERROR_RESPONSE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_RESPONSE",
    "EXIT_OK",
    "EXIT_USAGE",
    "Settings",
    "build_parser",
    "main",
    "make_client",
    "parse_args",
    "run",
]

PROG = "coaptcp-client"

EXIT_OK = 0
EXIT_ERROR_RESPONSE = 1
EXIT_USAGE = 2
EXIT_NO_RESPONSE = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

#: Seconds a request may take, connection set-up included, unless ``--timeout`` says.
DEFAULT_TIMEOUT = 30.0
#: Seconds Ctrl-C waits for an observation's deregistration (or the Release of the
#: connection) before exiting anyway.
DEREGISTER_GRACE = 3.0
#: Block-wise transfers at least this large get a progress bar (on a terminal).
PROGRESS_THRESHOLD = 256 * 1024


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
        description="Send a CoAP request over TCP (RFC 8323) and print the response.",
        epilog=(
            "Exit codes: 0 success (2.xx), 1 error response (4.xx/5.xx), 2 usage error, "
            "3 no response (connection failed, lost or timed out), 130 interrupted."
        ),
    )
    parser.add_argument("uri", metavar="URI",
                        help="coap+tcp://host[:port]/path[?query]; coaps+tcp://, coap+ws:// "
                             "and coaps+ws:// work the same way (RFC 8323 section 8)")
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
                             "(deregister) and exit 0")
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
    tls = parser.add_argument_group("TLS (coaps+tcp and coaps+ws)")
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
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as source:
            return source.read()
    except OSError as error:
        parser.error(f"cannot read {what} {name}: {error.strerror or error}")
        raise  # not reached: error() exits


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
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError(f"{spec.name} takes a whole number, not {text!r}") from None
    if spec is not None and spec.format is OptionFormat.EMPTY:
        raise ValueError(f"{spec.name} takes no value")
    return text


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
        return bytes.fromhex(text[4:])
    return text.encode("utf-8")


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
            payload = args.payload.encode("utf-8")
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
    try:
        tls = TlsOptions(
            cafile=args.cafile,
            certfile=args.cert,
            keyfile=args.key,
            psk_identity=None if args.psk_identity is None else args.psk_identity.encode(),
            psk_key=None if args.psk_key is None else _psk_key(args.psk_key),
            insecure=args.insecure,
        )
    except ValueError as error:
        parser.error(f"TLS options: {error}")
    if tls.configured and not uri.secure:
        parser.error(f"TLS options apply to coaps+tcp:// and coaps+ws:// URIs, not {uri.scheme}://")
    return tls


# -- running ----------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_options(err: IO[str], options: Options) -> None:
    for number, value in options:
        err.write(f"   {describe_option(number, value)}\n")


def _diagnostic(response: Response) -> str:
    if not response.payload:
        return ""
    try:
        text = response.payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(response.payload)} bytes of binary payload)"
    return _one_line(text)


async def run(
    reactor: Any,
    client: Client,
    settings: Settings,
    out: IO[bytes],
    err: IO[str],
    pretty: bool,
    interrupt: Deferred[None] | None = None,
) -> int:
    """Do what ``settings`` asks with ``client``; write to ``out``/``err``; return the exit code.

    Closes the client (Release, then close) before returning.  When ``interrupt`` fires
    (Ctrl-C): an observation is deregistered and a ``--ping --interval`` series stops, both
    ending with exit code 0; a request or Ping still waiting is abandoned (its token freed)
    and the run ends with exit code 130 and one line, ``interrupted``.
    """
    interrupted: list[bool] = []
    if interrupt is not None:
        interrupt.addCallback(lambda _: interrupted.append(True))
    try:
        if settings.observe:
            return await _observe(reactor, client, settings, out, err, pretty, interrupt)
        if settings.ping and settings.interval is not None:
            return await _ping_series(reactor, client, settings, out, err, interrupt)
        if settings.ping:
            return await _until(interrupt, _pings(client, settings, out))
        return await _until(interrupt, _requests(reactor, client, settings, out, err, pretty))
    except CancelledError:
        if not interrupted:
            raise
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except SchemeNotAvailable as error:
        err.write(f"{PROG}: error: {error}\n")
        return EXIT_USAGE
    except (ConnectFailed, ConnectionClosedError, RequestTimeout, RequestNotSent,
            ClientError) as error:
        err.write(f"{PROG}: {_one_line(str(error))}\n")
        return EXIT_NO_RESPONSE
    except TransferError as error:
        err.write(f"{PROG}: block-wise transfer failed: {_one_line(str(error))}\n")
        return EXIT_NO_RESPONSE
    finally:
        await client.close()


async def _until(interrupt: Deferred[None] | None, work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; when ``interrupt`` fires first, cancel it (``CancelledError``)."""
    running = Deferred.fromCoroutine(work)
    if interrupt is not None:
        interrupt.addCallback(lambda _: running.cancel())
    return await running


async def _requests(
    reactor: Any, client: Client, settings: Settings, out: IO[bytes], err: IO[str], pretty: bool
) -> int:
    worst = EXIT_OK
    for _ in range(settings.count):
        worst = max(worst, await _request(reactor, client, settings, out, err, pretty))
    return worst


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _set_up_times(client: Client, uri: CoapUri, since: float) -> str:
    """How the connection set-up went, if this request opened the connection: the TCP
    connect (or WebSocket handshake) and the TLS handshake, each on its own."""
    timings = client.connection_timings(uri)
    if timings is None or timings.started < since:
        return ""
    if timings.tcp_connected is not None and timings.tls_completed is not None:
        return (f"connect {_ms(timings.tcp_connected - timings.started)}, "
                f"TLS handshake {_ms(timings.tls_completed - timings.tcp_connected)}")
    what = "connect and WebSocket handshake" if uri.scheme.endswith("+ws") else "connect"
    return f"{what} {_ms(timings.ready - timings.started)}"


async def _request(
    reactor: Any, client: Client, settings: Settings, out: IO[bytes], err: IO[str], pretty: bool
) -> int:
    uri = settings.uri
    if settings.verbose:
        name = "iPATCH" if settings.method == Code.IPATCH else settings.method.name
        err.write(f"-> {name} {uri}\n")
        options = client.request_options(uri, options=settings.options)
        _show_options(err, options)
        if settings.payload:
            err.write(f"   ({len(settings.payload)} bytes of payload)\n")
    started = reactor.seconds()
    bar = _ProgressBar(err) if _isatty(err) else None
    try:
        response = await client.request(
            settings.method, uri, settings.payload, options=settings.options,
            timeout=settings.timeout, progress=bar,
        )
    finally:
        if bar is not None:
            bar.finish()
    finished = reactor.seconds()
    code = response.code
    if settings.verbose:
        set_up = _set_up_times(client, uri, started)
        timings = client.connection_timings(uri)
        sent = timings.ready if set_up and timings is not None else started
        err.write(f"<- {code} from {uri.origin_uri} in {_ms(finished - sent)}"
                  + (f" (after {set_up})" if set_up else "") + "\n")
        _show_options(err, response.options)
        connection = client.connection_for(uri)
        mms = "" if connection is None else (
            f"; peer Max-Message-Size {connection.channel.connection.peer.max_message_size}"
        )
        err.write(f"   ({len(response.payload)} bytes of payload{mms})\n")
    if not code.is_successful:
        diagnostic = _diagnostic(response)
        err.write(f"{PROG}: {code}" + (f": {diagnostic}" if diagnostic else "") + "\n")
        err.flush()
        return EXIT_ERROR_RESPONSE
    if pretty:
        text = pretty_payload(response.payload, response.options.content_format)
        if text:
            out.write(text.encode("utf-8") + b"\n")
    else:
        out.write(response.payload)
    out.flush()
    return EXIT_OK


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024 or unit == "MiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # not reached


class _ProgressBar:
    """A one-line progress bar for block-wise transfers, drawn on a terminal (stderr)."""

    width = 30

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.drawn = False
        self._last = ""

    def __call__(self, done: int, total: int | None) -> None:
        if not self.drawn and max(done, total or 0) < PROGRESS_THRESHOLD:
            return
        if total:
            filled = self.width * done // total
            line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * done // total:3d}% "
                    f"{_size(done)} of {_size(total)}")
        else:
            line = f"{_size(done)} received"
        if line != self._last:
            self.err.write("\r" + line + "\x1b[K")
            self.err.flush()
            self._last = line
            self.drawn = True

    def finish(self) -> None:
        """Erase the bar, leaving the line for what comes next."""
        if self.drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.drawn = False


def _write_notification(out: IO[bytes], response: Response, pretty: bool) -> None:
    """One notification on stdout, ending with a newline (an extra one after a multi-line
    pretty rendering, so that notifications stay apart)."""
    if pretty:
        text = pretty_payload(response.payload, response.options.content_format)
        out.write(text.encode("utf-8") + (b"\n\n" if "\n" in text.rstrip("\n") else b"\n"))
    else:
        out.write(response.payload + b"\n")
    out.flush()


async def _observe(
    reactor: Any,
    client: Client,
    settings: Settings,
    out: IO[bytes],
    err: IO[str],
    pretty: bool,
    interrupt: Deferred[None] | None,
) -> int:
    uri = settings.uri
    if settings.verbose:
        err.write(f"-> GET {uri} (Observe: 0, register)\n")
        _show_options(err, client.request_options(uri, options=settings.options))
    observation = client.observe(uri, options=settings.options, timeout=settings.timeout)
    if interrupt is not None:
        interrupt.addCallback(lambda _: observation.cancel())
    timer = None
    if settings.duration is not None:
        timer = reactor.callLater(settings.duration, observation.cancel)
    seen = 0
    status = EXIT_OK
    last: Response | None = None
    try:
        async for response in observation:
            seen += 1
            last = response
            if settings.verbose:
                observe = response.options.get(OptionNumber.OBSERVE)
                shown = "none" if observe is None else str(response.options.observe)
                err.write(f"<- {response.code} (notification {seen}, Observe: {shown}, "
                          f"{len(response.payload)} bytes)\n")
            if not response.code.is_successful:
                diagnostic = _diagnostic(response)
                err.write(f"{PROG}: {response.code}"
                          + (f": {diagnostic}" if diagnostic else "") + "\n")
                status = EXIT_ERROR_RESPONSE
                continue
            _write_notification(out, response, pretty)
            if settings.count and seen >= settings.count:
                break
    finally:
        if timer is not None and timer.active():
            timer.cancel()
    await observation.cancel()  # GET with Observe=1 and the same token (RFC 8323 7.4)
    if status == EXIT_OK and last is not None and OptionNumber.OBSERVE not in last.options:
        what = "the resource is not observable" if seen == 1 else "the server ended it"
        err.write(f"{PROG}: observation over: {what} (a response without Observe)\n")
    if settings.verbose and observation.end_reason:
        err.write(f"   (observation ended: {observation.end_reason})\n")
    return status


async def _pings(client: Client, settings: Settings, out: IO[bytes]) -> int:
    uri = settings.uri
    for _ in range(settings.count):
        rtt = await client.ping(uri, timeout=settings.timeout)
        out.write(f"pong from {uri.origin_uri}: time={rtt * 1000:.3f} ms\n".encode())
        out.flush()
    return EXIT_OK


async def _ping_series(
    reactor: Any,
    client: Client,
    settings: Settings,
    out: IO[bytes],
    err: IO[str],
    interrupt: Deferred[None] | None,
) -> int:
    """``--ping --interval``: one Ping per interval on one connection (RFC 8323 section
    5.4), until ``--count`` Pongs, ``--duration`` or the interrupt (each ends it, exit 0)."""
    uri = settings.uri
    interval = settings.interval
    assert interval is not None
    stopped: list[bool] = []
    waiting: list[Deferred[Any]] = []

    def stop(_: object = None) -> None:
        if not stopped:
            stopped.append(True)
            for d in list(waiting):
                d.cancel()

    if interrupt is not None:
        interrupt.addCallback(stop)
    timer = reactor.callLater(settings.duration, stop) if settings.duration else None

    async def step(d: Deferred[Any]) -> tuple[bool, Any]:
        """Wait for ``d``; (False, None) when the series was stopped meanwhile."""
        waiting.append(d)
        try:
            return True, await d
        except CancelledError:
            if stopped:
                return False, None
            raise
        finally:
            waiting.remove(d)

    sequence = 0
    try:
        while not stopped:
            sent = reactor.seconds()
            ok, rtt = await step(client.ping(uri, timeout=settings.timeout))
            if not ok:
                break
            sequence += 1
            out.write(f"pong from {uri.origin_uri}: seq={sequence} "
                      f"time={rtt * 1000:.3f} ms\n".encode())
            out.flush()
            if settings.count and sequence >= settings.count:
                break
            pause = max(0.0, sent + interval - reactor.seconds())
            ok, _ = await step(deferLater(reactor, pause, lambda: None))
            if not ok:
                break
    finally:
        if timer is not None and timer.active():
            timer.cancel()
    if settings.verbose:
        err.write(f"   ({sequence} Pongs)\n")
    return EXIT_OK


def _start_logging(verbose: int, err: IO[str]) -> None:
    """Route Twisted's log: nothing by default, the protocol log with -vv (-vvv: debug).

    An unexpected critical event (an unhandled error) becomes one line, not a traceback.
    """
    if verbose >= 2:
        level = LogLevel.debug if verbose >= 3 else LogLevel.info
        predicate = LogLevelFilterPredicate(defaultLogLevel=level)
        globalLogBeginner.beginLoggingTo(
            [FilteringLogObserver(textFileLogObserver(err), [predicate])],
            redirectStandardIO=False,
        )
        return

    @provider(ILogObserver)
    def one_line(event: LogEvent) -> None:
        if event.get("log_level") is LogLevel.critical:
            text = formatEvent(event) or "unexpected error"
            failure = event.get("log_failure")
            if isinstance(failure, Failure):
                text += f": {failure.getErrorMessage()}"
            err.write(f"{PROG}: internal error: {_one_line(text)}\n")

    globalLogBeginner.beginLoggingTo([one_line], redirectStandardIO=False)


def make_client(reactor: Any, settings: Settings) -> Client:
    """The :class:`Client` the command uses: no idle release (one run, one connection),
    the keepalive Ping of ``--keepalive`` (RFC 8323 section 5.4)."""
    return Client(reactor, tls=settings.tls, timeout=settings.timeout, idle_timeout=None,
                  keepalive=settings.keepalive)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``coaptcp-client`` console script; returns the exit code."""
    settings = parse_args(argv)
    from twisted.internet import reactor

    err = sys.stderr
    out = sys.stdout.buffer
    _start_logging(settings.verbose, err)
    pretty = settings.pretty if settings.pretty is not None else sys.stdout.isatty()
    client = make_client(reactor, settings)
    outcome: list[int] = []
    interrupt: Deferred[None] = Deferred()
    running: list[Deferred[Any]] = []
    stopping: list[bool] = []

    def finished(result: int | Failure) -> None:
        if isinstance(result, Failure):
            if result.check(BrokenPipeError):
                outcome.append(EXIT_OK)
            else:
                err.write(f"{PROG}: internal error: {_one_line(result.getErrorMessage())}\n")
                outcome.append(EXIT_INTERNAL)
        else:
            outcome.append(result)
        if not stopping:
            stopping.append(True)
            reactor.stop()  # type: ignore[attr-defined]

    def start() -> None:
        d = Deferred.fromCoroutine(run(reactor, client, settings, out, err, pretty, interrupt))
        d.addBoth(finished)
        running.append(d)

    def before_shutdown() -> Deferred[None] | None:
        # Ctrl-C (or SIGTERM) before the run finished: let it end cleanly first (an
        # observation deregisters, a request is abandoned), bounded by DEREGISTER_GRACE.
        if stopping or outcome or not running:
            return None
        stopping.append(True)
        _second_interrupt_kills()
        done: Deferred[None] = Deferred()
        running[0].addBoth(lambda _: done.callback(None) if not done.called else None)
        interrupt.callback(None)
        done.addTimeout(DEREGISTER_GRACE, reactor)
        return done.addErrback(lambda _: None)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", before_shutdown
    )
    reactor.run()  # type: ignore[attr-defined]
    if not outcome:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    return outcome[0]


def _second_interrupt_kills() -> None:
    """While the first Ctrl-C is being handled, a second one ends the process at once."""
    if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
