"""End to end: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven with
Selenium) loads the browser client from a real ``twistd coaptcp --ws`` on loopback and uses
it as a person would: connect, discovery, GET, PUT/POST text and JSON, Observe, Ping,
Release.  Every wait is bounded (WebDriverWait); a missing browser fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from peers import RunningPeer, free_port, run_server, twistd_path

pytestmark = pytest.mark.browser

WAIT = 20.0  # seconds any one step may take
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
]


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
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, (
        "chromium and chromedriver are needed: apt-get install chromium chromium-driver"
    )
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a browser
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="coaptcp-chromium-", dir=tmp_path_factory.getbasetemp())
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser client as the test sees it (ids and data-testid attributes)."""

    def __init__(self, driver: Any) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        self.driver = driver
        self.By = By
        self.Select = Select
        self.wait = WebDriverWait(driver, WAIT)

    def find(self, css: str) -> Any:
        return self.driver.find_element(self.By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        return self.driver.find_elements(self.By.CSS_SELECTOR, css)

    def until(self, condition: Any, message: str) -> Any:
        return self.wait.until(lambda _: condition(), message)

    def results(self) -> list[Any]:
        return self.find_all("#results [data-testid=result]")

    def send(self, method: str, path: str, *, payload: str = "", fmt: str = "0",
             observe: bool = False) -> Any:
        """Fill the request form, send, and return the new result card once answered."""
        before = len(self.results())
        self.Select(self.find("#method")).select_by_visible_text(method)
        self.Select(self.find("#format")).select_by_value(fmt)
        path_input = self.find("#path")
        path_input.clear()
        path_input.send_keys(path)
        area = self.find("#payload")
        area.clear()
        if payload:
            area.send_keys(payload)
        box = self.find("#observe")
        if box.is_selected() != observe:
            box.click()
        self.find("#send").click()
        self.until(lambda: len(self.results()) == before + 1, f"no result for {method} {path}")
        card = self.results()[0]
        answered = "[data-testid=code], [data-testid=failure]"
        self.until(lambda: card.find_elements(self.By.CSS_SELECTOR, answered),
                   f"{method} {path} was not answered")
        return card

    def code(self, card: Any) -> str:
        return str(card.find_element(self.By.CSS_SELECTOR, "[data-testid=code]").text)

    def payload(self, card: Any) -> tuple[str, str]:
        element = card.find_element(self.By.CSS_SELECTOR, "[data-testid=payload]")
        text = self.driver.execute_script("return arguments[0].textContent", element)
        return str(element.get_attribute("data-kind")), str(text)

    def options(self, card: Any) -> dict[str, str]:
        rows = card.find_elements(self.By.CSS_SELECTOR, "[data-testid=options] tr")
        tag = self.By.TAG_NAME
        return {row.find_element(tag, "th").text: row.find_element(tag, "td").text for row in rows}


@pytest.fixture(scope="module")
def page(browser: Any, server: RunningPeer, tmp_path_factory: pytest.TempPathFactory):
    browser.get(f"http://127.0.0.1:{server.port}/")
    page = Page(browser)
    page.until(lambda: browser.find_element(page.By.TAG_NAME, "body").get_attribute("data-ready"),
               "the page script did not start")
    assert page.find("#url").get_attribute("value") == (
        f"ws://127.0.0.1:{server.port}/.well-known/coap"
    )
    page.find("#connect").click()
    page.until(lambda: "Max-Message-Size" in page.find("#status").text,
               "no CSM from the server shown")
    yield page
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
