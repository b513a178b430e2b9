-- omnilab tracking store, version 2: promotions of runs' results into production.
--
-- Which run's stack data waits for promotion, and where, is in runs.stack->'data'
-- (path, state: kept | promoted | discarded | expired, host, expires_at, promotes).

CREATE TABLE omnilab.promotions (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES omnilab.runs (id) ON DELETE CASCADE,
    status          text NOT NULL
                    CHECK (status IN ('running', 'succeeded', 'failed', 'rolled_back')),
    on_conflict     text NOT NULL CHECK (on_conflict IN ('fail', 'replace', 'version')),
    actor           text NOT NULL,
    host            text,
    pid             integer,
    pid_start       bigint,
    -- Per item: the plan (source, target, action, counts, sizes), its state, the counts
    -- and checksums of source and staged copy, what the switch replaced and where that
    -- is kept for rollback. Production URLs are masked; no secret is ever stored.
    items           jsonb NOT NULL DEFAULT '[]'::jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    rolled_back_at  timestamptz,
    rolled_back_by  text,
    -- When the replaced data kept for rollback was deleted (no rollback after that).
    pruned_at       timestamptz
);
CREATE INDEX promotions_run_idx ON omnilab.promotions (run_id, created_at DESC);
CREATE INDEX promotions_created_idx ON omnilab.promotions (created_at DESC);
CREATE INDEX promotions_running_idx ON omnilab.promotions (status) WHERE status = 'running';
