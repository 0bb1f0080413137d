"""Headless Chromium driving the browser client, shared by the end-to-end tests here.

Debian's ``chromium`` and ``chromium-driver``, driven with Selenium; every wait is bounded
(WebDriverWait) and a missing browser fails the test rather than skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "WAIT", "Page", "chromium", "open_page"]

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


@contextlib.contextmanager
def chromium(profile_parent: Path) -> Iterator[Any]:
    """A Selenium driver of headless Chromium with a fresh profile under ``profile_parent``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, (
        "chromium and chromedriver are needed: apt-get install chromium chromium-driver"
    )
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a browser
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="coaptcp-chromium-", dir=profile_parent)
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

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        if value:
            field.send_keys(value)

    def fill_form(self, method: str, path: str, *, payload: str = "", fmt: str = "0",
                  observe: bool = False, proxy_uri: str = "") -> None:
        """Fill the request form as a person would: Path only when no Proxy-Uri is given
        (the page disables it then)."""
        self.Select(self.find("#method")).select_by_visible_text(method)
        self.Select(self.find("#format")).select_by_value(fmt)
        self.fill("#proxy-uri", proxy_uri)
        if not proxy_uri:
            self.fill("#path", path)
        self.fill("#payload", payload)
        box = self.find("#observe")
        if box.is_selected() != observe:
            box.click()

    def send(self, method: str, path: str = "", *, payload: str = "", fmt: str = "0",
             observe: bool = False, proxy_uri: str = "") -> Any:
        """Fill the request form, send, and return the new result card once answered."""
        before = len(self.results())
        self.fill_form(method, path, payload=payload, fmt=fmt, observe=observe,
                       proxy_uri=proxy_uri)
        self.find("#send").click()
        target = proxy_uri or path
        self.until(lambda: len(self.results()) == before + 1, f"no result for {method} {target}")
        card = self.results()[0]
        answered = "[data-testid=code], [data-testid=failure]"
        self.until(lambda: card.find_elements(self.By.CSS_SELECTOR, answered),
                   f"{method} {target} was not answered")
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


def open_page(driver: Any, port: int) -> Page:
    """Load the client from ``twistd coaptcp --ws`` on ``port`` and connect it."""
    driver.get(f"http://127.0.0.1:{port}/")
    page = Page(driver)
    page.until(lambda: driver.find_element(page.By.TAG_NAME, "body").get_attribute("data-ready"),
               "the page script did not start")
    assert page.find("#url").get_attribute("value") == (
        f"ws://127.0.0.1:{port}/.well-known/coap"
    )
    page.find("#connect").click()
    page.until(lambda: "Max-Message-Size" in page.find("#status").text,
               "no CSM from the server shown")
    return page
