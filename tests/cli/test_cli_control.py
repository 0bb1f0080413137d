"""The command line's control of time, in process over in-memory connections: Ctrl-C
with a request or Ping outstanding, ``--ping --interval``, ``--duration``,
``--keepalive``, a timed-out observation, and ``-v``'s connection set-up times.

Every timer runs on a ``MemoryReactorClock``; "Ctrl-C" is the ``interrupt`` Deferred that
:func:`coaptcp.cli.main.main` fires from its before-shutdown trigger (the subprocess tests in
``tests/interop/test_interop_cli_signals.py`` send the real SIGINT).
"""

from __future__ import annotations

import io
from typing import Any

from client_helpers import Link, MemoryNetwork, make_client
from twisted.internet.defer import Deferred

from coaptcp.cli.arguments import (
    EXIT_INTERRUPTED,
    EXIT_NO_RESPONSE,
    EXIT_OK,
    Settings,
    parse_args,
)
from coaptcp.cli.running import make_client as cli_make_client
from coaptcp.cli.running import run
from coaptcp.core.codes import Code
from coaptcp.tap.demo import ClockResource
from coaptcp.testing import decode_all, result_of, success


class Started:
    """One ``run()`` of the command line, driven by hand."""

    def __init__(self, network: MemoryNetwork, argv: list[str], **client_kwargs: Any) -> None:
        self.network = network
        self.settings: Settings = parse_args(argv)
        self.out, self.err = io.BytesIO(), io.StringIO()
        self.interrupt: Deferred[None] = Deferred()
        kwargs = {"timeout": self.settings.timeout, "keepalive": self.settings.keepalive}
        kwargs.update(client_kwargs)
        self.client = make_client(network, **kwargs)
        self.results = result_of(Deferred.fromCoroutine(
            run(network.clock, self.client, self.settings, self.out, self.err, False,
                self.interrupt)))
        network.flush()

    def advance(self, seconds: float) -> None:
        self.network.clock.advance(seconds)
        self.network.flush()

    def ctrl_c(self) -> None:
        self.interrupt.callback(None)
        self.network.flush()

    @property
    def code(self) -> int:
        result: int = success(self.results)
        return result

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().decode().splitlines()


def observed_network() -> tuple[MemoryNetwork, ClockResource]:
    network = MemoryNetwork()
    clock = ClockResource(network.clock)
    network.root.putChild("time", clock)
    return network, clock


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_with_a_request_outstanding_is_130_and_one_line() -> None:
    network = MemoryNetwork()
    started = Started(network, ["-c", "100000", "coap+tcp://127.0.0.1/held"])
    assert started.results == [] and len(network.held.waiting) == 1
    started.ctrl_c()
    assert started.code == EXIT_INTERRUPTED
    assert started.err.getvalue() == "coaptcp-client: interrupted\n"
    assert started.out.getvalue() == b""
    link = network.links[0]
    assert link.closed  # released and closed, not left to the reactor's shutdown
    assert link.client.channel.pending_requests == 0  # the token was freed


def frozen_link(network: MemoryNetwork) -> Link:
    """Complete the held connection attempt with a peer that never reads nor answers."""
    network.complete()
    link = network.links[-1]
    link.freeze()
    network.flush()
    return link


def test_ctrl_c_with_a_ping_outstanding_is_130() -> None:
    network = MemoryNetwork()
    network.hold = True
    started = Started(network, ["--ping", "coap+tcp://127.0.0.1"])
    link = frozen_link(network)
    assert [m.code for m in decode_all(link.from_client)] == [Code.CSM, Code.PING]
    started.advance(2)
    assert started.results == []
    started.ctrl_c()
    assert started.code == EXIT_INTERRUPTED
    assert started.err.getvalue() == "coaptcp-client: interrupted\n"
    assert started.out.getvalue() == b""
    assert link.closed


def test_ctrl_c_after_the_run_finished_changes_nothing() -> None:
    started = Started(MemoryNetwork(), ["coap+tcp://127.0.0.1/hello"])
    assert started.code == EXIT_OK
    started.ctrl_c()
    assert started.err.getvalue() == ""


# -- --ping --interval -------------------------------------------------------------------------


def test_ping_interval_pings_once_per_interval_until_count() -> None:
    network = MemoryNetwork()
    started = Started(network, ["--ping", "--interval", "2", "-c", "3", "coap+tcp://127.0.0.1"])
    assert started.results == []
    assert len(started.lines) == 1  # the first Ping at once
    started.advance(1.9)
    assert len(started.lines) == 1
    started.advance(0.1)
    assert len(started.lines) == 2
    started.advance(2)
    assert started.code == EXIT_OK
    assert [line.split(" time=")[0] for line in started.lines] == [
        f"pong from coap+tcp://127.0.0.1:5683: seq={n}" for n in (1, 2, 3)
    ]
    assert len(network.links) == 1  # one connection held throughout


def test_ping_interval_runs_until_ctrl_c_then_exits_0() -> None:
    network = MemoryNetwork()
    started = Started(network, ["--ping", "--interval", "1", "coap+tcp://127.0.0.1"])
    for _ in range(9):
        started.advance(1)
    assert started.results == [] and len(started.lines) == 10
    started.ctrl_c()
    assert started.code == EXIT_OK
    assert started.err.getvalue() == ""
    assert network.links[0].closed


def test_ping_interval_duration_ends_the_series() -> None:
    started = Started(MemoryNetwork(), ["--ping", "--interval", "1", "--duration", "3.5",
                                        "coap+tcp://127.0.0.1"])
    for _ in range(3):
        started.advance(1)
    assert started.results == []
    started.advance(0.5)
    assert started.code == EXIT_OK
    assert len(started.lines) == 4  # at 0, 1, 2 and 3 s


