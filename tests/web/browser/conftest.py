"""The web UI's browser tests: a real headless Chromium (the system's, by path).

``browser`` is a Selenium ``WebDriver`` at 1280x900 with no cookies;
``tests.support.browser.phone(browser)`` makes its viewport a phone's, 390x844
(``desktop(browser)`` sets it back). One Chromium
serves every test of a module (starting one takes about a second); each test gets it
back at desktop size, in the OS's colour scheme, signed out, on a blank page.
``site`` is a real ``omnilab serve`` and ``omnilab worker`` shared by a module's tests (by
those that one pytest-xdist process runs: it may spread a module's tests over several).
Without ``/usr/bin/chromium`` (and its driver) the tests are skipped with the reason; CI
installs both (.ci/run).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import browser as chromium
from tests.support.browser import Chromium, color_scheme, desktop
from tests.support.browser_site import Site, open_site


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
    color_scheme(_chromium, None)
    return desktop(_chromium)


@pytest.fixture(scope="module")
def site(tests_tmp: Path, tracking_url: str) -> Iterator[Site]:
    """A server and a worker for the module's tests (see ``site.open_site``)."""
    if chromium.missing():
        pytest.skip(chromium.missing() or "")
    yield from open_site(Path(tempfile.mkdtemp(prefix="site-", dir=tests_tmp)), tracking_url)
