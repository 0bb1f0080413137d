"""End to end: the browser as a CoAP server (RFC 8323 section 4, the third configuration).

Headless Chromium loads the page from ``twistd coaptcp --udp ... --ws ...`` with a
resource directory, registers as ``browser1`` over coap+ws, and serves ``/clicks``; the
test clicks the page's button.  libcoap's UDP client reads ``/clicks`` through the server,
which sends the request over the browser's own WebSocket (RFC 8323 section 3.3), and the
server observes it there.  The server side is ``browser_backend.py``, a back end on the
directory's connected-peer API (``Registration.request`` and ``observe``);
``test_browser_ep.py`` does the same through the ``/ep/NAME/...`` reverse proxy.  Every
wait is bounded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page, chromium
from peers import RunningPeer, free_port, libcoap_client, run_server, twistd_path

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server() -> Iterator[RunningPeer]:
    port = free_port()
    udp = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", "--udp", f"udp:{udp}:interface=127.0.0.1",
            "--resource", "browser_backend.root"]
    with run_server(argv, port, cwd=str(HERE)) as peer:
        peer.udp_port = udp  # type: ignore[attr-defined]
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture(scope="module")
def page(server: RunningPeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with chromium(tmp_path_factory.getbasetemp()) as driver:
        driver.get(f"http://127.0.0.1:{server.port}/")
        page = Page(driver)
        page.until(lambda: driver.find_element(page.By.TAG_NAME, "body").get_attribute(
            "data-ready"), "the page script did not start")
        yield page
        driver.save_screenshot(str(tmp_path_factory.getbasetemp() / "browser-server.png"))


def udp(server: RunningPeer, path: str) -> str:
    return f"coap://127.0.0.1:{server.udp_port}{path}"  # type: ignore[attr-defined]


def read(server: RunningPeer, path: str) -> str:
    result = libcoap_client(udp(server, path))
    assert result.returncode == 0, result.stderr
    return str(result.stdout.decode())


def registration_state(page: Page) -> str:
    return str(page.find("#registration").get_attribute("data-state"))


def test_the_page_registers_as_browser1(page: Page, server: RunningPeer) -> None:
    assert registration_state(page) == "idle"
    page.fill("#endpoint", "browser1")
    page.find("#register").click()
    page.until(lambda: registration_state(page) == "registered", "the page did not register")
    assert page.find("#registration").text.startswith("Registered as browser1 at /rd/")
    lookup = read(server, "/rd-lookup/res?ep=browser1")
    assert "/clicks>" in lookup and 'rt="demo.clicks"' in lookup and "obs" in lookup, lookup
    assert 'ep=browser1' in read(server, "/rd-lookup/ep")


def test_libcoap_over_udp_reads_the_clicks_the_page_serves(page: Page, server: RunningPeer) -> None:
    assert read(server, "/via/browser1/clicks") == "0"
    for _ in range(3):
        page.find("#click").click()
    page.until(lambda: page.find("#clicks").text == "3", "the clicks were not counted")
    assert read(server, "/via/browser1/clicks") == "3"
    missing = libcoap_client(udp(server, "/via/browser1/nothing-here"))
    assert b"4.04" in missing.stderr + missing.stdout, missing


def test_the_server_observes_clicks_over_the_browser_s_websocket(
        page: Page, server: RunningPeer) -> None:
    assert read(server, "/watch/browser1/clicks") == "observing"
    page.until(lambda: page.find("#observers").text == "1", "no observer shown on the page")
    start = int(page.find("#clicks").text)
    for _ in range(2):
        page.find("#click").click()
    expected = [str(start), str(start + 1), str(start + 2)]
    page.until(lambda: read(server, "/seen").split(",") == expected,
               f"the server did not see the notifications {expected}")


def test_stop_removes_the_registration(page: Page, server: RunningPeer) -> None:
    page.find("#unregister").click()
    page.until(lambda: registration_state(page) == "stopped", "the page did not stop")
    page.until(lambda: "browser1" not in read(server, "/rd-lookup/ep"),
               "the registration is still there")


def test_no_errors_in_the_browser_console(page: Page) -> None:
    entries = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert entries == []
