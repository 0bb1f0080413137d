"""Fixtures for the interop tests: real peers on loopback, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peers import (
    RunningPeer,
    aiocoap_server_argv,
    coaptcp_server_argv,
    free_port,
    libcoap_server_argv,
    run_server,
)


@pytest.fixture(scope="module")
def coaptcp_server() -> Iterator[RunningPeer]:
    """``twistd coaptcp`` with the demo site, from the installed package."""
    port = free_port()
    with run_server(coaptcp_server_argv(port), port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def libcoap_server() -> Iterator[RunningPeer]:
    """libcoap 4.3.1's ``coap-server-openssl``."""
    port = free_port()
    with run_server(libcoap_server_argv(port), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def aiocoap_server() -> Iterator[RunningPeer]:
    """An aiocoap 0.4.17 server, TCP only."""
    port = free_port()
    with run_server(aiocoap_server_argv(port), port) as peer:
        yield peer
