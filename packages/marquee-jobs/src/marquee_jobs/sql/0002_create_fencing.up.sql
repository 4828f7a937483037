-- The highest fencing token seen per resource: fenced_write() refuses any lower one.
CREATE TABLE marquee_fencing (
    resource text PRIMARY KEY,
    token bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
