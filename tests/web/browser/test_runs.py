"""The web UI in a real Chromium against a real ``omnilab serve`` and ``omnilab worker``:
sign in, queue from the form, follow the log and the status live, see the chart, compare,
read with JavaScript off, fit a phone, and show hostile text without running it."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.support import browser as chromium
from tests.support.browser import Chromium, phone
from tests.support.browser_site import Site, queue_from_form, sign_in, text, wait

#: Text that would run script were it ever put into a page as HTML.
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def finished(site: Site) -> Iterator[tuple[str, str]]:
    """Two runs of Quick that succeeded, with different params and metric values."""
    ids = (site.api.queue("Quick", {"n": 4, "label": "a"}), site.api.queue("Quick", {"n": 6}))
    for run_id in ids:
        site.api.wait_status(run_id, "succeeded")
    yield ids


def test_a_run_queued_from_the_form_is_followed_live_and_its_chart_drawn(
    browser: Chromium, site: Site
) -> None:
    sign_in(browser, site.url, site.key("read", "run"))
    run_id = queue_from_form(browser, site.url, "Quick", n=8, pause=0.4, label="tick")
    assert "queued" in text(browser, ".flash")
    # A mark on this page's window: were the page ever reloaded or left, it would go.
    browser.execute_script("window.__samePage = true")
    status = browser.find_element(By.ID, "run-status")
    assert status.text in ("queued", "running")  # the page came before the run ended

    # The status word changes in place, and the log grows while the run runs.
    wait(browser, lambda _: status.text == "running")
    seen_part = wait(
        browser,
        lambda d: "tick 1" in (log := text(d, "#log")) and "tick 7" not in log and log,
    )
    assert "tick 0\ntick 1" in seen_part
    assert status.text == "running"
    wait(browser, lambda _: status.text == "succeeded")
    assert "status-succeeded" in (status.get_attribute("class") or "")

    log = text(browser, "#log")
    assert [line for line in log.splitlines() if line.startswith("tick")] == [
        f"tick {i}" for i in range(8)
    ]
    assert text(browser, "#log-state") == "complete"
    # When it ended the results were fetched in place: the chart of its metric is drawn.
    chart = wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, '.metric-chart[data-metric="i"]')
    )
    assert chart[0].find_elements(By.CSS_SELECTOR, "svg polyline")
    assert chart[0].find_element(By.TAG_NAME, "svg").size["width"] > 100
    assert "8" in text(browser, "#summary")  # the summary came in with it: n = 8
    assert browser.execute_script("return window.__samePage") is True
    assert urlsplit(browser.current_url).path == f"/runs/{run_id}"
    assert site.api.run(run_id)["status"] == "succeeded"


def test_two_runs_ticked_in_the_table_are_compared(
    browser: Chromium, site: Site, finished: tuple[str, str]
) -> None:
    sign_in(browser, site.url, site.key("read"))
    # The page's script ran: it added "select all" (absent with JavaScript off).
    assert browser.find_elements(By.CSS_SELECTOR, "#runs thead input[type=checkbox]")
    for run_id in finished:
        browser.find_element(By.CSS_SELECTOR, f'tr[data-run-id="{run_id}"] input[name=run]').click()
    browser.find_element(By.ID, "compare").click()
    wait(browser, lambda d: urlsplit(d.current_url).path == "/compare")
    assert sorted(parse_qs(urlsplit(browser.current_url).query)["run"]) == sorted(finished)
    table = browser.find_element(By.ID, "compare-table")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")][1:]
    assert sorted(heads) == sorted(run_id[:8] for run_id in finished)
    differs = [
        row.find_element(By.TAG_NAME, "th").text
        for row in table.find_elements(By.CSS_SELECTOR, "tr.differs")
    ]
    assert "n" in differs and "label" in differs
    same = [
        row.find_element(By.TAG_NAME, "th").text
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr:not(.differs):not(.group)")
    ]
    assert "pause" in same and "status" in same
    # Their metric overlaid on one chart: one line per run.
    chart = browser.find_element(By.CSS_SELECTOR, '.metric-chart[data-metric="i"]')
    assert len(chart.find_elements(By.CSS_SELECTOR, "svg polyline")) == 2


def test_the_pages_read_with_javascript_off(site: Site, finished: tuple[str, str]) -> None:
    driver = chromium.start_chromium(javascript=False)
    try:
        sign_in(driver, site.url, site.key("read"))  # the form needs no script
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run-id]")
        assert {r.get_attribute("data-run-id") for r in rows} >= set(finished)
        # The script did not run: the "select all" box it adds is not there.
        assert not driver.find_elements(By.CSS_SELECTOR, "#runs thead input[type=checkbox]")
        driver.get(f"{site.url}/runs/{finished[1]}")
        assert driver.find_element(By.ID, "run-status").text == "succeeded"
        log = text(driver, "#log")
        assert [line for line in log.splitlines() if line.startswith("line")] == [
            f"line {i}" for i in range(6)
        ]
        chart = driver.find_element(By.CSS_SELECTOR, '.metric-chart[data-metric="i"]')
        assert chart.find_elements(By.CSS_SELECTOR, "svg polyline")
        assert chart.find_element(By.TAG_NAME, "svg").is_displayed()
        driver.get(f"{site.url}/compare?run={finished[0]}&run={finished[1]}")
        assert driver.find_elements(By.CSS_SELECTOR, "#compare-table tr.differs")
    finally:
        driver.quit()


def _overflow(driver: Chromium) -> dict[str, int]:
    return dict(
        driver.execute_script(
            "return {inner: innerWidth, page: document.documentElement.scrollWidth,"
            " body: document.body.scrollWidth}"
        )
    )


def test_at_phone_width_only_the_tables_scroll_sideways(
    browser: Chromium, site: Site, finished: tuple[str, str]
) -> None:
    sign_in(browser, site.url, site.key("read"))
    phone(browser)
    browser.refresh()
    sizes = _overflow(browser)
    assert sizes["inner"] == chromium.PHONE[0]
    assert sizes["page"] <= sizes["inner"] and sizes["body"] <= sizes["inner"], sizes
    # The runs table is wider than a phone: it scrolls inside its own box.
    box = browser.find_element(By.CSS_SELECTOR, ".scroll:has(#runs)")
    assert browser.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", box)
    for path in (
        f"/runs/{finished[0]}",
        f"/compare?run={finished[0]}&run={finished[1]}",
        "/experiments/Quick",
    ):
        browser.get(site.url + path)
        sizes = _overflow(browser)
        assert sizes["page"] <= sizes["inner"] and sizes["body"] <= sizes["inner"], (path, sizes)


def _nothing_ran(driver: Chromium) -> None:
    assert driver.execute_script("return window.__pwned") is None
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    # Nor did any of it become markup: the page's only script is its own file, no <img>.
    scripts = driver.execute_script("return [...document.scripts].map(s => s.src)")
    assert len(scripts) == 1 and urlsplit(scripts[0]).path == "/static/omnilab.js", scripts
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")


def test_script_in_params_names_and_log_lines_is_shown_as_text_and_never_run(
    browser: Chromium, site: Site
) -> None:
    sign_in(browser, site.url, site.key("read", "run"))
    run_id = queue_from_form(
        browser, site.url, "Quick", n=3, pause=0.3, label=HOSTILE, _run_name=HOSTILE
    )
    status = browser.find_element(By.ID, "run-status")
    wait(browser, lambda _: status.text == "succeeded")
    # The live log appended the lines as text.
    assert [line for line in text(browser, "#log").splitlines() if "__pwned" in line] == [
        f"{HOSTILE} {i}" for i in range(3)
    ]
    assert not browser.find_elements(By.CSS_SELECTOR, "#log *")
    _nothing_ran(browser)
    for path in (f"/runs/{run_id}", "/", f"/compare?run={run_id}"):
        browser.get(site.url + path)
        assert HOSTILE in text(browser, "main"), path
        _nothing_ran(browser)
    assert site.api.run(run_id)["params"]["label"] == HOSTILE


def test_a_run_cancelled_from_its_page_ends_in_place_with_its_last_lines_and_error(
    browser: Chromium, site: Site
) -> None:
    sign_in(browser, site.url, site.key("read", "run"))
    run_id = queue_from_form(browser, site.url, "Quick", n=100, pause=0.2, label="c")
    wait(browser, lambda d: "c 1" in text(d, "#log"))
    browser.find_element(By.ID, "cancel").click()
    wait(browser, lambda d: "done=cancel-requested" in d.current_url)
    browser.execute_script("window.__samePage = true")
    status = browser.find_element(By.ID, "run-status")
    wait(browser, lambda _: status.text == "cancelled")
    # The worker notes the cancellation after the run's status changed, and the stream
    # ends on the status: the page still shows the log whole, as a reload would.
    wait(browser, lambda d: text(d, "#log").endswith("omnilab: cancelled on request\n"))
    assert (
        "cancelled on request" in wait(browser, lambda d: d.find_elements(By.ID, "error"))[0].text
    )
    assert not browser.find_elements(By.ID, "cancel")
    live = text(browser, "#log")
    assert browser.execute_script("return window.__samePage") is True
    browser.refresh()
    assert text(browser, "#log") == live
    assert site.api.run(run_id)["status"] == "cancelled"
