"""End to end, the draft's third figure (RFC 8323 section 4): a CoAP server running inside
a web browser, reachable through our server acting as a reverse proxy.

Headless Chromium loads the page from ``twistd coaptcp --udp ... --ws ... --rd``; the page
registers as ``browser1`` over coap+ws and serves ``/clicks``.  libcoap's UDP client
``coap-client-openssl coap://127.0.0.1:PORT/ep/browser1/clicks`` reads it, and observes
it (``-s``) while the test clicks the page's button: each click is a notification from
the browser, forwarded by ``/ep``.  Every wait is bounded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import childproc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page, chromium
from peers import (
    COMMAND_TIMEOUT,
    RunningPeer,
    free_port,
    libcoap_client,
    require_binary,
    run_server,
    twistd_path,
)

pytestmark = pytest.mark.browser

OBSERVE_SECONDS = 8  # how long the observing libcoap client runs (-s)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningPeer, int]]:
    port = free_port()
    udp = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", "--udp", f"udp:{udp}:interface=127.0.0.1",
            "--rd"]
    with run_server(argv, port) as peer:
        yield peer, udp
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def page(server: tuple[RunningPeer, int],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with chromium(tmp_path_factory.getbasetemp()) as driver:
        driver.get(f"http://127.0.0.1:{server[0].port}/")
        page = Page(driver)
        page.until(lambda: driver.find_element(page.By.TAG_NAME, "body").get_attribute(
            "data-ready"), "the page script did not start")
        page.find("#register").click()
        page.until(lambda: page.find("#registration").get_attribute("data-state") == "registered",
                   "the page did not register")
        yield page
        driver.save_screenshot(str(tmp_path_factory.getbasetemp() / "browser-ep.png"))


def ep_uri(server: tuple[RunningPeer, int], path: str) -> str:
    return f"coap://127.0.0.1:{server[1]}/ep/browser1{path}"


def test_libcoap_reads_clicks_through_the_reverse_proxy(
        page: Page, server: tuple[RunningPeer, int]) -> None:
    result = libcoap_client(ep_uri(server, "/clicks"))
    assert (result.returncode, result.stdout) == (0, b"0"), result
    page.find("#click").click()
    page.until(lambda: page.find("#clicks").text == "1", "the click was not counted")
    assert libcoap_client(ep_uri(server, "/clicks")).stdout == b"1"
    links = libcoap_client(ep_uri(server, "/.well-known/core")).stdout.decode()
    assert links == '</clicks>;rt="demo.clicks";ct=0;title="Clicks on the page";obs', links


def test_libcoap_observes_clicks_through_the_reverse_proxy(
        page: Page, server: tuple[RunningPeer, int]) -> None:
    start = int(page.find("#clicks").text)
    observer = childproc.popen(
        [require_binary("coap-client-openssl"), "-B", "10", "-s", str(OBSERVE_SECONDS),
         ep_uri(server, "/clicks")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        page.until(lambda: page.find("#observers").text == "1",
                   "the browser shows no observer")
        for _ in range(3):
            page.find("#click").click()
        out, err = observer.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if observer.poll() is None:
            observer.kill()
            observer.wait(timeout=10)
    # libcoap prints each notification's payload as it comes, without a separator.
    assert out.decode().strip() == "".join(str(start + n) for n in range(4)), (out, err)
    page.until(lambda: page.find("#observers").text == "0",
               "the observation did not end in the browser")


def test_no_errors_in_the_browser_console(page: Page) -> None:
    entries = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert entries == []
