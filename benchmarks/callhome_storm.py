#!/usr/bin/env python3
"""A fleet of devices calling home at once, simulated in memory (issue 16's reconnect storm,
the device side).

    python3 benchmarks/callhome_storm.py                          # 10,000 devices
    python3 benchmarks/callhome_storm.py --devices 2000 --capacity 500 --json /tmp/storm.json

``--devices`` :class:`coaptcp.callhome.CallHome` services (the default back-off: 1 s
doubling up to 300 s, half of each delay random) call home to one back end over
in-memory connections (``twisted.test.iosim``, one fake clock: simulated
time, no sockets, the same figures on every run with the same ``--seed``).  The back
end's directory is a stand-in that registers at most ``--capacity`` devices per
simulated second and answers the rest 5.03 Service Unavailable with Max-Age
``--max-age`` (RFC 9176 section 4: a full directory tells registrants when to come
back).  Two storms:

1. **start**: every device starts at t = 0;
2. **outage**: once all are registered, every connection is dropped at once (both ends
   see the loss, as when the back end restarts) and each device calls home again.

For each: the simulated seconds until 50 %, 99 % and 100 % of the devices are registered
again, the connection attempts and registrations refused (5.03), and the busiest
100 ms of attempts.  Every device must end registered, every registration must be
answered 2.01 or 5.03, and no error may be logged; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.defer import succeed
from twisted.logger import globalLogPublisher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coaptcp.callhome import CallHome, CallHomeState
from coaptcp.channel.limits import Limits
from coaptcp.core.codes import Code
from coaptcp.core.connection import Role
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import connected_pair
from coaptcp.transport.tcp import CoapFactory

STEP = 0.01  # simulated seconds per step
BUCKET = 0.1  # seconds per bucket of the busiest-attempts figure


class HeapClock:
    """A fake clock (``callLater``, ``seconds``, ``advance``) on a heap: Twisted's
    ``MemoryReactorClock`` sorts all its calls on every ``advance``, which at tens of
    thousands of timers is most of the run."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> DelayedCall:
        call = DelayedCall(self.now + delay, function, args, kwargs, self._cancelled,
                           self._moved, seconds=self.seconds)
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))
        return call

    def _cancelled(self, call: DelayedCall) -> None:
        pass  # skipped when it comes up

    def _moved(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [call for _, _, call in self._heap if call.active()]

    def advance(self, amount: float) -> None:
        self.now += amount
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            when, _, call = heapq.heappop(heap)
            if call.cancelled or call.called or when != call.getTime():
                continue  # cancelled, or moved (its new entry comes later)
            call.called = 1
            call.func(*call.args, **call.kw)


class Directory(Resource):
    """``POST /rd?ep=``: registers up to ``capacity`` per second (a token bucket), answers
    the rest 5.03 with Max-Age; ``/rd/N`` takes updates and removals."""

    def __init__(self, clock: HeapClock, capacity: float, max_age: int) -> None:
        super().__init__()
        self.clock, self.capacity, self.max_age = clock, capacity, max_age
        self.tokens, self.refilled = capacity, 0.0
        self.by_endpoint: dict[str, int] = {}
        self.created = self.refused = 0

    def render_POST(self, request: Request) -> Response:
        now = self.clock.seconds()
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled) * self.capacity)
        self.refilled = now
        if self.tokens < 1:
            self.refused += 1
            return Response(Code.SERVICE_UNAVAILABLE,
                            options=Options([(OptionNumber.MAX_AGE, self.max_age)]))
        self.tokens -= 1
        self.created += 1
        endpoint = dict(q.partition("=")[::2] for q in request.query)["ep"]
        key = self.by_endpoint.setdefault(endpoint, len(self.by_endpoint) + 1)
        return Response(Code.CREATED, options=Options([(OptionNumber.LOCATION_PATH, "rd"),
                                                       (OptionNumber.LOCATION_PATH, str(key))]))

    def getChild(self, name: str, request: Request) -> Resource:
        return Registration()


