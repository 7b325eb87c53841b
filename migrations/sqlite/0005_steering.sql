-- innerloop schema v5 (SQLite): steering left for the replica that runs a job.
-- Same as migrations/postgres/0005_steering.sql (on SQLite one process runs every job, so the
-- table stays empty; it keeps the two schemas alike).

-- A `SteerJob` asked on a replica that does not run the job: the request (its JSON) waits
-- here until the owner takes it into the job's inbox, in `seq` order.
CREATE TABLE job_steering (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    request TEXT NOT NULL
);
CREATE INDEX job_steering_by_job ON job_steering (job_id, seq);
