-- The latest reindex job of each collection and its progress, read by
-- GetCollection on any replica. The job's queue state lives in marquee_jobs;
-- this row holds what the queue does not know: the counts and the error.
CREATE TABLE search_reindex (
    collection text PRIMARY KEY,
    job_id bigint NOT NULL,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    documents_done bigint NOT NULL DEFAULT 0,
    documents_total bigint NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    error text NOT NULL DEFAULT ''
);
