"""Read-only queries that shape tracking data for display (notebooks, reports).

A chart is a few hundred pixels wide, so a metric with a million points must not cost
a million rows on the wire. :meth:`DisplayStore.chart_series` reduces each metric inside PostgreSQL
to the M4 aggregate of each pixel column (first, min, max, last): a line drawn through
those points is the line drawn through all of them, at that width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from omnilab.tracking.base import Store

# Non-finite values cannot be drawn; they stay in the raw history and the summaries.
_FINITE = "value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8"

_M4 = f"""
WITH points AS (
    SELECT key, step, value, ts FROM omnilab.metrics WHERE run_id = %(run)s AND {_FINITE}
), bounds AS (
    SELECT key, min(step) AS lo, max(step) AS hi, count(*) AS n FROM points GROUP BY key
), bucketed AS (
    SELECT p.key, p.step, p.value, p.ts, b.n,
           CASE WHEN b.n <= %(raw_below)s THEN p.step
                ELSE floor((p.step - b.lo)::float8 * %(buckets)s / (b.hi - b.lo + 1))::bigint
           END AS bucket
    FROM points p JOIN bounds b USING (key)
)
SELECT key, bucket, max(n), count(*), min(step), max(step), min(value), max(value),
       (array_agg(value ORDER BY step, ts))[1],
       (array_agg(value ORDER BY step DESC, ts DESC))[1]
FROM bucketed GROUP BY key, bucket ORDER BY key, bucket
"""


@dataclass
class ChartSeries:
    """One metric of one run, reduced for drawing: ``steps``/``values`` in step order."""

    key: str
    total: int  # finite points stored
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: float, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)


class DisplayStore(Store):
    """Read-only shapes of tracking data for display (notebook cards, tables, charts)."""

    def chart_series(self, run_id: str, *, buckets: int = 300) -> dict[str, ChartSeries]:
        """Each metric of ``run_id`` as at most ~4 points per bucket (bucket = pixel
        column).

        Metrics with few points come back whole. Within a bucket the min and max keep
        their values but not their exact steps (they are drawn inside the bucket's
        column), which is what makes the reduction exact at the chart's resolution and
        cheap to compute.
        """
        rows = self._execute(
            _M4, {"run": run_id, "buckets": buckets, "raw_below": buckets}
        ).fetchall()
        series: dict[str, ChartSeries] = {}
        for key, _bucket, total, n, s0, s1, vmin, vmax, first, last in rows:
            out = series.get(key)
            if out is None:
                out = series[key] = ChartSeries(key, total)
            out.add(s0, first)
            if n > 2:
                # The order of min and max inside the column is unknown; rising columns
                # are drawn low-to-high, falling ones high-to-low.
                mid = (s0 + s1) / 2
                low_high = (vmin, vmax) if first <= last else (vmax, vmin)
                for value in low_high:
                    if value != first and value != last:
                        out.add(mid, value)
            if n > 1:
                out.add(s1, last)
        return series

    def latest_values(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The last value (at the highest step) of every metric of several runs, in one
        query."""
        if not run_ids:
            return {}
        rows = self._execute(
            """
            SELECT DISTINCT ON (run_id, key) run_id, key, value FROM omnilab.metrics
            WHERE run_id = ANY(%s) ORDER BY run_id, key, step DESC, ts DESC
            """,
            (list(run_ids),),
        ).fetchall()
        latest: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
        for run_id, key, value in rows:
            latest[run_id][key] = value
        return latest
