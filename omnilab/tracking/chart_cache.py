"""A finished run's charts, reduced once and kept in the tracking store
(``omnilab.chart_cache``, migration 0010).

Reducing 100,000 points to a chart's pixel columns (:meth:`DisplayStore.chart_series`)
and summarising them costs the database about 200 ms, at every first view of a run's
page on every API host. A finished run's metrics do not change, so the runner keeps the
reduction when the run ends and a page reads it back with one indexed query.

A kept row is only ever shown for what it was made from: the attempt that finished at
its ``finished_at`` (a retried run finishes again, at another time) and the number of
metric rows the run had (points written after the end, by an attempt taken for dead
say, make it stale). A missing or stale row (runs finished before this table existed
included) is computed again, as before, and kept.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from omnilab.tracking.base import Store
from omnilab.tracking.queries import ChartSeries, DisplayStore
from omnilab.tracking.records import FINISHED, MetricSummary, RunRecord
from omnilab.tracking.store import TrackingStore

# The row, only while the run still ends at the same time and has as many metric rows:
# the primary key's lookup, the run's, and a count over the metrics' index.
_KEPT = """
SELECT c.summaries, c.series FROM omnilab.chart_cache c
  JOIN omnilab.runs r ON r.id = c.run_id AND r.finished_at = c.finished_at
 WHERE c.run_id = %(run)s AND c.buckets = %(buckets)s
   AND c.points = (SELECT count(*) FROM omnilab.metrics m WHERE m.run_id = %(run)s)
"""

# Written only while the run still ends when it did when the charts were read: a page
# computing them as the run is retried cannot leave the previous attempt's behind.
_KEEP = """
INSERT INTO omnilab.chart_cache (run_id, buckets, finished_at, points, summaries, series)
SELECT id, %(buckets)s, finished_at, %(points)s, %(summaries)s, %(series)s
  FROM omnilab.runs WHERE id = %(run)s AND finished_at = %(finished)s
ON CONFLICT (run_id, buckets) DO UPDATE
   SET finished_at = excluded.finished_at, points = excluded.points,
       summaries = excluded.summaries, series = excluded.series, created_at = now()
"""


@dataclass
class RunCharts:
    """What a run's metrics are drawn from: each metric's summary and reduced series."""

    summaries: list[MetricSummary]
    series: dict[str, ChartSeries]


class ChartCache(Store):
    """The charts of runs, kept once they finish (see the module's docstring)."""

    def __init__(self, store: TrackingStore) -> None:
        super().__init__(store)
        self._store = store

    def charts(self, record: RunRecord, buckets: int) -> RunCharts:
        """The run's charts: kept ones when still valid, else computed (and kept, when
        the run has finished)."""
        if record.status not in FINISHED or record.finished_at is None:
            return self._computed(record.id, buckets)[0]
        kept = self.kept(record.id, buckets)
        if kept is not None:
            return kept
        charts, finished_at = self._computed(record.id, buckets)
        # A reader that may not write (a replica, a read-only role) still draws.
        with contextlib.suppress(
            psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege
        ):
            self._keep(record.id, buckets, charts, finished_at)
        return charts

    def kept(self, run_id: str, buckets: int) -> RunCharts | None:
        """The kept charts, or None when there are none or they are stale."""
        row = self._execute(_KEPT, {"run": run_id, "buckets": buckets}).fetchone()
        if row is None:
            return None
        summaries, series = row
        return RunCharts(
            [
                MetricSummary(
                    key=key,
                    count=count,
                    last=float(last),
                    last_step=last_step,
                    min=float(low),
                    max=float(high),
                )
                for key, count, last, last_step, low, high in summaries
            ],
            {
                key: ChartSeries(key, total, steps, values)
                for key, (total, steps, values) in series.items()
            },
        )

    def keep(self, run_id: str, buckets: int) -> RunCharts:
        """Compute the finished run's charts and keep them (the runner, at the run's
        end); returns them."""
        charts, finished_at = self._computed(run_id, buckets)
        self._keep(run_id, buckets, charts, finished_at)
        return charts

    def _computed(self, run_id: str, buckets: int) -> tuple[RunCharts, datetime | None]:
        """The charts and the run's end, read from one snapshot, so that the count kept
        with them is the count of the points they were made from."""
        with self._transaction():
            self._execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = self._execute(
                "SELECT finished_at FROM omnilab.runs WHERE id = %s", (run_id,)
            ).fetchone()
            summaries = self._store.metric_summaries(run_id)
            series = DisplayStore(self).chart_series(run_id, buckets=buckets)
        return RunCharts(summaries, series), row[0] if row else None

    def _keep(
        self, run_id: str, buckets: int, charts: RunCharts, finished_at: datetime | None
    ) -> None:
        if finished_at is None or not charts.summaries:
            return  # running, or nothing to draw: computing costs next to nothing
        self._execute(
            _KEEP,
            {
                "run": run_id,
                "buckets": buckets,
                "finished": finished_at,
                "points": sum(s.count for s in charts.summaries),
                "summaries": Jsonb([_summary_row(s) for s in charts.summaries]),
                "series": Jsonb(
                    {key: [s.total, s.steps, s.values] for key, s in charts.series.items()}
                ),
            },
        )


def _summary_row(s: MetricSummary) -> list[Any]:
    return [s.key, s.count, _number(s.last), s.last_step, _number(s.min), _number(s.max)]


def _number(value: float) -> Any:
    """JSON has no NaN or infinities (a summary may hold them: the chart never does):
    those go as ``"nan"``, ``"inf"``, ``"-inf"``, which ``float()`` reads back."""
    return value if math.isfinite(value) else repr(value)
