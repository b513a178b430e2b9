"""The screenshots of docs/web.md and the README, taken of a real server and worker.

Skipped unless asked for, so that the suite never rewrites the docs::

    OMNILAB_SCREENSHOTS=docs/images pytest -n 0 tests/web/browser/test_screenshots.py

Light theme at 1280 px: sign-in, the runs table, a run (charts and log), a comparison, a
queue form; then a run in the dark theme and the runs table at a phone's width (390 px).
The runs are of a toy training loop (``docs_experiments/train.py``), whose curves differ.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.support import ROOT
from tests.support.browser import Chromium, color_scheme, phone
from tests.support.browser_site import Site, open_site, sign_in, wait

#: The tallest a full-page shot may be, in CSS pixels: a long log would make it huge.
MAX_HEIGHT = 1800


@pytest.fixture(scope="module")
def site(tests_tmp: Path, tracking_url: str) -> Iterator[Site]:
    """A site serving the docs' toy experiment (``docs_experiments/``), copied out of the
    checkout so that its pages name no folder of whoever took the screenshots."""
    _folder()
    base = Path(tempfile.mkdtemp(prefix="site-", dir=tests_tmp))
    experiments = shutil.copytree(Path(__file__).parent / "docs_experiments", base / "experiments")
    yield from open_site(base, tracking_url, experiments)


def _folder() -> Path:
    wanted = os.environ.get("OMNILAB_SCREENSHOTS")
    if not wanted:
        pytest.skip("set OMNILAB_SCREENSHOTS=docs/images to take the docs' screenshots")
    folder = Path(wanted)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(driver: Chromium, path: Path, *, full: bool = False, until: str | None = None) -> None:
    """A PNG of the viewport, or of the whole page (up to MAX_HEIGHT) with ``full``;
    ``until``: the page is cut after the element of that id (what follows is hidden)."""
    if until:
        driver.execute_script(
            "let el = document.getElementById(arguments[0]);"
            "while (el && el.tagName !== 'BODY') {"
            "  for (let next = el.nextElementSibling; next; next = next.nextElementSibling)"
            "    next.style.display = 'none';"
            "  el = el.parentElement; }",
            until,
        )
    params: dict[str, object] = {"format": "png"}
    if full:
        width, height = driver.execute_script(
            "return [innerWidth, document.documentElement.scrollHeight]"
        )
        params |= {
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(height, MAX_HEIGHT), "scale": 1},
        }
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_screenshots_of_the_main_pages(browser: Chromium, site: Site) -> None:
    folder = _folder()
    runs = [
        site.api.queue("Train", params, name=name, tags=["docs"])
        for params, name in (
            ({"lr": 0.01, "epochs": 40}, "baseline"),
            ({"lr": 0.003, "epochs": 40, "optimizer": "sgd"}, "sgd"),
            ({"lr": 0.02, "epochs": 60, "augment": True}, "augmented"),
        )
    ]
    for run_id in runs:
        site.api.wait_status(run_id, "succeeded")

    browser.get(f"{site.url}/login")
    shoot(browser, folder / "signin.png")
    sign_in(browser, site.url, site.key("read", "run", "promote"))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run-id]"))
    shoot(browser, folder / "runs.png")
    browser.get(f"{site.url}/runs/{runs[2]}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".metric-chart svg"))
    # Cut after the artifacts: the environment below names the machine's host and Python.
    shoot(browser, folder / "run.png", full=True, until="artifacts-section")
    browser.get(f"{site.url}/compare?run={runs[0]}&run={runs[1]}&run={runs[2]}")
    shoot(browser, folder / "compare.png", full=True)
    browser.get(f"{site.url}/experiments/Train")
    shoot(browser, folder / "queue.png")

    color_scheme(browser, "dark")
    browser.get(f"{site.url}/runs/{runs[0]}")
    shoot(browser, folder / "run-dark.png")
    color_scheme(browser, None)
    phone(browser)
    browser.get(f"{site.url}/")
    shoot(browser, folder / "runs-phone.png", full=True)
    for name in ("signin", "runs", "run", "compare", "queue", "run-dark", "runs-phone"):
        assert (folder / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
