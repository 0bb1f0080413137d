"""What ``coaptcp-client`` writes: payloads on stdout, the rest on stderr.

A response's payload goes to stdout as its exact bytes, or pretty-printed
(:mod:`coaptcp.cli.pretty`); an error response (RFC 7252 section 5.9.2-3) is one line on
stderr with its diagnostic payload.  ``-v`` shows the request and response options (RFC
7252 section 5.10) and the times of the connection set-up (RFC 8323 sections 3.3, 9) on
stderr; a block-wise transfer (RFC 7959, RFC 8323 section 6) draws a progress bar there
when it is a terminal.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from coaptcp.cli.arguments import PROG, Settings
from coaptcp.cli.pretty import describe_option, pretty_payload
from coaptcp.core.codes import Code
from coaptcp.core.options import Options
from coaptcp.core.uri import CoapUri
from coaptcp.server.request import Response

if TYPE_CHECKING:
    from coaptcp.client.client import Client

__all__ = [
    "PROGRESS_THRESHOLD",
    "ProgressBar",
    "isatty",
    "one_line",
    "show_options",
    "show_request",
    "show_response",
    "write_error_response",
    "write_notification",
    "write_payload",
]

#: Block-wise transfers at least this large get a progress bar (on a terminal).
PROGRESS_THRESHOLD = 256 * 1024


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def show_options(err: IO[str], options: Options) -> None:
    """Each option on its own indented line, named and decoded (RFC 7252 section 5.10)."""
    for number, value in options:
        err.write(f"   {describe_option(number, value)}\n")


def _diagnostic(response: Response) -> str:
    if not response.payload:
        return ""
    try:
        text = response.payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(response.payload)} bytes of binary payload)"
    return one_line(text)


def write_error_response(err: IO[str], response: Response) -> None:
    """The one line for a 4.xx/5.xx response: its code and diagnostic payload (RFC 7252
    section 5.5.2)."""
    diagnostic = _diagnostic(response)
    err.write(f"{PROG}: {response.code}" + (f": {diagnostic}" if diagnostic else "") + "\n")
    err.flush()


def write_payload(out: IO[bytes], response: Response, pretty: bool) -> None:
    """A response's payload on stdout: pretty-printed by its Content-Format, or as is."""
    if pretty:
        text = pretty_payload(response.payload, response.options.content_format)
        if text:
            out.write(text.encode("utf-8") + b"\n")
    else:
        out.write(response.payload)
    out.flush()


def write_notification(out: IO[bytes], response: Response, pretty: bool) -> None:
    """One notification (RFC 7641) on stdout, ending with a newline (an extra one after a
    multi-line pretty rendering, so that notifications stay apart)."""
    if pretty:
        text = pretty_payload(response.payload, response.options.content_format)
        out.write(text.encode("utf-8") + (b"\n\n" if "\n" in text.rstrip("\n") else b"\n"))
    else:
        out.write(response.payload + b"\n")
    out.flush()


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


def show_request(err: IO[str], client: Client, settings: Settings) -> None:
    """``-v``: the request about to go, with the options it carries."""
    uri = settings.uri
    name = "iPATCH" if settings.method == Code.IPATCH else settings.method.name
    err.write(f"-> {name} {uri}\n")
    show_options(err, client.request_options(uri, options=settings.options))
    if settings.payload:
        err.write(f"   ({len(settings.payload)} bytes of payload)\n")


def show_response(
    err: IO[str], client: Client, uri: CoapUri, response: Response, started: float,
    finished: float,
) -> None:
    """``-v``: the response, how long it took (after any connection set-up, shown on its
    own), its options, and the size of its payload and the peer's Max-Message-Size."""
    set_up = _set_up_times(client, uri, started)
    timings = client.connection_timings(uri)
    sent = timings.ready if set_up and timings is not None else started
    err.write(f"<- {response.code} from {uri.origin_uri} in {_ms(finished - sent)}"
              + (f" (after {set_up})" if set_up else "") + "\n")
    show_options(err, response.options)
    connection = client.connection_for(uri)
    mms = "" if connection is None else (
        f"; peer Max-Message-Size {connection.channel.connection.peer.max_message_size}"
    )
    err.write(f"   ({len(response.payload)} bytes of payload{mms})\n")


def isatty(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (``False`` for anything that cannot say)."""
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


class ProgressBar:
    """A one-line progress bar for block-wise transfers (RFC 7959), drawn on a terminal."""

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
