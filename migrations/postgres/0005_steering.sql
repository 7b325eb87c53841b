-- innerloop schema v5 (PostgreSQL): steering left for the replica that runs a job.
-- Same as migrations/sqlite/0005_steering.sql.

-- A `SteerJob` asked on a replica that does not run the job: the request (its JSON) waits
-- here until the owner takes it into the job's inbox, in `seq` order.
CREATE TABLE job_steering (
    seq BIGSERIAL PRIMARY KEY,
    job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    request TEXT NOT NULL
);
CREATE INDEX job_steering_by_job ON job_steering (job_id, seq);
