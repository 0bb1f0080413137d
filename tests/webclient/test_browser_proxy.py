"""End to end through the forward proxy: headless Chromium loads the browser client from
``twistd coaptcp --ws ... --proxy 127.0.0.0/8`` and, with the page's Proxy-Uri field,
talks to libcoap 4.3.1's ``coap-server-openssl`` over CoAP over UDP, as RFC 8323 section
4 pictures it (browser -> WebSocket -> proxy -> UDP): GET, PUT and read back, DELETE,
POST, and Observe of libcoap's ``/time`` (RFC 7641 section 5, one upstream observation
fanned out by the proxy).  Every wait is bounded.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page
from peers import RunningPeer, free_port, libcoap_server_argv, run_server
from proxy_gateway import gateway_page, proxy_gateway, request_line

pytestmark = pytest.mark.browser

CLOCK = re.compile(r"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$")  # libcoap's /time: "Dec 03 17:29:11"


@pytest.fixture(scope="module")
def device() -> Iterator[RunningPeer]:
    """libcoap's example server: UDP (and TCP, which tells us it is up) on one port."""
    port = free_port()
    with run_server(libcoap_server_argv(port), port) as peer:
        yield peer


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningPeer]:
    with proxy_gateway() as peer:
        yield peer


@pytest.fixture(scope="module")
def page(device: RunningPeer, gateway: RunningPeer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with gateway_page(gateway, tmp_path_factory.getbasetemp(), "browser-proxy.png") as opened:
        yield opened


def at(device: RunningPeer, path: str = "/") -> str:
    return f"coap://127.0.0.1:{device.port}{path}"


def test_get_through_the_proxy_shows_libcoap_s_answer(page: Page, device: RunningPeer) -> None:
    card = page.send("GET", proxy_uri=at(device))
    assert request_line(page, card) == f"GET {at(device)} (through the proxy)"
    assert card.get_attribute("data-proxy-uri") == at(device)
    assert page.code(card) == "2.05 Content"
    kind, text = page.payload(card)
    assert kind == "text"
    assert text.startswith("This is a test server made with libcoap")
    assert page.find("#path").get_attribute("disabled") is not None  # Path is not used


def test_put_through_the_proxy_then_read_it_back(page: Page, device: RunningPeer) -> None:
    uri = at(device, "/example_data")
    before = page.send("GET", proxy_uri=uri)  # the proxy now holds it in its cache
    assert page.code(before) == "2.05 Content"
    assert page.payload(before)[1].startswith("a123456789b123456789")
    card = page.send("PUT", proxy_uri=uri, payload="written from the browser")
    assert page.code(card) == "2.04 Changed"
    card = page.send("GET", proxy_uri=uri)  # 2.04 made the stored copy stale
    assert page.code(card) == "2.05 Content"
    assert page.payload(card) == ("text", "written from the browser")


def test_put_creates_and_delete_removes_a_resource(page: Page, device: RunningPeer) -> None:
    uri = at(device, "/made/by/the/page?ignored=yes")
    assert page.code(page.send("PUT", proxy_uri=uri, payload="{\"on\": true}", fmt="50")) == (
        "2.01 Created")
    card = page.send("GET", proxy_uri=uri)
    assert page.options(card)["Content-Format"] == "50 (application/json)"
    assert page.payload(card) == ("json", '{\n  "on": true\n}')
    assert page.code(page.send("DELETE", proxy_uri=uri)) == "2.02 Deleted"
    assert page.code(page.send("GET", proxy_uri=uri)) == "4.04 Not Found"


def test_post_gets_libcoap_s_refusal(page: Page, device: RunningPeer) -> None:
    card = page.send("POST", proxy_uri=at(device), payload="x")
    assert page.code(card) == "4.05 Method Not Allowed"


def test_observe_through_the_proxy_shows_notifications(page: Page, device: RunningPeer) -> None:
    card = page.send("GET", proxy_uri=at(device, "/time"), observe=True)
    assert request_line(page, card) == f"GET {at(device, '/time')} (through the proxy) (Observe)"
    count = card.find_element(page.By.CSS_SELECTOR, "[data-testid=notification-count]")
    page.until(lambda: count.text == "3 notifications", "fewer than 3 notifications")
    notifications = card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")
    assert [page.code(n) for n in notifications[:3]] == ["2.05 Content"] * 3
    times = [page.payload(n)[1] for n in notifications[:3]]
    assert all(CLOCK.match(t) for t in times), times
    assert len(set(times)) == 3, times  # each notification carries a new state
    state = card.find_element(page.By.CSS_SELECTOR, "[data-testid=observe-state]")
    assert state.text == "Observing…"
    card.find_element(page.By.CSS_SELECTOR, "[data-testid=cancel-observe]").click()
    page.until(lambda: state.text == "Observation cancelled.", "the observation did not end")
    shown = len(card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]"))
    last = card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")[-1]
    assert "Observe" not in page.options(last)  # the answer to the deregistering GET
    page.find("#ping").click()  # a round trip later, still nothing more for the token
    page.until(lambda: "Pong in" in page.find("#status").text, "no Pong shown")
    assert len(card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")) == shown


def test_a_destination_outside_the_proxy_s_networks_is_refused(page: Page) -> None:
    card = page.send("GET", proxy_uri="coap://192.0.2.1/")
    assert page.code(card) == "5.05 Proxying Not Supported"
    assert "not allowed; this proxy forwards to 127.0.0.0/8" in page.payload(card)[1]


def test_a_uri_that_is_not_a_coap_uri_is_not_sent(page: Page) -> None:
    before = len(page.results())
    page.fill_form("GET", "", proxy_uri="http://127.0.0.1/")
    page.find("#send").click()
    page.until(lambda: "scheme \"http\" is not one of" in page.find("#request-error").text,
               "no Proxy-Uri error")
    assert len(page.results()) == before


def test_an_empty_proxy_uri_asks_the_server_itself(page: Page) -> None:
    card = page.send("GET", "/hello")
    assert request_line(page, card) == "GET /hello"
    assert card.get_attribute("data-proxy-uri") is None
    assert page.payload(card) == ("text", "Hello, world!")
    assert page.find("#path").get_attribute("disabled") is None


def test_no_errors_in_the_browser_console(page: Page) -> None:
    entries = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert entries == []
