"""The web UI's browser tests: a real headless Chromium (the system's, by path).

``browser`` is a Selenium ``WebDriver`` at 1280x900 with no cookies;
``tests.support.browser.phone(browser)`` makes its viewport a phone's, 390x844
(``desktop(browser)`` sets it back). One Chromium
serves every test of a module (starting one takes about a second); each test gets it
back at desktop size, signed out, on a blank page. Without ``/usr/bin/chromium`` (and its
driver) the tests are skipped with the reason; CI installs both (.ci/run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import browser as chromium
from tests.support.browser import Chromium, desktop


@pytest.fixture(scope="module")
def _chromium() -> Iterator[Chromium]:
    reason = chromium.missing()
    if reason:
        pytest.skip(reason)
    driver = chromium.start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(_chromium: Chromium) -> Chromium:
    """The module's Chromium, reset for this test: desktop size, no cookies, blank page."""
    _chromium.get("about:blank")
    _chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not one
    return desktop(_chromium)
