"""The soak test's resource tree: the demo site plus ``/soak/stats``, a diagnostic resource.

Served with ``twistd -n coaptcp --resource soak_site.make_site`` (``soak/`` on
``PYTHONPATH``).  ``GET /soak/stats`` answers JSON about the whole server process, counting
every live object of the kinds a leak would leave behind (found through the garbage
collector, so a connection that its factory forgot but something still holds is counted
too).  The connection that asks is left out of the per-connection figures.  With the query
``trim`` it first collects garbage and hands freed heap back to the OS (``malloc_trim``),
so that the RSS it reports is what the process really still holds.

Fields: ``rss_kb`` / ``hwm_kb`` (VmRSS / VmHWM from /proc/self/status), ``connections``
(CoapFactory.connections, the asking one included), ``addresses`` (the per-address
counters), ``channels`` (live Channel objects besides the asker's), ``observations`` (the
channels' registrations), ``observers`` (registrations held by the observable resources,
the asker's excluded), ``uploads`` (partial block-wise uploads), ``pending`` (our requests
awaiting answers), ``unanswered`` (peer requests being rendered), ``delayed_calls`` (the
reactor's timers), ``gc_objects``, ``store_bytes`` (what /store holds).
"""

from __future__ import annotations

import ctypes
import gc
from typing import Any

from coaptcp.channel.channel import Channel
from coaptcp.server.observe import ObservableResource
from coaptcp.server.resource import Request, Resource, Response
from coaptcp.tap.demo import make_demo_site
from coaptcp.transport.tcp import CoapFactory

__all__ = ["StatsResource", "make_site", "process_memory"]


def process_memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB (Linux /proc)."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return {"rss_kb": out.get("VmRSS", -1), "hwm_kb": out.get("VmHWM", -1)}


def _trim_heap() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


class StatsResource(Resource):
    """``GET /soak/stats[?trim]``: what the server holds, as JSON (see the module doc)."""

    def __init__(self, root: Resource) -> None:
        super().__init__()
        self.root = root

    def render_GET(self, request: Request) -> Response:
        from twisted.internet import reactor

        if "trim" in request.query:
            gc.collect()
            _trim_heap()
        asker = request.channel
        factories: list[CoapFactory] = []
        channels: list[Channel] = []
        objects = gc.get_objects()
        for obj in objects:
            if isinstance(obj, Channel):
                if obj is not asker:
                    channels.append(obj)
            elif isinstance(obj, CoapFactory):
                factories.append(obj)
        observers = 0
        for _, resource in self.root.walk():
            if isinstance(resource, ObservableResource):
                observers += sum(1 for o in resource.observations() if o.channel is not asker)
        store = self.root.children.get("store")
        stats: dict[str, Any] = {
            **process_memory(),
            "connections": sum(len(f.connections) for f in factories),
            "addresses": sum(sum(f.gate.per_address.values()) for f in factories),
            "channels": len(channels),
            "observations": sum(c.observation_count for c in channels),
            "observers": observers,
            "uploads": sum(c.blockwise.uploads_in_progress for c in channels),
            "pending": sum(c.pending_requests for c in channels),
            "unanswered": sum(len(getattr(c, "_unanswered", ())) for c in channels),
            "delayed_calls": len(reactor.getDelayedCalls()),  # type: ignore[attr-defined]
            "gc_objects": len(objects),
            "store_bytes": len(getattr(store, "value", b"")),
        }
        del objects, channels, factories
        return Response.json(stats)


def make_site() -> Resource:
    """The demo tree with ``/soak/stats`` added."""
    root = make_demo_site()
    soak = Resource()
    soak.putChild("stats", StatsResource(root))
    root.putChild("soak", soak)
    return root
