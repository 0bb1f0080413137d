"""The gateway of the browser proxy tests: ``twistd coaptcp --ws`` serving the page, with
``--proxy 127.0.0.0/8`` (RFC 8323 section 10, RFC 7252 section 5.7), and what reads a
request card of the page."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from browser_page import Page, chromium, open_page
from peers import RunningPeer, free_port, run_server, twistd_path


@contextlib.contextmanager
def proxy_gateway(*extra: str) -> Iterator[RunningPeer]:
    """The gateway, with ``extra`` options; its log must show no traceback at the end."""
    port = free_port()
    argv = [twistd_path(), "--nodaemon", "--pidfile=", "coaptcp",
            "--ws", f"tcp:{port}:interface=127.0.0.1", "--proxy", "127.0.0.0/8", *extra]
    with run_server(argv, port) as peer:
        yield peer
    log = peer.log_text()
    assert "Traceback" not in log and "Unhandled" not in log, log


@contextlib.contextmanager
def gateway_page(gateway: RunningPeer, workdir: Path, screenshot: str) -> Iterator[Page]:
    """Headless Chromium on the gateway's page; ``screenshot`` (a file in ``workdir``)
    keeps how the page looked at the end."""
    with chromium(workdir) as driver:
        yield open_page(driver, gateway.port)
        driver.save_screenshot(str(workdir / screenshot))


def request_line(page: Page, card: Any) -> str:
    """The line a request card shows: method, URI and the way it went."""
    return str(card.find_element(page.By.CSS_SELECTOR, "[data-testid=request-line]").text)
