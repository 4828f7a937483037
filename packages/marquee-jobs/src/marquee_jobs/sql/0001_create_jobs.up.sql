-- The queue. A job is 'queued' until a worker claims it ('running'), then ends
-- 'succeeded' or 'failed', or goes back to 'queued' with a later run_at to retry.
CREATE TABLE marquee_jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    -- While running: when the claim counts as abandoned (worker died) and cleanup requeues it.
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Claiming reads only ready rows of one queue, oldest first.
CREATE INDEX marquee_jobs_ready ON marquee_jobs (queue, run_at, id) WHERE state = 'queued';
CREATE INDEX marquee_jobs_finished ON marquee_jobs (finished_at)
    WHERE state IN ('succeeded', 'failed');
CREATE INDEX marquee_jobs_running ON marquee_jobs (locked_until) WHERE state = 'running';

-- Unique keys live apart from the jobs: the window runs from enqueue time whatever
-- happens to the job, and retention can delete jobs without reopening a window.
CREATE TABLE marquee_job_keys (
    kind text NOT NULL,
    unique_key text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (kind, unique_key)
);
CREATE INDEX marquee_job_keys_expires ON marquee_job_keys (expires_at);
