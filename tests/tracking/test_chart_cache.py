"""A finished run's charts, kept in the tracking store at its end (tracking/chart_cache.py):
they are what the store computes, they never outlive the attempt or the points they were
made from, and a notebook at the page's width reads them."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import omnilab
from omnilab import Experiment, Params
from omnilab.notebook.charts import CHART_WIDTH, load_series
from omnilab.progress import QuietReporter
from omnilab.recorded import Run
from omnilab.runner import RunOptions, run_with
from omnilab.tracking.chart_cache import ChartCache, RunCharts
from omnilab.tracking.queries import DisplayStore
from omnilab.tracking.store import TrackingStore


class Curves(Experiment):
    """More points than the chart has columns, a sparse metric, non-finite values."""

    gpu = False

    class Params(Params):
        attempt: int = 1

    def run(self, ctx):  # type: ignore[no-untyped-def]
        a = ctx.params.attempt
        for step in range(3000):
            ctx.log_metric("loss", a * math.exp(-step / 500) + 0.01 * math.sin(step), step=step)
            if step % 7 == 0:
                ctx.log_metric("acc", step / 3000 / a, step=step)
        for step, value in enumerate([1.0, math.inf, -math.inf, math.nan, 2.0]):
            ctx.log_metric("blowup", value, step=step)
        ctx.log_metric(f"attempt{a}", 0.5)
        return {"attempt": a}


def computed(store: TrackingStore, run_id: str) -> RunCharts:
    return RunCharts(
        store.metric_summaries(run_id),
        DisplayStore(store).chart_series(run_id, buckets=CHART_WIDTH),
    )


def same(kept: RunCharts | None, fresh: RunCharts) -> bool:
    # repr: NaN (a summary's max) is not equal to itself, its repr is.
    return (
        kept is not None
        and kept.series == fresh.series
        and repr(kept.summaries) == repr(fresh.summaries)
    )


def kept_at(store: TrackingStore, run_id: str) -> datetime | None:
    row = store.conn.execute(
        "SELECT finished_at FROM omnilab.chart_cache WHERE run_id = %s AND buckets = %s",
        (run_id, CHART_WIDTH),
    ).fetchone()
    return row[0] if row else None


def test_a_runs_end_keeps_exactly_what_the_store_computes() -> None:
    run = omnilab.run(Curves, reporter=QuietReporter())
    assert run.ok, run.error
    with TrackingStore.open() as store:
        kept = ChartCache(store).kept(run.id, CHART_WIDTH)
        fresh = computed(store, run.id)
        assert kept_at(store, run.id) == store.get_run(run.id).finished_at
    assert same(kept, fresh)
    assert kept is not None
    assert kept.series["loss"].total == 3000 and len(kept.series["loss"].steps) <= 4 * CHART_WIDTH
    assert kept.series["blowup"].values == [1.0, 2.0]  # drawn: the finite points only
    blowup = next(s for s in kept.summaries if s.key == "blowup")
    assert blowup.count == 5 and blowup.min == -math.inf and math.isnan(blowup.max)


def test_a_retried_run_never_shows_an_earlier_attempts_charts() -> None:
    run = omnilab.run(Curves, reporter=QuietReporter())
    with TrackingStore.open() as store:
        first = ChartCache(store).kept(run.id, CHART_WIDTH)
        assert first is not None and "attempt1" in first.series
        # Back to the queue, as QueueStore.end_attempt does, then taken again.
        store.update_run(run.id, status="queued", started_at=None, finished_at=None)
        assert ChartCache(store).kept(run.id, CHART_WIDTH) is None
    # The second attempt, as a worker's horse runs it: the same run id, recorded.
    again = run_with(Curves, {"attempt": 2}, RunOptions(run_id=run.id, reporter=QuietReporter()))
    assert again.ok and again.record.finished_at != run.record.finished_at
    with TrackingStore.open() as store:
        second = ChartCache(store).kept(run.id, CHART_WIDTH)
        assert same(second, computed(store, run.id))
        assert second is not None and "attempt2" in second.series
        assert second.series["loss"] != first.series["loss"]
        assert kept_at(store, run.id) == store.get_run(run.id).finished_at

        # A third attempt whose worker died: its end is recorded without the runner
        # (nothing kept), at another time, with as many points as before.
        store.update_run(run.id, status="failed", finished_at=datetime.now(UTC))
        assert ChartCache(store).kept(run.id, CHART_WIDTH) is None
        record = store.get_run(run.id)
        shown = ChartCache(store).charts(record, CHART_WIDTH)  # computed, and kept
        assert same(shown, computed(store, run.id))
        assert kept_at(store, run.id) == record.finished_at
        assert same(ChartCache(store).kept(run.id, CHART_WIDTH), computed(store, run.id))


def test_points_written_after_the_end_make_the_kept_charts_stale() -> None:
    run = omnilab.run(Curves, reporter=QuietReporter())
    with TrackingStore.open() as store:
        assert ChartCache(store).kept(run.id, CHART_WIDTH) is not None
        writer = store.metric_writer(run.id)  # an attempt taken for dead, still writing
        writer([("late", 0, 1.0, time.time()), ("loss", 10, 99.0, time.time())])
        writer.close()
        assert ChartCache(store).kept(run.id, CHART_WIDTH) is None
        shown = ChartCache(store).charts(store.get_run(run.id), CHART_WIDTH)
        assert "late" in shown.series and 99.0 in shown.series["loss"].values
        assert same(ChartCache(store).kept(run.id, CHART_WIDTH), computed(store, run.id))


def test_a_running_run_and_a_run_with_no_metrics_keep_nothing() -> None:
    class Silent(Experiment):
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            return {}

    run = omnilab.run(Silent, reporter=QuietReporter())
    with TrackingStore.open() as store:
        assert kept_at(store, run.id) is None
        assert ChartCache(store).charts(run.record, CHART_WIDTH) == RunCharts([], {})
        store.update_run(run.id, status="running", finished_at=None)
        writer = store.metric_writer(run.id)
        writer([("loss", 0, 1.0, time.time())])
        writer.close()
        record = store.get_run(run.id)
        assert list(ChartCache(store).charts(record, CHART_WIDTH).series) == ["loss"]
        assert kept_at(store, run.id) is None


def test_a_notebook_at_the_pages_width_draws_the_kept_series() -> None:
    run = omnilab.run(Curves, reporter=QuietReporter())
    with TrackingStore.open() as store:
        # Renamed in the kept row only: what reads it shows the new name.
        store.conn.execute(
            "UPDATE omnilab.chart_cache SET series = "
            "replace(series::text, '\"acc\"', '\"kept_acc\"')::jsonb WHERE run_id = %s",
            (run.id,),
        )
    (series,) = load_series([Run.load(run.id)])
    assert "kept_acc" in series and "acc" not in series
    (other_width,) = load_series([Run.load(run.id)], width=CHART_WIDTH // 2)
    assert "acc" in other_width and "kept_acc" not in other_width


def test_deleting_a_run_deletes_its_kept_charts() -> None:
    run = omnilab.run(Curves, reporter=QuietReporter())
    with TrackingStore.open() as store:
        assert kept_at(store, run.id) is not None
        store.delete_run(run.id)
        assert kept_at(store, run.id) is None
