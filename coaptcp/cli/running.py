"""Doing what the command line asked: a request, an observation or Pings (RFC 8323).

:func:`run` sends ``--count`` requests on one pooled connection, follows an observation
(RFC 7641 over RFC 8323 section 7) until ``--count`` notifications, ``--duration`` or the
interrupt, or Pings (section 5.4), once per ``--interval`` for a series; then it closes
the client (Release, then close: section 5.5) and returns the exit code.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater

from coaptcp.channel.errors import ConnectionClosedError, RequestNotSent
from coaptcp.cli.arguments import (
    EXIT_ERROR_RESPONSE,
    EXIT_INTERRUPTED,
    EXIT_NO_RESPONSE,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_USAGE,
    PROG,
    Settings,
)
from coaptcp.cli.output import (
    ProgressBar,
    isatty,
    one_line,
    show_options,
    show_request,
    show_response,
    write_error_response,
    write_notification,
    write_payload,
)
from coaptcp.client.client import Client
from coaptcp.client.connectors import ClientError, ConnectFailed, SchemeNotAvailable
from coaptcp.client.errors import RequestTimeout
from coaptcp.core.blocktransfer import TransferError
from coaptcp.core.options import OptionNumber
from coaptcp.server.request import Response

__all__ = ["make_client", "run"]


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
    ending with exit code 0 once answered; a request or Ping still waiting (or a
    registration, or a series' first Ping) is abandoned (its token freed) and the run ends
    with exit code 130 and one line, ``interrupted``.
    """
    interrupted: list[bool] = []
    if interrupt is not None:
        interrupt.addCallback(lambda _: interrupted.append(True))
    job = _Run(reactor, client, settings, out, err, pretty, interrupt)
    try:
        if settings.observe:
            return await job.observe()
        if settings.ping and settings.interval is not None:
            return await job.ping_series()
        if settings.ping:
            return await _until(interrupt, job.pings())
        return await _until(interrupt, job.requests())
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
        err.write(f"{PROG}: {one_line(str(error))}\n")
        return EXIT_NO_RESPONSE
    except TransferError as error:
        err.write(f"{PROG}: block-wise transfer failed: {one_line(str(error))}\n")
        return EXIT_NO_RESPONSE
    except BrokenPipeError:
        raise  # the reader went away (| head): main() ends quietly
    except OSError as error:  # writing stdout: a full disk, a closed descriptor, ...
        err.write(f"{PROG}: cannot write the output: {error.strerror or error}\n")
        return EXIT_OUTPUT
    finally:
        await client.close()


async def _until(interrupt: Deferred[None] | None, work: Coroutine[Any, Any, int]) -> int:
    """Run ``work``; when ``interrupt`` fires first, cancel it (``CancelledError``)."""
    running = Deferred.fromCoroutine(work)
    if interrupt is not None:
        interrupt.addCallback(lambda _: running.cancel())
    return await running


