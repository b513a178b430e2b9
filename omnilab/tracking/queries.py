"""Read-only queries that shape tracking data for display (notebooks, reports).

A chart is a few hundred pixels wide, so a metric with a million points must not cost
a million rows on the wire. :meth:`DisplayStore.chart_series` reduces each metric inside PostgreSQL
to the M4 aggregate of each pixel column (first, min, max, last): a line drawn through
those points is the line drawn through all of them, at that width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from omnilab.tracking.base import Store
from omnilab.tracking.records import RUN_COLUMNS, RunRecord

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
        # Walks the (run_id, key, step) index: each run's keys one by one (a skip scan),
        # then each key's highest step. Sorting the runs' points instead (DISTINCT ON)
        # took 250 ms for a page of runs holding one run of 100,000 points.
        rows = self._execute(
            """
            SELECT r.id, k.key, l.value FROM unnest(%s::text[]) AS r(id)
            CROSS JOIN LATERAL (
                WITH RECURSIVE k(key) AS (
                    SELECT min(key) FROM omnilab.metrics WHERE run_id = r.id
                    UNION ALL
                    SELECT (SELECT min(m.key) FROM omnilab.metrics m
                            WHERE m.run_id = r.id AND m.key > k.key)
                    FROM k WHERE k.key IS NOT NULL
                ) SELECT key FROM k WHERE key IS NOT NULL
            ) k
            CROSS JOIN LATERAL (
                SELECT value FROM omnilab.metrics m WHERE m.run_id = r.id AND m.key = k.key
                ORDER BY step DESC, ts DESC LIMIT 1
            ) l
            """,
            (list(run_ids),),
        ).fetchall()
        latest: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
        for run_id, key, value in rows:
            latest[run_id][key] = value
        return latest


#: Columns a run page sorts by, besides ``param.<name>``, ``summary.<name>`` and
#: ``metric.<name>`` (a metric's last value).
RUN_SORTS = {
    "created": "created_at",
    "started": "started_at",
    "finished": "finished_at",
    "duration": "(finished_at - started_at)",
    "experiment": "experiment",
    "status": "status",
    "name": "name",
    "id": "id",
}


@dataclass
class RunFilter:
    """What a runs table shows: equality on experiment, status, a tag, and on params and
    summary values as their JSON text (``lr`` = ``0.001``, ``mode`` = ``fast``), runs
    created in ``[since, until)``."""

    experiment: str | None = None
    status: str | None = None
    tag: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    summary: dict[str, str] = field(default_factory=dict)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        values: list[Any] = []
        for column, value in (("experiment", self.experiment), ("status", self.status)):
            if value is not None:
                clauses.append(f"{column} = %s")
                values.append(value)
        if self.tag is not None:
            clauses.append("tags @> %s::text[]")
            values.append([self.tag])
        if self.since is not None:
            clauses.append("created_at >= %s")
            values.append(self.since)
        if self.until is not None:
            clauses.append("created_at < %s")
            values.append(self.until)
        for column, wanted in (("params", self.params), ("summary", self.summary)):
            for key, text in wanted.items():
                clauses.append(f"{column} ->> %s = %s")
                values += [key, text]
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), values


def sort_clause(sort: str, order: str) -> tuple[str, list[Any]]:
    """``ORDER BY`` for a sort key (see :data:`RUN_SORTS`); unknown keys are a ValueError
    naming the known ones. Missing values sort last either way; ties newest first."""
    direction = "ASC" if order == "asc" else "DESC"
    group, _, name = sort.partition(".")
    values: list[Any] = []
    if sort in RUN_SORTS:
        expression = RUN_SORTS[sort]
    elif group in ("param", "summary") and name:
        expression = f"{'params' if group == 'param' else 'summary'} -> %s"
        values.append(name)
    elif group == "metric" and name:
        expression = (
            "(SELECT m.value FROM omnilab.metrics m WHERE m.run_id = runs.id AND m.key = %s "
            "ORDER BY m.step DESC, m.ts DESC LIMIT 1)"
        )
        values.append(name)
    else:
        known = ", ".join([*RUN_SORTS, "param.NAME", "summary.NAME", "metric.NAME"])
        raise ValueError(f"cannot sort by {sort!r}: sort by one of {known}")
    return f"ORDER BY {expression} {direction} NULLS LAST, created_at DESC, id", values


class RunPageStore(Store):
    """Runs for a table that pages, filters and sorts in the database (the web UI)."""

    def run_page(
        self, wanted: RunFilter, *, sort: str, order: str, limit: int, offset: int
    ) -> tuple[list[RunRecord], int]:
        """One page of runs and how many match in all."""
        where, values = wanted.where()
        order_by, order_values = sort_clause(sort, order)
        rows = self._dict_rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM omnilab.runs {where} {order_by} "
            "LIMIT %s OFFSET %s",
            [*values, *order_values, limit, offset],
        )
        total = self._execute(f"SELECT count(*) FROM omnilab.runs {where}", values).fetchone()
        return [RunRecord.model_validate(r) for r in rows], int(total[0]) if total else 0

    def experiment_names(self) -> list[str]:
        """Every experiment that has runs, by name."""
        rows = self._execute("SELECT DISTINCT experiment FROM omnilab.runs ORDER BY 1").fetchall()
        return [r[0] for r in rows]
