"""A back end in memory for the call-home tests: a resource-directory stand-in (RFC 9176
section 5.3: registration, update, removal) beside the demo site, on the client tests'
:class:`~client_helpers.MemoryNetwork` (iosim links, one MemoryReactorClock, no sockets).

The stand-in is deliberately small: it is not the directory (``coaptcp.directory``), only
what a device needs to see: 2.01 with Location-Path ``rd/N``, 2.04 to an update of a
known registration, 4.04 to an unknown one (logged too), 2.02 to a removal; canned answers replace
the next registrations or updates; every request is logged with the clock's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client_helpers import MemoryNetwork
from twisted.internet.testing import MemoryReactorClock

from coaptcp.callhome import Backoff, CallHome
from coaptcp.core.codes import Code
from coaptcp.core.options import OptionNumber, Options
from coaptcp.server.observe import ObservableResource
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import make_demo_site

URI = "coap+tcp://127.0.0.1/rd?ep=node1"


@dataclass
class Seen:
    """One request the stand-in got."""

    time: float
    method: Code
    path: tuple[str, ...]
    query: tuple[str, ...]
    payload: bytes
    request: Request


@dataclass
class Entry:
    """One registration the stand-in holds."""

    endpoint: str | None
    query: tuple[str, ...]
    links: bytes
    request: Request

    @property
    def channel(self) -> Any:
        """The connection it was made over: the back end's way to the device."""
        return self.request.channel


class RegistrationResource(Resource):
    """``/rd/N``: POST updates (2.04), DELETE removes (2.02)."""

    isLeaf = True

    def __init__(self, directory: RdStandIn, key: str) -> None:
        super().__init__()
        self.directory, self.key = directory, key

    def render_POST(self, request: Request) -> Response:
        self.directory.record(request)
        if self.key not in self.directory.registrations:
            return Response(Code.NOT_FOUND)
        if self.directory.update_answers:
            return self.directory.update_answers.pop(0)
        return Response(Code.CHANGED)

    def render_DELETE(self, request: Request) -> Response:
        self.directory.record(request)
        if self.directory.registrations.pop(self.key, None) is None:
            return Response(Code.NOT_FOUND)
        return Response(Code.DELETED)


class RdStandIn(Resource):
    """``/rd``: POST registers (see the module's description)."""

    def __init__(self, clock: MemoryReactorClock) -> None:
        super().__init__()
        self.clock = clock
        self.registrations: dict[str, Entry] = {}
        self.seen: list[Seen] = []
        self.answers: list[Response] = []  # for the next registrations, instead of 2.01
        self.update_answers: list[Response] = []  # for the next updates, instead of 2.04
        self.next_key = 1

    def record(self, request: Request) -> None:
        self.seen.append(Seen(self.clock.seconds(), request.method, tuple(request.path),
                              tuple(request.query), request.payload, request))

    def requests(self, method: Code) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == method]

    def render_POST(self, request: Request) -> Response:
        self.record(request)
        if self.answers:
            return self.answers.pop(0)
        parameters = dict(argument.partition("=")[::2] for argument in request.query)
        endpoint = parameters.get("ep")
        for key, entry in list(self.registrations.items()):
            if entry.endpoint == endpoint:  # the same endpoint registers anew: replace
                del self.registrations[key]
        key = str(self.next_key)
        self.next_key += 1
        self.registrations[key] = Entry(endpoint, tuple(request.query), request.payload,
                                        request)
        location = Options([(OptionNumber.LOCATION_PATH, "rd"),
                            (OptionNumber.LOCATION_PATH, key)])
        return Response(Code.CREATED, options=location)

    def getChild(self, name: str, request: Request) -> Resource | None:
        return RegistrationResource(self, name)  # 4.04 from it when unknown


class Setting(ObservableResource):
    """``/config``: an observable value on the back end (RFC 7641)."""

    def __init__(self) -> None:
        super().__init__()
        self.value = "v1"

    def render_GET(self, request: Request) -> Response:
        return Response.text(self.value)

    def change(self, value: str) -> None:
        self.value = value
        self.notify()


@dataclass
class Backend:
    """The back end: the network the device's connections reach, its directory stand-in
    and an observable setting."""

    network: MemoryNetwork
    rd: RdStandIn
    config: Setting
    devices: list[CallHome] = field(default_factory=list)
    attempt_times: list[float] = field(default_factory=list)  # when each connection began

    @property
    def clock(self) -> MemoryReactorClock:
        return self.network.clock

    def flush(self) -> None:
        self.network.flush()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, then move every byte."""
        self.clock.advance(seconds)
        self.flush()

    def run_for(self, seconds: float, step: float = 0.5) -> None:
        """Let ``seconds`` pass in steps of ``step``, moving the bytes after each (so that
        what happens is seen at its own time, to within ``step``)."""
        for _ in range(round(seconds / step)):
            self.advance(step)

    def connector(self, reactor: Any, host: str, port: int, options: Any) -> Any:
        """The network's connector, noting when each attempt began."""
        self.attempt_times.append(self.clock.seconds())
        return self.network.connector(reactor, host, port, options)

    def device(self, uri: str = URI, site: Site | None = None, *, start: bool = True,
               device_class: type[CallHome] = CallHome, **kwargs: Any) -> CallHome:
        """A CallHome on this network, serving the demo site unless given another."""
        kwargs.setdefault("backoff", Backoff(initial=1.0, factor=2.0, max_delay=60.0,
                                             jitter=0.5, reset_after=60.0))
        kwargs.setdefault("random", lambda: 0.0)  # no jitter unless a test asks for it
        connectors = {"coap+tcp": self.connector, "coap+ws": self.connector}
        device = device_class(
            uri,
            site if site is not None else Site(make_demo_site()),
            reactor=self.clock,
            connectors=connectors,
            **kwargs,
        )
        self.devices.append(device)
        if start:
            device.startService()
            self.flush()
        return device


def make_backend() -> Backend:
    network = MemoryNetwork()
    rd = RdStandIn(network.clock)
    config = Setting()
    network.root.putChild("rd", rd)
    network.root.putChild("config", config)
    return Backend(network, rd, config)
