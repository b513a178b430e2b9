"""Promotion in a real Chromium: a key without the ``promote`` scope sees no Promote
button; one with it plans, promotes, and sees the promotion listed, while production's
servers (real Redis, PostgreSQL and Qdrant) get the run's data; its Roll back button puts
production back as it was."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from selenium.webdriver.common.by import By

from tests.support import API_EXPERIMENTS
from tests.support.browser import Chromium
from tests.support.browser_site import sign_in, text, wait
from tests.support.promotion_support import Production, run_promotable
from tests.support.queue_helpers import FAST, make_key, start_api


def test_a_key_with_the_promote_scope_promotes_from_the_page(
    browser: Chromium, production: Production, workdir: Path
) -> None:
    run = run_promotable()  # a run that kept its stack's data, as tests/promote's
    # The server's production is the one of the `production` fixture (its environment);
    # the queue shares production's Redis, as in tests/promote/test_api.py.
    env = {
        **FAST,
        "REDIS_URL": production.redis_url,
        "OMNILAB_EXPERIMENTS_DIR": str(API_EXPERIMENTS),
    }
    api = start_api(workdir, env)
    try:
        sign_in(browser, api.url, make_key("read", "run"), next_path=f"/runs/{run.id}")
        assert browser.find_element(By.ID, "run-status").text == "succeeded"
        assert browser.find_elements(By.ID, "run-actions")
        assert not browser.find_elements(By.ID, "promote")
        browser.get(f"{api.url}/runs/{run.id}/promote")  # nor is the plan served to it
        assert not browser.find_elements(By.ID, "promote-confirm")
        assert "promote" in text(browser, "main")
        browser.get(f"{api.url}/runs/{run.id}")
        browser.find_element(By.ID, "logout").click()
        wait(browser, lambda d: urlsplit(d.current_url).path == "/login")

        sign_in(browser, api.url, make_key("read", "promote"), next_path=f"/runs/{run.id}")
        before = production.snapshot()
        browser.find_element(By.ID, "promote").click()
        wait(browser, lambda d: urlsplit(d.current_url).path == f"/runs/{run.id}/promote")
        plan = text(browser, "#promotion")
        for item in ("docs", "emb:*", "scores"):
            assert item in plan, plan
        assert production.snapshot() == before  # planning changed nothing
        browser.find_element(By.ID, "promote-confirm").click()
        wait(browser, lambda d: "promoted" in text(d, ".flash"))
        assert not browser.find_elements(By.ID, "promote-confirm")

        browser.find_element(By.LINK_TEXT, "All promotions").click()
        wait(browser, lambda d: urlsplit(d.current_url).path == "/promotions")
        [row] = browser.find_elements(By.CSS_SELECTOR, "#promotions tr[data-promotion-id]")
        cells = row.text
        assert run.id[:8] in cells and "succeeded" in cells and "api-key:test" in cells
        assert row.find_elements(By.CSS_SELECTOR, "button.rollback")
        [record] = run.promotions
        assert row.get_attribute("data-promotion-id") == record.id
        assert record.status == "succeeded" and record.actor == "api-key:test"
        # Production holds the run's data.
        assert len(production.points("docs")) == 20
        client = production.redis()
        assert len(list(client.scan_iter("emb:*"))) == 30 and client.get("other:key") is None
        client.close()
        with production.pg() as conn:
            assert conn.execute("SELECT count(*) FROM scores").fetchone() == (100,)

        # Rolled back from the same list: production is as before the promotion.
        row.find_element(By.CSS_SELECTOR, "button.rollback").click()
        wait(browser, lambda d: "rolled back" in text(d, ".flash"))
        [row] = browser.find_elements(By.CSS_SELECTOR, "#promotions tr[data-promotion-id]")
        assert "rolled back" in row.text and not row.find_elements(By.CSS_SELECTOR, "button")
        assert production.snapshot() == before
    finally:
        api.service.stop()
