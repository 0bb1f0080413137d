"""End to end: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven with
Selenium) loads the browser client from a real ``twistd coaptcp --ws`` on loopback and uses
it as a person would: connect, discovery, GET, PUT/POST text and JSON, Observe, Ping,
Release.  Every wait is bounded (WebDriverWait); a missing browser fails the test
(browser_page.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page, chromium, open_page
from peers import RunningPeer, free_port, run_server, twistd_path

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server() -> Iterator[RunningPeer]:
    port = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1"]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.getbasetemp()) as driver:
        yield driver


@pytest.fixture(scope="module")
def page(browser: Any, server: RunningPeer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    yield open_page(browser, server.port)
    shot = tmp_path_factory.getbasetemp() / "browser-client.png"
    browser.save_screenshot(str(shot))


def test_connects_and_lists_well_known_core(page: Page) -> None:
    assert page.find("#status").get_attribute("data-state") == "open"
    assert "66048 bytes" in page.find("#status").text
    page.until(lambda: len(page.find_all("[data-testid=resource]")) == 6, "no resource list")
    hrefs = [b.get_attribute("data-href") for b in page.find_all("[data-testid=resource]")]
    assert hrefs == ["/big", "/hello", "/info", "/large", "/store", "/time"]
    assert "title=Greeting" in page.find("#resources li[data-href='/hello'] .attrs").text


def test_get_text_shows_code_options_and_payload(page: Page) -> None:
    card = page.send("GET", "/hello")
    assert page.code(card) == "2.05 Content"
    assert page.options(card) == {"Content-Format": "0 (text/plain; charset=utf-8)"}
    assert page.payload(card) == ("text", "Hello, world!")


def test_get_json_is_pretty_printed(page: Page) -> None:
    card = page.send("GET", "/info")
    kind, text = page.payload(card)
    assert kind == "json"
    assert text.startswith('{\n  "server": "coaptcp ')
    assert json.loads(text)["host"] == "127.0.0.1"  # the Host header's host (section 8.5)


def test_get_larger_than_base_message_size(page: Page) -> None:
    card = page.send("GET", "/large")
    kind, text = page.payload(card)
    assert (kind, len(text)) == ("text", 4000)


def test_put_json_then_get_it_back(page: Page) -> None:
    card = page.send("PUT", "/store", payload='{"rooms": ["kitchen", "hall"], "on": true}',
                     fmt="50")
    assert page.code(card) == "2.04 Changed"
    card = page.send("GET", "/store")
    assert page.options(card)["Content-Format"] == "50 (application/json)"
    kind, text = page.payload(card)
    assert kind == "json"
    assert text == json.dumps({"rooms": ["kitchen", "hall"], "on": True}, indent=2)


def test_post_text(page: Page) -> None:
    card = page.send("POST", "/store", payload="plain words")
    assert page.code(card) == "2.04 Changed"
    assert page.payload(card) == ("text", "stored 11 bytes")
    card = page.send("GET", "/store")
    assert page.payload(card) == ("text", "plain words")


def test_invalid_json_is_not_sent(page: Page) -> None:
    before = len(page.results())
    page.Select(page.find("#method")).select_by_visible_text("PUT")
    page.Select(page.find("#format")).select_by_value("50")
    page.find("#payload").clear()
    page.find("#payload").send_keys("{not json")
    page.find("#send").click()
    page.until(lambda: "not valid JSON" in page.find("#request-error").text, "no JSON error")
    assert len(page.results()) == before


def test_not_found_is_shown_as_an_error_code(page: Page) -> None:
    card = page.send("GET", "/missing")
    assert page.code(card) == "4.04 Not Found"
    assert "error" in card.find_element(page.By.CSS_SELECTOR, "[data-testid=code]").get_attribute(
        "class")


def test_observe_shows_the_notifications_that_arrive(page: Page) -> None:
    card = page.send("GET", "/hello", observe=True)
    assert card.get_attribute("data-observe") == "true"
    assert "(Observe)" in card.find_element(page.By.CSS_SELECTOR, "[data-testid=request-line]").text
    page.until(lambda: "1 notification" in card.find_element(
        page.By.CSS_SELECTOR, "[data-testid=notification-count]").text, "no notification")
    (notification,) = card.find_elements(page.By.CSS_SELECTOR, "[data-testid=notification]")
    assert page.code(notification) == "2.05 Content"
    # Today's server does not register observers (issue 6): one response, no Observe option.
    state = card.find_element(page.By.CSS_SELECTOR, "[data-testid=observe-state]").text
    assert "no Observe option" in state


def test_ping_shows_round_trip(page: Page) -> None:
    page.find("#ping").click()
    page.until(lambda: "Pong in" in page.find("#status").text, "no Pong shown")


def test_no_errors_in_the_browser_console(page: Page) -> None:
    entries = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert entries == []


def test_release_disconnects(page: Page) -> None:
    page.find("#release").click()
    page.until(lambda: page.find("#status").get_attribute("data-state") == "closed",
               "not disconnected")
    # The server answered the Release by closing (not our fallback timer).
    assert page.find("#status").text == "Disconnected: we released the connection."
    assert page.find("#send").get_attribute("disabled") is not None
    assert page.find("#connect").get_attribute("disabled") is None
