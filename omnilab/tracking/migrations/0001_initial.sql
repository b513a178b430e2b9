-- omnilab tracking store, version 1: runs, their metrics and artifacts.

CREATE TABLE omnilab.runs (
    id            text PRIMARY KEY,
    experiment    text NOT NULL,
    source        text,
    status        text NOT NULL
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    summary       jsonb,
    error         text,
    runtime       text,
    stack         jsonb NOT NULL DEFAULT '{}'::jsonb,
    environment   jsonb NOT NULL DEFAULT '{}'::jsonb,
    git_commit    text,
    owner         text,
    run_dir       text,
    timings       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX runs_created_idx ON omnilab.runs (created_at DESC);
CREATE INDEX runs_experiment_idx ON omnilab.runs (experiment, created_at DESC);
CREATE INDEX runs_status_idx ON omnilab.runs (status, created_at DESC);

-- No foreign key and a single index: metrics arrive by the hundred thousand through
-- COPY, and each constraint checked per row would cost more than the row itself.
CREATE TABLE omnilab.metrics (
    run_id  text NOT NULL,
    key     text NOT NULL,
    step    bigint NOT NULL,
    value   double precision NOT NULL,
    ts      timestamptz NOT NULL
);
CREATE INDEX metrics_run_key_step_idx ON omnilab.metrics (run_id, key, step);

CREATE TABLE omnilab.artifacts (
    run_id      text NOT NULL REFERENCES omnilab.runs (id) ON DELETE CASCADE,
    path        text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, path)
);