class Registration(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> Response:
        return Response(Code.CHANGED)

    def render_DELETE(self, request: Request) -> Response:
        return Response(Code.DELETED)


class Network:
    """The connector: each attempt is a new in-memory link to the back end."""

    def __init__(self, clock: HeapClock, site: Site) -> None:
        self.clock, self.site = clock, site
        self.server_factory = CoapFactory(site, reactor=clock, limits=Limits(idle_timeout=None))
        self.links: list[Any] = []
        self.attempts: list[float] = []

    def connector(self, reactor: Any, host: str, port: int, options: Any) -> Any:
        self.attempts.append(self.clock.seconds())
        client_factory = CoapFactory(options.site, role=Role.INITIATOR, reactor=self.clock,
                                     limits=Limits(idle_timeout=None, keepalive_interval=None))
        number = len(self.links)
        pair = connected_pair(
            clock=self.clock, server_factory=self.server_factory,
            client_factory=client_factory, greet=False,
            client_address=IPv4Address("TCP", f"10.{number >> 16 & 255}.{number >> 8 & 255}."
                                              f"{number & 255}", 40000),
        )
        self.links.append(pair)
        return succeed(pair.client)

    def flush(self) -> None:
        """Move the bytes of every link that has some (or a close) pending."""
        for _ in range(50):
            moved = False
            for pair in self.links:
                client, server = pair.client_io, pair.server_io
                if client.disconnected and server.disconnected:
                    continue
                if client.stream or server.stream or client.disconnecting or \
                        server.disconnecting:
                    moved = pair.pump.pump(advanceClock=False) or moved
            self.clock.advance(0)
            if not moved:
                break
        self.links = [p for p in self.links
                      if not (p.client_io.disconnected and p.server_io.disconnected)]


def storm(network: Network, devices: list[CallHome], started: float, limit: float,
          first_attempt: int) -> dict[str, Any]:
    """Step the clock until every device is registered; the figures of that storm (the
    attempts from ``network.attempts[first_attempt]`` on)."""
    clock = network.clock
    marks: dict[str, float | None] = {"50%": None, "99%": None, "100%": None}
    while clock.seconds() - started < limit:
        network.flush()
        registered = sum(device.state is CallHomeState.REGISTERED for device in devices)
        for name, share in (("50%", 0.5), ("99%", 0.99), ("100%", 1.0)):
            if marks[name] is None and registered >= share * len(devices):
                marks[name] = round(clock.seconds() - started, 2)
        if registered == len(devices):
            break
        clock.advance(STEP)
    attempts = network.attempts[first_attempt:]
    buckets = collections.Counter(int((t - started) / BUCKET) for t in attempts)
    return {
        "registered_after_s": marks,
        "attempts": len(attempts),
        "busiest_100ms_attempts": max(buckets.values()) if buckets else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--capacity", type=float, default=2_000.0,
                        help="registrations the directory takes per simulated second")
    parser.add_argument("--max-age", type=int, default=2,
                        help="Max-Age of the directory's 5.03 (seconds)")
    parser.add_argument("--limit", type=float, default=600.0,
                        help="simulated seconds each storm may take")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    arguments = parser.parse_args(argv)

    errors: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") is not None and event["log_level"].name in ("error",
                                                                              "critical"):
            errors.append(str(event.get("log_format")))

    globalLogPublisher.addObserver(observer)
    clock = HeapClock()
    root = Resource()
    directory = Directory(clock, arguments.capacity, arguments.max_age)
    root.putChild("rd", directory)
    network = Network(clock, Site(root))
    draws = random.Random(arguments.seed)
    device_site = Site(make_demo_site())
    devices = [
        CallHome(f"coap+tcp://127.0.0.1/rd?ep=node{n}", device_site, reactor=clock,
                 connectors={"coap+tcp": network.connector}, random=draws.random)
        for n in range(arguments.devices)
    ]
    wall = time.monotonic()
    first_attempt = len(network.attempts)
    for device in devices:
        device.startService()
    figures: dict[str, Any] = {"devices": arguments.devices, "capacity_per_s": arguments.capacity,
                               "max_age_s": arguments.max_age}
    refused_before = directory.refused
    figures["start"] = storm(network, devices, 0.0, arguments.limit, first_attempt)
    figures["start"]["refused_5_03"] = directory.refused - refused_before
    clock.advance(60.0)
    network.flush()
    refused_before = directory.refused
    for pair in list(network.links):
        pair.drop()
    outage = clock.seconds()
    figures["outage"] = storm(network, devices, outage, arguments.limit, len(network.attempts))
    figures["outage"]["refused_5_03"] = directory.refused - refused_before
    figures["wall_clock_s"] = round(time.monotonic() - wall, 1)
    everyone = all(device.state is CallHomeState.REGISTERED for device in devices)
    figures["all_registered"] = everyone
    figures["errors_logged"] = len(errors)
    print(json.dumps(figures, indent=2))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(figures, indent=2))
    return 0 if everyone and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
