-- innerloop schema v2 (PostgreSQL): event logs move from one row per event (`events`; the
-- `event_staging` table was SQLite's append buffer and stayed empty here) to packed chunks, one
-- row per job per group commit (see src/store/sql/chunks.rs). Existing events become one-event
-- chunks; ids, timestamps, types and data are kept exactly.

CREATE TABLE event_chunks (
    job_id   TEXT COLLATE "C" NOT NULL,
    first_id BIGINT NOT NULL,
    last_id  BIGINT NOT NULL,
    -- JSON array of {"id","ts","type","data"} objects, in id order.
    events   TEXT NOT NULL,
    PRIMARY KEY (job_id, last_id)
);

INSERT INTO event_chunks (job_id, first_id, last_id, events)
SELECT job_id, id, id,
       json_build_array(json_build_object('id', id, 'ts', ts, 'type', type, 'data', data::json))::text
FROM (
    SELECT job_id, id, ts, type, data FROM events
    UNION ALL
    SELECT job_id, id, ts, type, data FROM event_staging
) AS old_events;

DROP TABLE events;
DROP TABLE event_staging;
