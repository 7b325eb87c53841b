-- innerloop schema v1 (PostgreSQL). Same tables, columns and meaning as migrations/sqlite/0001_init.sql;
-- only types differ. Text keys use the "C" collation so ordering is bytewise, as in SQLite and memory.
-- Timestamps are Unix epoch seconds; JSON is stored as text.

CREATE TABLE jobs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    status        TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    spec          TEXT NOT NULL,
    result        TEXT,
    last_event_id BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_by_status ON jobs (status, created_at DESC);

-- One row per event; a job's log is the rows with its job_id in id order.
CREATE TABLE events (
    job_id TEXT COLLATE "C" NOT NULL,
    id     BIGINT NOT NULL,
    ts     DOUBLE PRECISION NOT NULL,
    type   TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (job_id, id)
);

-- SQLite's append buffer (see src/store/sql/sqlite_log.rs): batches land here in arrival order
-- and are moved into `events` in bulk. Readers look at both. Stays empty on Postgres, where appends
-- go straight to `events`; it exists there so both backends share every query.
CREATE TABLE event_staging (
    job_id TEXT COLLATE "C" NOT NULL,
    id     BIGINT NOT NULL,
    ts     DOUBLE PRECISION NOT NULL,
    type   TEXT NOT NULL,
    data   TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    key        TEXT COLLATE "C" PRIMARY KEY,
    job_id     TEXT COLLATE "C" NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE examples (
    id       TEXT COLLATE "C" PRIMARY KEY,
    input    TEXT NOT NULL,
    expected TEXT,
    meta     TEXT NOT NULL
);

CREATE TABLE checkpoints (
    job_id     TEXT COLLATE "C" PRIMARY KEY,
    data       TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