@dataclass
class _Run:
    """One run of the command: what it uses and where it writes."""

    reactor: Any
    client: Client
    settings: Settings
    out: IO[bytes]
    err: IO[str]
    pretty: bool
    interrupt: Deferred[None] | None

    async def requests(self) -> int:
        """``--count`` requests, one after the other; the worst exit code."""
        worst = EXIT_OK
        for _ in range(self.settings.count):
            worst = max(worst, await self.request())
        return worst

    async def request(self) -> int:
        """One request; its payload on stdout, or its error on stderr."""
        settings, client, err = self.settings, self.client, self.err
        if settings.verbose:
            show_request(err, client, settings)
        started = self.reactor.seconds()
        bar = ProgressBar(err) if isatty(err) else None
        try:
            response = await client.request(
                settings.method, settings.uri, settings.payload, options=settings.options,
                timeout=settings.timeout, progress=bar,
            )
        finally:
            if bar is not None:
                bar.finish()
        if settings.verbose:
            show_response(err, client, settings.uri, response, started, self.reactor.seconds())
        if not response.code.is_successful:
            write_error_response(err, response)
            return EXIT_ERROR_RESPONSE
        write_payload(self.out, response, self.pretty)
        return EXIT_OK

    async def observe(self) -> int:
        """``--observe``: each notification on its own line, until the end (RFC 7641)."""
        settings, client, err = self.settings, self.client, self.err
        uri = settings.uri
        if settings.verbose:
            err.write(f"-> GET {uri} (Observe: 0, register)\n")
            show_options(err, client.request_options(uri, options=settings.options))
        observation = client.observe(uri, options=settings.options, timeout=settings.timeout)
        ended_by: list[str] = []

        def end(why: str) -> None:
            ended_by.append(why)
            observation.cancel()

        if self.interrupt is not None:
            self.interrupt.addCallback(lambda _: end("interrupt"))
        timer = None
        if settings.duration is not None:
            timer = self.reactor.callLater(settings.duration, end, "duration")
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
                    write_error_response(err, response)
                    status = EXIT_ERROR_RESPONSE
                    continue
                write_notification(self.out, response, self.pretty)
                if settings.count and seen >= settings.count:
                    break
        finally:
            if timer is not None and timer.active():
                timer.cancel()
        await observation.cancel()  # GET with Observe=1 and the same token (RFC 8323 7.4)
        if seen == 0 and ended_by:  # ended before the registration was answered
            if ended_by[0] == "interrupt":
                raise CancelledError()  # run() says "interrupted": 130, as for a request
            err.write(f"{PROG}: no response from {uri.origin_uri} within "
                      f"{settings.duration:g} s\n")
            return EXIT_NO_RESPONSE
        if status == EXIT_OK and last is not None and OptionNumber.OBSERVE not in last.options:
            what = "the resource is not observable" if seen == 1 else "the server ended it"
            err.write(f"{PROG}: observation over: {what} (a response without Observe)\n")
        if settings.verbose and observation.end_reason:
            err.write(f"   (observation ended: {observation.end_reason})\n")
        return status

    async def pings(self) -> int:
        """``--ping``: ``--count`` Pings, one after the other (RFC 8323 section 5.4)."""
        uri = self.settings.uri
        for _ in range(self.settings.count):
            rtt = await self.client.ping(uri, timeout=self.settings.timeout)
            self.out.write(f"pong from {uri.origin_uri}: time={rtt * 1000:.3f} ms\n".encode())
            self.out.flush()
        return EXIT_OK

    async def ping_series(self) -> int:
        """``--ping --interval``: one Ping per interval on one connection (RFC 8323 section
        5.4), until ``--count`` Pongs, ``--duration`` or the interrupt (each ends it, exit 0;
        before the first Pong: 3 for ``--duration``, 130 for the interrupt)."""
        reactor, settings, out = self.reactor, self.settings, self.out
        uri = settings.uri
        interval = settings.interval
        assert interval is not None
        stopped: list[str] = []
        waiting: list[Deferred[Any]] = []

        def stop(why: str) -> None:
            if not stopped:
                stopped.append(why)
                for d in list(waiting):
                    d.cancel()

        if self.interrupt is not None:
            self.interrupt.addCallback(lambda _: stop("interrupt"))
        timer = (reactor.callLater(settings.duration, stop, "duration")
                 if settings.duration else None)

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
                ok, rtt = await step(self.client.ping(uri, timeout=settings.timeout))
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
        if sequence == 0 and stopped:  # ended before the first Pong
            if stopped[0] == "interrupt":
                raise CancelledError()  # run() says "interrupted": 130, as for one Ping
            self.err.write(f"{PROG}: no Pong from {uri.origin_uri} within "
                           f"{settings.duration:g} s\n")
            return EXIT_NO_RESPONSE
        if settings.verbose:
            self.err.write(f"   ({sequence} Pongs)\n")
        return EXIT_OK


def make_client(reactor: Any, settings: Settings) -> Client:
    """The :class:`Client` the command uses: no idle release (one run, one connection),
    the keepalive Ping of ``--keepalive`` (RFC 8323 section 5.4)."""
    return Client(reactor, tls=settings.tls, timeout=settings.timeout, idle_timeout=None,
                  keepalive=settings.keepalive)
