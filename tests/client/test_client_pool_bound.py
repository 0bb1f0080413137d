"""The client's pool holds a bounded number of connections (every table bounded).

A proxy's client opens one connection per upstream endpoint a downstream peer names, so
without a bound a peer naming many hosts (127.0.0.0/8 has 16 million) made the server hold
one descriptor per host until the idle release: measured, one coap+tcp peer made a
``twistd coaptcp --proxy 127.0.0.0/8`` hold 19,893 descriptors (its limit was 20,000) and
+230 MiB in 26 s.  The pool now refuses a new endpoint when full, releasing its least
recently used idle connection to make room (RFC 8323 section 5.5).
"""

from __future__ import annotations

from client_helpers import MemoryNetwork, make_client

from coaptcp.client import PoolFull
from coaptcp.client.pool import DEFAULT_MAX_CONNECTIONS
from coaptcp.core.codes import Code
from coaptcp.core.udp.layer import LimitError
from coaptcp.testing import failure, result_of, success


def uri(n: int) -> str:
    return f"coap+tcp://127.0.0.{n}/hello"


def get(client, network: MemoryNetwork, n: int):
    results = result_of(client.request("GET", uri(n)))
    network.flush()
    return results


def test_the_default_bound() -> None:
    network = MemoryNetwork()
    client = make_client(network)
    assert client.max_connections == DEFAULT_MAX_CONNECTIONS == 1024


def test_a_new_endpoint_beyond_the_bound_is_refused_without_connecting() -> None:
    network = MemoryNetwork()
    client = make_client(network, max_connections=2, idle_timeout=None, keepalive=None)
    held = [result_of(client.request("GET", f"coap+tcp://127.0.0.{n}/held")) for n in (1, 2)]
    network.flush()
    assert len(network.attempts) == 2
    refused = get(client, network, 3)
    error = failure(refused, PoolFull).value
    assert isinstance(error, LimitError)
    assert error.limit == "max_connections"
    assert "2 connections" in str(error)
    assert len(network.attempts) == 2  # nothing was opened for it
    # Endpoints already pooled are still served.
    assert success(get(client, network, 1)).code == Code.CONTENT
    assert held == [[], []]  # still waiting for their answers, on their connections


def test_when_full_the_least_recently_used_idle_connection_makes_room() -> None:
    network = MemoryNetwork()
    client = make_client(network, max_connections=2, idle_timeout=None, keepalive=None)
    for n in (1, 2):
        assert success(get(client, network, n)).code == Code.CONTENT
    network.clock.advance(1)
    assert success(get(client, network, 1)).code == Code.CONTENT  # 2 is now the oldest
    refused = get(client, network, 3)
    failure(refused, PoolFull)
    first, second = network.links[0], network.links[1]
    assert second.closed and not first.closed  # released (RFC 8323 section 5.5), then closed
    assert sorted(client.open_endpoints) == ["coap+tcp://127.0.0.1:5683"]
    assert success(get(client, network, 3)).code == Code.CONTENT
    assert len(network.links) == 3


def test_connections_in_use_are_never_released_for_room() -> None:
    network = MemoryNetwork()
    client = make_client(network, max_connections=1, idle_timeout=None, keepalive=None)
    held = result_of(client.request("GET", "coap+tcp://127.0.0.1/held"))
    network.flush()
    failure(get(client, network, 2), PoolFull)
    assert not network.links[0].closed
    network.held.answer(0)
    network.flush()
    assert success(held).code == Code.CONTENT


def test_no_bound() -> None:
    network = MemoryNetwork()
    client = make_client(network, max_connections=None, idle_timeout=None, keepalive=None)
    for n in range(1, 6):
        assert success(get(client, network, n)).code == Code.CONTENT
    assert len(client.open_endpoints) == 5
