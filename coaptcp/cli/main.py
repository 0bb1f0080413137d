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
connection could not be made, was lost, or timed out; TLS failures included), 70 for an
internal error (a bug), 74 when stdout cannot be written, 130 when interrupted.
Failures are one line on stderr, without a traceback (a usage error is argparse's usage
line, then that line).

The arguments are read by :mod:`coaptcp.cli.arguments`, the work is done by
:mod:`coaptcp.cli.running` and written by :mod:`coaptcp.cli.output`; this module runs the
reactor around them and turns Ctrl-C into a clean end.
"""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import Deferred
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

from coaptcp.channel.reactor import default_reactor
from coaptcp.cli.arguments import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    PROG,
    parse_args,
)
from coaptcp.cli.output import one_line
from coaptcp.cli.running import make_client, run

__all__ = ["main"]

#: Seconds Ctrl-C waits for an observation's deregistration (or the Release of the
#: connection) before exiting anyway.
DEREGISTER_GRACE = 3.0


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
            err.write(f"{PROG}: internal error: {one_line(text)}\n")

    globalLogBeginner.beginLoggingTo([one_line], redirectStandardIO=False)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``coaptcp-client`` console script; returns the exit code."""
    settings = parse_args(argv)
    # Started with 2>&- (or >&-), Python has None for the stream: say nothing rather than
    # fail on every message (which left the reactor running), and there is no output.
    err: IO[str] = sys.stderr if sys.stderr is not None else io.StringIO()
    if sys.stdout is None:
        err.write(f"{PROG}: cannot write the output: stdout is closed\n")
        return EXIT_OUTPUT
    reactor = default_reactor()  # installed only now, after the arguments were checked

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
                err.write(f"{PROG}: internal error: {one_line(result.getErrorMessage())}\n")
                outcome.append(EXIT_INTERNAL)
        else:
            outcome.append(result)
        if not stopping:
            stopping.append(True)
            reactor.stop()

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

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
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
