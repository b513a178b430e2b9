-- omnilab tracking store, version 9: placement. A worker says what it offers, a queued
-- run what it requires and which code it was queued against, and the queue where it was
-- placed or why no worker can take it yet (docs/scaling.md, Placement).
--
-- Independent of the other numbered files (each adds its own columns), so it applies
-- before or after them; IF NOT EXISTS lets it meet a column another one made first.

-- What each worker offers besides its GPU ids: the runtimes that work on its host, each
-- GPU's model and memory ([{"id": "0", "model": "NVIDIA H100 80GB HBM3", "memory_mib":
-- 81559}]), and the labels it was started with ({"zone": "a"}).
ALTER TABLE omnilab.workers
    ADD COLUMN IF NOT EXISTS runtimes jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS gpu_details jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '{}'::jsonb;

-- requires: Experiment.requires with what gpu/isolation imply (NULL: any worker);
-- code_sha256: the experiment file's content hash the run was queued (or run) with;
-- waiting: why no live worker can take the queued run ("waiting for capacity: ..."),
-- NULL once it is placed. A run that waits has no message in Redis: the reconciler
-- places it when a worker that can take it appears.
ALTER TABLE omnilab.runs
    ADD COLUMN IF NOT EXISTS requires jsonb,
    ADD COLUMN IF NOT EXISTS code_sha256 text,
    ADD COLUMN IF NOT EXISTS waiting text;

-- The worker host whose queue ({queue}@{host}) a run with requirements was sent to;
-- NULL for the shared queues.
ALTER TABLE omnilab.run_queue ADD COLUMN IF NOT EXISTS host text;

-- The reconciler looks at the queued runs that need placing every few seconds.
CREATE INDEX IF NOT EXISTS runs_queued_requires_idx ON omnilab.runs (created_at)
    WHERE status = 'queued' AND requires IS NOT NULL;
