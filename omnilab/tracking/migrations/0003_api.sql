-- omnilab tracking store, version 3: the HTTP API's queue, its workers and API keys.
--
-- Independent of version 2 (promotion): the migration runner applies whichever numbered
-- files it has not applied yet, in order, so 0003 may be applied before 0002 exists.

-- One row per run that came through the queue; omnilab.runs keeps the status. The run
-- record is the source of truth, Redis only carries "please run this" messages.
CREATE TABLE omnilab.run_queue (
    run_id          text PRIMARY KEY REFERENCES omnilab.runs (id) ON DELETE CASCADE,
    queue           text NOT NULL,
    attempt         int NOT NULL DEFAULT 0,          -- attempts started so far
    max_attempts    int NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 11),
    delivery        int NOT NULL DEFAULT 0,          -- messages sent after the first one
    queued_at       timestamptz NOT NULL DEFAULT now(),
    worker          text,                            -- "<worker id>/<slot>" of the attempt
    job             text,                            -- the rq message it came with
    gpu             text,                            -- CUDA_VISIBLE_DEVICES the attempt got
    submitted_by    text,                            -- API key id
    idempotency_key text,
    cancel_requested_at timestamptz,
    history         jsonb NOT NULL DEFAULT '[]'::jsonb,  -- earlier attempts and how they ended
    UNIQUE (submitted_by, idempotency_key)
);

-- Live and past `omnilab worker` processes; a stale heartbeat means a dead worker.
CREATE TABLE omnilab.workers (
    id            text PRIMARY KEY,
    host          text NOT NULL,
    pid           int NOT NULL,
    pid_start     bigint,
    concurrency   int NOT NULL,
    gpus          jsonb NOT NULL DEFAULT '[]'::jsonb,
    queues        jsonb NOT NULL DEFAULT '[]'::jsonb,
    version       text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- API keys: only a SHA-256 of the secret part is kept (keys are 256-bit random values,
-- so a slow password hash would add latency to every request and no safety).
CREATE TABLE omnilab.api_keys (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    scopes         text[] NOT NULL,
    secret_sha256  text NOT NULL,
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
