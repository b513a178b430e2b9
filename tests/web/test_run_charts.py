"""A run page's charts come from the store's kept series (tracking/chart_cache.py): kept
by a queued run's end on its worker, read back by the API's page; a run finished before
they were kept still renders, and its first view keeps them."""

from __future__ import annotations

from pathlib import Path

from omnilab.notebook.charts import CHART_WIDTH
from omnilab.tracking.chart_cache import ChartCache, RunCharts
from omnilab.tracking.queries import DisplayStore
from omnilab.tracking.store import TrackingStore
from tests.support import wait_until
from tests.support.queue_helpers import Api, make_key
from tests.support.web import Browser, record_run


def computed(store: TrackingStore, run_id: str) -> RunCharts:
    return RunCharts(
        store.metric_summaries(run_id),
        DisplayStore(store).chart_series(run_id, buckets=CHART_WIDTH),
    )


def test_a_queued_runs_end_keeps_its_charts_and_its_page_draws_them(
    api: Api, start_worker, tracking_db: str
) -> None:
    start_worker()
    run_id = api.queue("Quick", {"n": 700})
    api.wait_status(run_id, "succeeded")
    with TrackingStore(tracking_db) as store:
        cache = ChartCache(store)
        # The outcome is recorded first, the charts right after it.
        assert wait_until(lambda: cache.kept(run_id, CHART_WIDTH) is not None, timeout=10)
        kept = cache.kept(run_id, CHART_WIDTH)
        assert kept == computed(store, run_id)
        assert kept is not None and kept.series["i"].total == 700
        assert len(kept.series["i"].steps) <= 4 * CHART_WIDTH
        # Renamed in the kept row only: the page shows what it reads from there.
        store.conn.execute(
            "UPDATE omnilab.chart_cache SET summaries = "
            "replace(summaries::text, '\"i\"', '\"kept_i\"')::jsonb, "
            "series = replace(series::text, '\"i\"', '\"kept_i\"')::jsonb WHERE run_id = %s",
            (run_id,),
        )
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", env=api.env)).status_code == 303
        page = browser.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert page.text.count('class="metric-chart"') == 1 and "kept_i" in page.text


def test_a_run_finished_before_charts_were_kept_renders_and_keeps_them(
    api: Api, tracking_db: str, workdir: Path
) -> None:
    run_id = record_run(
        tracking_db,
        workdir / "runs",
        metrics={"loss": [1.0 / (n + 1) for n in range(1000)], "acc": [0.1, 0.9]},
    )
    with TrackingStore(tracking_db) as store:
        assert ChartCache(store).kept(run_id, CHART_WIDTH) is None
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", env=api.env)).status_code == 303
        page = browser.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert page.text.count('class="metric-chart"') == 2 and page.text.count("<svg") == 2
    with TrackingStore(tracking_db) as store:
        assert ChartCache(store).kept(run_id, CHART_WIDTH) == computed(store, run_id)
