-- innerloop schema v4 (PostgreSQL): job ownership by lease, for several replicas on one database.
-- Same as migrations/sqlite/0004_leases.sql.

-- The replica running a job (`REPLICA_ID`), until when its lease holds (epoch seconds), and a
-- counter bumped by every claim: a write carries the epoch its writer claimed with and is
-- refused (fenced) once another replica has claimed the job since. `owner` NULL: nobody runs
-- it (queued, released on a graceful stop, or written before v4).
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
-- A cancel, pause or resume asked on a replica that does not run the job, for its owner.
ALTER TABLE jobs ADD COLUMN requested TEXT;
-- Claims scan live jobs only.
CREATE INDEX jobs_live_by_lease ON jobs (lease_until, created_at)
    WHERE status IN ('pending', 'running', 'paused');
