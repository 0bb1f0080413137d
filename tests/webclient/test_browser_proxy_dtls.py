"""End to end through the gateway to a DTLS device (issue 19): headless Chromium loads the
browser client from ``twistd coaptcp --ws ... --proxy 127.0.0.0/8 --proxy-psk-identity
gateway --proxy-psk-key KEY`` and, with the page's Proxy-Uri field, talks to libcoap
4.3.1's ``coap-server-openssl -k KEY`` over coaps:// (CoAP over DTLS 1.2 with a pre-shared
key, RFC 7252 section 9.1.3.1): browser -> WebSocket -> proxy -> DTLS.

libcoap serves DTLS on its port + 1; ``-v 7`` makes it log the PSK identity it got and
each subscription it creates and removes, which is how the test sees the upstream side.
A second libcoap with another key stands for a device whose key the proxy does not have:
DTLS drops what it cannot verify (RFC 6347 section 4.1.2.7), so the proxy's handshake
times out and the page gets 5.02, and the proxy goes on serving.  Every wait is bounded.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page
from peers import RunningPeer, run_server
from proxy_gateway import gateway_page, proxy_gateway, request_line
from tls_peers import PSK_IDENTITY, PSK_KEY, free_port_pair, libcoap_psk_server_argv

pytestmark = pytest.mark.browser

CLOCK = re.compile(r"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$")  # libcoap's /time: "Dec 03 17:29:11"
#: libcoap's log of a GET with Observe=1 for /time: a deregistration (RFC 7641 section 3.6).
DEREGISTRATION = re.compile(r"c:GET .*\[ Observe:1,.*Uri-Path:time")
OTHER_KEY = "not the gateway's key"


@pytest.fixture(scope="module")
def device() -> Iterator[RunningPeer]:
    port = free_port_pair()
    with run_server(libcoap_psk_server_argv(port, PSK_KEY), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def stranger() -> Iterator[RunningPeer]:
    """A DTLS device whose key is not the proxy's."""
    port = free_port_pair()
    with run_server(libcoap_psk_server_argv(port, OTHER_KEY), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningPeer]:
    with proxy_gateway("--proxy-psk-identity", PSK_IDENTITY, "--proxy-psk-key", PSK_KEY) as peer:
        yield peer


@pytest.fixture(scope="module")
def page(device: RunningPeer, gateway: RunningPeer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with gateway_page(gateway, tmp_path_factory.getbasetemp(), "browser-proxy-dtls.png") as opened:
        yield opened


def at(device: RunningPeer, path: str = "/") -> str:
    """The device's coaps:// URI: libcoap's DTLS port is its UDP port + 1."""
    return f"coaps://127.0.0.1:{device.port + 1}{path}"


def test_get_over_dtls_shows_libcoap_s_answer(page: Page, device: RunningPeer) -> None:
    card = page.send("GET", proxy_uri=at(device))
    assert request_line(page, card) == f"GET {at(device)} (through the proxy)"
    assert page.code(card) == "2.05 Content"
    kind, text = page.payload(card)
    assert kind == "text"
    assert text.startswith("This is a test server made with libcoap")
    # The proxy's DTLS client presented the identity of --proxy-psk-identity.
    assert f"got psk_identity: '{PSK_IDENTITY}'" in device.log_text()


def test_put_creates_a_resource_over_dtls_and_get_reads_it(page: Page,
                                                           device: RunningPeer) -> None:
    uri = at(device, "/from/the/browser")
    card = page.send("PUT", proxy_uri=uri, payload="{\"secure\": true}", fmt="50")
    assert page.code(card) == "2.01 Created"
    card = page.send("GET", proxy_uri=uri)
    assert page.code(card) == "2.05 Content"
    assert page.options(card)["Content-Format"] == "50 (application/json)"
    assert page.payload(card) == ("json", '{\n  "secure": true\n}')


def test_observe_over_dtls_then_cancel_deregisters_upstream(page: Page,
                                                            device: RunningPeer) -> None:
    assert "removed subscription" not in device.log_text()
    assert not DEREGISTRATION.search(device.log_text())
    card = page.send("GET", proxy_uri=at(device, "/time"), observe=True)
    assert request_line(page, card) == f"GET {at(device, '/time')} (through the proxy) (Observe)"
    count = card.find_element(page.By.CSS_SELECTOR, "[data-testid=notification-count]")
    page.until(lambda: count.text == "3 notifications", "fewer than 3 notifications")
    notifications = card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")
    assert [page.code(n) for n in notifications[:3]] == ["2.05 Content"] * 3
    times = [page.payload(n)[1] for n in notifications[:3]]
    assert all(CLOCK.match(t) for t in times), times
    assert len(set(times)) == 3, times  # each notification carries a new state
    assert device.log_text().count("create new subscription") == 1  # one, upstream
    state = card.find_element(page.By.CSS_SELECTOR, "[data-testid=observe-state]")
    assert state.text == "Observing…"
    card.find_element(page.By.CSS_SELECTOR, "[data-testid=cancel-observe]").click()
    page.until(lambda: state.text == "Observation cancelled.", "the observation did not end")
    # The browser was the only observer: the proxy deregisters from libcoap over DTLS
    # (RFC 7641 section 3.6), and libcoap removes its subscription.
    page.until(lambda: "removed subscription" in device.log_text(),
               "the proxy did not deregister upstream")
    assert DEREGISTRATION.search(device.log_text()), device.log_text()
    shown = len(card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]"))
    page.find("#ping").click()  # a round trip later, still nothing more for the token
    page.until(lambda: "Pong in" in page.find("#status").text, "no Pong shown")
    assert len(card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")) == shown


def test_a_device_with_another_key_is_5_02_and_the_proxy_goes_on(
        page: Page, device: RunningPeer, stranger: RunningPeer, gateway: RunningPeer) -> None:
    card = page.send("GET", proxy_uri=at(stranger, "/time"))
    assert page.code(card) == "5.02 Bad Gateway"
    kind, text = page.payload(card)
    assert kind == "text"
    assert text == (f"upstream {at(stranger, '/time')}: {at(stranger)[:-1]}: DTLS with "
                    f"127.0.0.1 (127.0.0.1:{stranger.port + 1}): the handshake timed out")
    assert "got psk_identity" in stranger.log_text()  # it was asked, and could not verify
    assert gateway.process.poll() is None
    card = page.send("GET", proxy_uri=at(device))  # the same page and proxy, the right key
    assert page.code(card) == "2.05 Content"
    assert page.payload(card)[1].startswith("This is a test server made with libcoap")


def test_no_errors_in_the_browser_console(page: Page) -> None:
    entries = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert entries == []
