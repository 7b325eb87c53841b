-- innerloop schema v2 (SQLite): event logs move from one row per event (`events`, plus the
-- `event_staging` append buffer) to packed chunks, one row per job per group commit (see
-- src/store/sql/chunks.rs). Existing events become one-event chunks; ids, timestamps, types and
-- data are kept exactly.

CREATE TABLE event_chunks (
    job_id   TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    last_id  INTEGER NOT NULL,
    -- JSON array of {"id","ts","type","data"} objects, in id order.
    events   TEXT NOT NULL,
    PRIMARY KEY (job_id, last_id)
);

INSERT INTO event_chunks (job_id, first_id, last_id, events)
-- Built as text: json_object() would print `ts` with 15 significant digits and lose microseconds.
SELECT job_id, id, id,
       '[{"id":' || id || ',"ts":' || printf('%!.17g', ts) || ',"type":' || json_quote(type)
           || ',"data":' || data || '}]'
FROM (
    SELECT job_id, id, ts, type, data FROM events
    UNION ALL
    SELECT job_id, id, ts, type, data FROM event_staging
)
ORDER BY job_id, id;

DROP TABLE events;
DROP TABLE event_staging;
