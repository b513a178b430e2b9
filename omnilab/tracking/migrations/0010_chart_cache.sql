-- omnilab tracking store, version 11: a finished run's charts, reduced once. Reducing a
-- run of 100,000 points to a chart's pixel columns costs the database about 200 ms, a
-- view; a finished run's metrics do not change, so the runner keeps the reduced series
-- (and the metric summaries shown beside them) when the run ends, one row per bucket
-- count. A row holds for the attempt that finished at `finished_at` and the `points`
-- metric rows it was made from: a retried run, or points written after, make it stale,
-- and a reader then computes the charts again (tracking/chart_cache.py).

CREATE TABLE omnilab.chart_cache (
    run_id       text NOT NULL REFERENCES omnilab.runs (id) ON DELETE CASCADE,
    buckets      integer NOT NULL,
    finished_at  timestamptz NOT NULL,
    points       bigint NOT NULL,
    summaries    jsonb NOT NULL,
    series       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, buckets)
);
