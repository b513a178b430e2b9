"""Metric logging: 100,000 ``log_metric`` calls against plain psycopg ``executemany``.

    python bench/metric_logging.py [--n 100000]

Caller side: the latency of each call (goal: p99 <= 1 ms). Store side: metrics per
second reaching PostgreSQL, from the first call until the last row is committed (goal:
>= 100,000/s), against psycopg 3 ``executemany`` of the same rows into the same table of
the same database (a real PostgreSQL started for the benchmark), in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime

import psycopg
from _common import percentile, write

from omnilab import Postgres, Stack
from omnilab.progress import QuietReporter
from omnilab.tracking.metrics import MetricBuffer
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore


def omnilab_arm(store: TrackingStore, n: int) -> dict[str, float]:
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(id=run_id, experiment="bench", status="running"))
    writer = store.metric_writer(run_id)
    buffer = MetricBuffer(writer)
    latencies = [0.0] * n
    clock = time.perf_counter_ns
    began = time.perf_counter()
    for i in range(n):
        t0 = clock()
        buffer.log("loss", 1.0 / (i + 1))
        latencies[i] = (clock() - t0) / 1e3  # microseconds
    calls_done = time.perf_counter()
    assert buffer.close() == []
    stored = time.perf_counter()
    writer.close()
    count = store.conn.execute(
        "SELECT count(*) FROM omnilab.metrics WHERE run_id = %s", (run_id,)
    ).fetchone()[0]
    assert count == n, count
    latencies.sort()
    return {
        "p50_us": percentile(latencies, 50),
        "p99_us": percentile(latencies, 99),
        "max_us": latencies[-1],
        "calls_s": calls_done - began,
        "stored_s": stored - began,
        "metrics_per_s": n / (stored - began),
    }


def executemany_arm(dsn: str, n: int) -> dict[str, float]:
    run_id = uuid.uuid4().hex
    rows = [(run_id, "loss", i, 1.0 / (i + 1), datetime.now(UTC)) for i in range(n)]
    with psycopg.connect(dsn) as conn:
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO omnilab.metrics (run_id, key, step, value, ts) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        conn.commit()
        elapsed = time.perf_counter() - began
    return {"stored_s": elapsed, "metrics_per_s": n / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    with Stack(Postgres(database="bench"), runtime="local", reporter=QuietReporter()) as s:
        running = s.services["postgres"]
        dsn = running.service.url(running.endpoint, secrets=True)
        with TrackingStore(dsn) as store:
            omnilab_arm(store, 1000)  # warm-up
            executemany_arm(dsn, 1000)
            ours = omnilab_arm(store, args.n)
            peer = executemany_arm(dsn, args.n)
    ratio = ours["metrics_per_s"] / peer["metrics_per_s"]
    print(f"metric logging, {args.n:,} calls, PostgreSQL {running.version}")
    print(
        f"  log_metric caller latency: p50 {ours['p50_us']:.2f} us, "
        f"p99 {ours['p99_us']:.2f} us, max {ours['max_us']:.0f} us  (goal p99 <= 1000 us)"
    )
    print(
        f"  omnilab:    {ours['metrics_per_s']:>10,.0f} metrics/s reaching PostgreSQL "
        f"({ours['stored_s']:.3f}s; calls themselves {ours['calls_s']:.3f}s)"
    )
    print(f"  executemany:{peer['metrics_per_s']:>10,.0f} metrics/s ({peer['stored_s']:.3f}s)")
    print(f"  ratio omnilab/executemany: {ratio:.1f}x  (goal >= 100,000 metrics/s)")
    path = write(
        "metric_logging", {"n": args.n, "omnilab": ours, "executemany": peer, "ratio": ratio}
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
