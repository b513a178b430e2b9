"""A headless Chromium driven by Selenium, for the web UI's browser tests.

The system's Chromium and its driver are named by path (Debian's ``chromium`` and
``chromium-driver`` packages; CI installs them): Selenium Manager, which would look for a
browser or download one, is never asked, so the tests run on a machine without network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: The window the tests see by default, and a phone's (an iPhone 12-14's CSS pixels).
DESKTOP = (1280, 900)
PHONE = (390, 844)


def missing() -> str | None:
    """Why the browser tests cannot run here (one line), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"no {path}: install Debian's {package} package to run the browser tests"
    return None


class Chromium(webdriver.Chrome):
    """A Chrome driver that removes its profile's folder when it quits."""

    folder: Path

    def quit(self) -> None:
        try:
            super().quit()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_chromium(*, javascript: bool = True) -> Chromium:
    """A headless Chromium at desktop size, started from the system's binaries only;
    with ``javascript=False`` no page's script runs (as for a reader who turned it off),
    though the driver's own ``execute_script`` still does."""
    # Belt and braces: with the driver's path given Selenium skips its manager; were it
    # ever called, offline mode forbids it to download anything.
    os.environ["SE_OFFLINE"] = "true"
    # Chromium refuses to start when its profile lock's socket path passes 107 bytes
    # (a Unix socket's limit): it goes under TMPDIR, which a test's may well exceed.
    folder = Path(
        tempfile.mkdtemp(prefix="chromium-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI containers)
        "--disable-dev-shm-usage",  # /dev/shm is small in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        f"--user-data-dir={folder / 'profile'}",
    ):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, "TMPDIR": str(folder)})
    try:
        driver = Chromium(service=service, options=options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    driver.folder = folder
    set_size(driver, DESKTOP)
    return driver


def set_size(driver: Chromium, size: tuple[int, int]) -> None:
    """The page's viewport becomes exactly ``size`` CSS pixels (``window.innerWidth``):
    the window's size alone would include what a headful window's frame takes."""
    width, height = size
    driver.set_window_size(width, height)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == PHONE},
    )


def phone(driver: Chromium) -> Chromium:
    """The same browser with a phone's viewport (390x844 CSS pixels, touch)."""
    set_size(driver, PHONE)
    return driver


def desktop(driver: Chromium) -> Chromium:
    """Back to the default viewport, 1280x900."""
    set_size(driver, DESKTOP)
    return driver


def color_scheme(driver: Chromium, scheme: str | None) -> Chromium:
    """Pages see ``prefers-color-scheme: scheme`` (``"dark"``, ``"light"``), or the
    browser's own again with None: the OS setting the pages' themes follow."""
    features = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    return driver
