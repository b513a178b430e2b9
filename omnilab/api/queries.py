"""Read-only queries only the API needs (pages of metric points, workers' current runs)."""

from __future__ import annotations

from collections import defaultdict

import psycopg

from omnilab.tracking.records import MetricPoint


def metric_points(
    conn: psycopg.Connection, run_id: str, key: str | None, after_step: int | None, limit: int
) -> dict[str, list[MetricPoint]]:
    """Up to ``limit`` + 1 points per metric after ``after_step`` (the extra one tells that
    more follow)."""
    rows = conn.execute(
        """
        SELECT key, step, value, ts FROM (
            SELECT key, step, value, ts,
                   row_number() OVER (PARTITION BY key ORDER BY step, ts) AS n
              FROM omnilab.metrics
             WHERE run_id = %(run)s
               AND (%(key)s::text IS NULL OR key = %(key)s)
               AND (%(after)s::bigint IS NULL OR step > %(after)s)
        ) numbered WHERE n <= %(limit)s + 1 ORDER BY key, step, ts
        """,
        {"run": run_id, "key": key, "after": after_step, "limit": limit},
    ).fetchall()
    points: dict[str, list[MetricPoint]] = defaultdict(list)
    for k, step, value, ts in rows:
        points[k].append(MetricPoint(key=k, step=step, value=value, timestamp=ts))
    return points


def running_by_worker(conn: psycopg.Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT split_part(q.worker, '/', 1), r.id FROM omnilab.runs r "
        "JOIN omnilab.run_queue q ON q.run_id = r.id "
        "WHERE r.status = 'running' AND q.worker IS NOT NULL ORDER BY r.started_at"
    ).fetchall()
    running: dict[str, list[str]] = defaultdict(list)
    for worker_id, run_id in rows:
        running[worker_id].append(run_id)
    return running
