"""The browser harness itself, on a static page served from this process: the web UI's
tests rely on it running the page's scripts, reading text as a user sees it, changing
the viewport, and never reaching for the network to find a browser."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import browser as chromium
from tests.support.browser import Chromium, desktop, phone

PAGE = """<!doctype html>
<html><head><meta name="viewport" content="width=device-width, initial-scale=1">
<style>#narrow { display: none } @media (max-width: 600px) { #narrow { display: block } }</style>
</head><body>
<pre id="log"></pre><p id="narrow">narrow</p>
<script>
  // Appended by script after load, as the run page's live log is.
  setTimeout(() => {
    const log = document.getElementById("log");
    for (const n of [1, 2, 3]) log.append(document.createTextNode("line " + n + "\\n"));
  }, 50);
</script>
</body></html>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_scripts_run_and_text_is_read(browser: Chromium, static_site: str) -> None:
    browser.get(static_site)
    log = browser.find_element(By.ID, "log")
    WebDriverWait(browser, 10).until(lambda _: "line 3" in (log.get_property("textContent") or ""))
    assert log.get_property("textContent") == "line 1\nline 2\nline 3\n"
    assert browser.execute_script("return [innerWidth, innerHeight]") == list(chromium.DESKTOP)
    assert not browser.find_element(By.ID, "narrow").is_displayed()


def test_phone_width_applies_the_pages_media_queries(browser: Chromium, static_site: str) -> None:
    browser.get(static_site)
    phone(browser)
    assert browser.execute_script("return innerWidth") == chromium.PHONE[0]
    assert browser.find_element(By.ID, "narrow").is_displayed()
    desktop(browser)
    assert browser.execute_script("return innerWidth") == chromium.DESKTOP[0]
    assert not browser.find_element(By.ID, "narrow").is_displayed()


def test_no_selenium_manager_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selenium Manager (which may download a browser) is never run: pointed at a file that
    does not exist, it would raise before the browser starts."""
    if chromium.missing():
        pytest.skip(chromium.missing() or "")
    monkeypatch.setenv("SE_MANAGER_PATH", "/nonexistent/selenium-manager")
    driver = chromium.start_chromium()
    try:
        assert driver.capabilities["browserVersion"]
    finally:
        driver.quit()
