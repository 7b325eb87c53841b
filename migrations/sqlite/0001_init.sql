-- innerloop schema v1 (SQLite). Same tables, columns and meaning as migrations/postgres/0001_init.sql;
-- only types and storage clauses differ. Timestamps are Unix epoch seconds; JSON is stored as text.

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    spec          TEXT NOT NULL,
    result        TEXT,
    last_event_id INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_by_status ON jobs (status, created_at DESC);

-- One row per event; a job's log is the rows with its job_id in id order.
CREATE TABLE events (
    job_id TEXT NOT NULL,
    id     INTEGER NOT NULL,
    ts     REAL NOT NULL,
    type   TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (job_id, id)
) WITHOUT ROWID;

-- SQLite's append buffer (see src/store/sql/sqlite_log.rs): batches land here in arrival order
-- and are moved into `events` in bulk. Readers look at both. Stays empty on Postgres, where appends
-- go straight to `events`; it exists there so both backends share every query.
CREATE TABLE event_staging (
    job_id TEXT NOT NULL,
    id     INTEGER NOT NULL,
    ts     REAL NOT NULL,
    type   TEXT NOT NULL,
    data   TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    key        TEXT PRIMARY KEY NOT NULL,
    job_id     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE examples (
    id       TEXT PRIMARY KEY NOT NULL,
    input    TEXT NOT NULL,
    expected TEXT,
    meta     TEXT NOT NULL
);

CREATE TABLE checkpoints (
    job_id     TEXT PRIMARY KEY NOT NULL,
    data       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