def test_ping_interval_a_missing_pong_is_exit_3() -> None:
    network = MemoryNetwork()
    started = Started(network, ["--ping", "--interval", "1", "--timeout", "2",
                                "coap+tcp://127.0.0.1"])
    assert len(started.lines) == 1
    network.links[0].freeze()
    started.advance(1)
    started.advance(2)
    assert started.code == EXIT_NO_RESPONSE
    assert started.err.getvalue() == (
        "coaptcp-client: no Pong from coap+tcp://127.0.0.1:5683 within 2 s\n"
    )


# -- --observe: --duration, timeouts, --keepalive -----------------------------------------------


def test_observe_duration_deregisters_and_exits_0() -> None:
    network, clock = observed_network()
    started = Started(network, ["--observe", "--duration", "3", "coap+tcp://127.0.0.1/time"])
    started.advance(1)
    started.advance(1)
    assert started.results == [] and clock.observer_count == 1
    started.advance(1)
    assert started.code == EXIT_OK
    assert clock.observer_count == 0  # deregistered (GET Observe=1) before closing
    assert started.lines[0] == "1970-01-01T00:00:00Z"
    assert started.err.getvalue() == ""


def test_observe_timeout_without_an_answer_exits_at_once() -> None:
    # The registration is never answered: after --timeout the CLI reports it and closes
    # without waiting for an answer to the deregistration (issue 13, item 7).
    network = MemoryNetwork()
    network.hold = True
    started = Started(network, ["--timeout", "1", "--observe", "coap+tcp://127.0.0.1/time"])
    link = frozen_link(network)
    assert started.results == []
    started.advance(1)
    assert started.code == EXIT_NO_RESPONSE
    assert started.err.getvalue() == (
        "coaptcp-client: no response from coap+tcp://127.0.0.1:5683 within 1 s\n"
    )
    assert link.closed
    # The deregistration still followed the registration on the stream, then Release.
    sent = [(m.code, m.options.observe) for m in decode_all(link.from_client)]
    assert sent == [(Code.CSM, None), (Code.GET, 0), (Code.GET, 1), (Code.RELEASE, None)]


def test_observe_or_ping_series_ended_before_any_answer_is_not_a_success() -> None:
    # --duration or Ctrl-C while the registration (or the first Ping of a series) is still
    # unanswered used to exit 0 with nothing printed, as if it had worked: now "no
    # response" (3) and "interrupted" (130), as for a request (docs/client.md, exit codes).
    for argv, end, code, line in [
        (["--observe", "--duration", "2"], "duration", EXIT_NO_RESPONSE,
         "coaptcp-client: no response from coap+tcp://127.0.0.1:5683 within 2 s\n"),
        (["--observe"], "ctrl-c", EXIT_INTERRUPTED, "coaptcp-client: interrupted\n"),
        (["--ping", "--interval", "0.5", "--duration", "2"], "duration", EXIT_NO_RESPONSE,
         "coaptcp-client: no Pong from coap+tcp://127.0.0.1:5683 within 2 s\n"),
        (["--ping", "--interval", "0.5"], "ctrl-c", EXIT_INTERRUPTED,
         "coaptcp-client: interrupted\n"),
    ]:
        network = MemoryNetwork()
        network.hold = True
        started = Started(network, [*argv, "coap+tcp://127.0.0.1/time"])
        link = frozen_link(network)
        started.advance(1)
        assert started.results == []
        if end == "duration":
            started.advance(1)
        else:
            started.ctrl_c()
        started.advance(5)
        assert started.code == code
        assert started.err.getvalue() == line
        assert started.out.getvalue() == b""
        assert link.closed


def test_keepalive_option_reaches_the_client() -> None:
    assert parse_args(["coap+tcp://h/"]).keepalive == 15.0
    assert parse_args(["--keepalive", "0", "coap+tcp://h/"]).keepalive is None
    settings = parse_args(["--keepalive", "2.5", "--observe", "coap+tcp://h/"])
    client = cli_make_client(MemoryNetwork().clock, settings)
    assert (client.keepalive, client.idle_timeout) == (2.5, None)


def test_keepalive_pings_a_quiet_observation() -> None:
    network, _ = observed_network()
    network.root.putChild("quiet", ClockResource(network.clock, interval=3600))
    started = Started(network, ["--observe", "--keepalive", "5", "coap+tcp://127.0.0.1/quiet"])
    link = network.links[0]
    sent: list[Any] = []
    original = link.client.channel.ping

    def counting_ping(**kwargs: Any) -> Any:
        sent.append(kwargs)
        return original(**kwargs)

    link.client.channel.ping = counting_ping  # type: ignore[method-assign]
    started.advance(4.9)
    assert sent == []
    started.advance(0.2)
    assert len(sent) == 1  # five seconds of silence: a Ping checks the connection
    started.ctrl_c()
    assert started.code == EXIT_OK


# -- -v: connection set-up times ---------------------------------------------------------------


def test_verbose_splits_connect_and_request_times() -> None:
    network = MemoryNetwork()
    network.hold = True  # the connection takes 0.25 s to be made
    started = Started(network, ["-v", "-c", "2", "coap+tcp://127.0.0.1/hello"])
    network.clock.advance(0.25)
    network.complete()
    network.flush()
    assert started.code == EXIT_OK
    answers = [line for line in started.err.getvalue().splitlines() if line.startswith("<- ")]
    assert answers[0] == ("<- 2.05 Content from coap+tcp://127.0.0.1:5683 in 0.00 ms "
                          "(after connect 250.00 ms)")
    assert answers[1] == "<- 2.05 Content from coap+tcp://127.0.0.1:5683 in 0.00 ms"
