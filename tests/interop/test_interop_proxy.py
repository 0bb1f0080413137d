"""The forward proxy with real peers over loopback (RFC 7252 section 5.7, RFC 8323).

Our server runs with ``--proxy 127.0.0.0/8`` on coap+tcp; upstream are libcoap's
``coap-server-openssl`` and a second coaptcp, both over UDP.  libcoap's client sends
Proxy-Uri (``-P``), aiocoap's sends Proxy-Scheme with Uri-Host and Uri-Port
(``--proxy``); a destination outside the allowed network gets 5.05 and nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peers import (
    RunningPeer,
    aiocoap_client,
    cli_path,
    coaptcp_server_argv,
    free_port,
    libcoap_client,
    libcoap_server_argv,
    run,
    run_server,
)
from test_interop_udp import big_body, running_udp_server

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def libcoap_udp() -> Iterator[RunningPeer]:
    port = free_port()  # libcoap listens on TCP and UDP at once: the TCP port says ready
    with run_server(libcoap_server_argv(port), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def coaptcp_udp() -> Iterator[RunningPeer]:
    with running_udp_server() as peer:
        yield peer


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningPeer]:
    port = free_port()
    argv = [*coaptcp_server_argv(port), "--proxy", "127.0.0.0/8"]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


def test_libcoap_reaches_a_udp_server_through_us_with_proxy_uri(
    proxy: RunningPeer, libcoap_udp: RunningPeer
) -> None:
    via = f"coap+tcp://127.0.0.1:{proxy.port}"
    got = libcoap_client("-P", via, f"coap://127.0.0.1:{libcoap_udp.port}/")
    assert got.returncode == 0, got.stderr
    assert b"libcoap" in got.stdout
    target = f"coap://127.0.0.1:{libcoap_udp.port}/example_data"
    assert libcoap_client("-m", "put", "-e", "through the proxy", "-P", via, target).returncode == 0
    # Read it back directly over UDP: the PUT really reached libcoap.
    assert libcoap_client(target).stdout == b"through the proxy"


def test_aiocoap_reaches_a_udp_server_through_us_with_proxy_scheme(
    proxy: RunningPeer, libcoap_udp: RunningPeer
) -> None:
    target = f"coap://127.0.0.1:{libcoap_udp.port}/example_data"
    assert libcoap_client("-m", "put", "-e", "for aiocoap", target).returncode == 0
    got = aiocoap_client("--proxy", f"coap+tcp://127.0.0.1:{proxy.port}", target)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == b"for aiocoap"


def test_a_mebibyte_travels_block_wise_on_each_side_of_the_proxy(
    proxy: RunningPeer, coaptcp_udp: RunningPeer
) -> None:
    got = libcoap_client("-B", "60", "-P", f"coap+tcp://127.0.0.1:{proxy.port}",
                         f"coap://127.0.0.1:{coaptcp_udp.port}/big")
    assert got.returncode == 0, got.stderr
    assert got.stdout == big_body()


def test_a_destination_outside_the_allowed_networks_gets_5_05(proxy: RunningPeer) -> None:
    result = run([cli_path(), "-O", "35,coap://192.0.2.1/secret",
                  f"coap+tcp://127.0.0.1:{proxy.port}/"])
    assert result.returncode != 0
    assert b"5.05" in result.stdout + result.stderr
    assert b"not allowed" in result.stdout + result.stderr
