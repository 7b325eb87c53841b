-- innerloop schema v3 (SQLite): durable runs. Same as migrations/postgres/0003_durable_runs.sql.

-- The request an idempotency key was first used with (a hash of the validated spec): the same
-- key with a different request is a conflict. NULL for keys claimed before v3 (never conflict).
ALTER TABLE idempotency_keys ADD COLUMN request_hash TEXT;

-- Incremental checkpoints: `checkpoints.data` is the base (rewritten rarely); each part appends
-- what changed since (new memo entries, the state at the top of an iteration). A resume reads
-- the base and then the parts in `seq` order.
CREATE TABLE checkpoint_parts (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
