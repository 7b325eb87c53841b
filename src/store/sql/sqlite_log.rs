//! How SQLite appends events cheaply.
//!
//! `events` is clustered by `(job_id, id)`, which makes a job's replay one range scan but scatters
//! a batch of N jobs' events over N B-tree pages: every commit would rewrite N pages (4 KiB each)
//! for N small rows. So a batch goes to `event_staging` instead, an append-only rowid table where
//! it fills a few consecutive pages. Every [`COMPACT_AFTER`] staged rows one transaction moves them
//! into `events`, sorted, so each page there is written once per many events. Readers query both
//! tables; in any snapshot a row is in exactly one of them.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;

use super::rows::to_i64;
use crate::domain::Event;
use crate::error::Result;

/// Staged rows that trigger a compaction. Bounds the unindexed scan a read does on the staging
/// table (a few thousand rows, a millisecond or two).
pub(super) const COMPACT_AFTER: usize = 4096;

/// Rows per multi-row insert: 5 variables a row, far below SQLite's limit.
const ROWS_PER_INSERT: usize = 64;

/// Appends one batch in one transaction (the durability point), then compacts when due. A failed
/// compaction is only logged: the batch is already durable and must not be appended twice.
pub(super) async fn append(
    write: &SqlitePool,
    staged: &AtomicUsize,
    events: &[Event],
) -> Result<()> {
    let mut tx = write.begin().await?;
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
        for event in chunk {
            insert = insert
                .bind(event.job_id.clone())
                .bind(to_i64(event.id))
                .bind(event.ts)
                .bind(event.payload.type_name())
                .bind(event.payload.data_json().to_string());
        }
        insert.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    if staged.fetch_add(events.len(), Ordering::Relaxed) + events.len() >= COMPACT_AFTER {
        match compact(write).await {
            Ok(()) => staged.store(0, Ordering::Relaxed),
            Err(err) => tracing::warn!(error = %err, "event log compaction failed; will retry"),
        }
    }
    Ok(())
}

/// Moves every staged event into `events` in one transaction.
pub(super) async fn compact(write: &SqlitePool) -> Result<()> {
    let mut tx = write.begin().await?;
    sqlx::query(
        "INSERT INTO events (job_id, id, ts, type, data) \
         SELECT job_id, id, ts, type, data FROM event_staging ORDER BY job_id, id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM event_staging")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Rows waiting in the staging table (at open).
pub(super) async fn staged_rows(write: &SqlitePool) -> Result<usize> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_staging")
        .fetch_one(write)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `INSERT INTO event_staging … VALUES (…), (…)` for `rows` rows (1..=[`ROWS_PER_INSERT`]),
/// built once per size from a fixed template (no input reaches the text).
fn insert_sql(rows: usize) -> Arc<str> {
    static CACHE: [OnceLock<Arc<str>>; ROWS_PER_INSERT] =
        [const { OnceLock::new() }; ROWS_PER_INSERT];
    CACHE[rows - 1]
        .get_or_init(|| {
            // Anonymous `?` parameters: with `$n` names the driver looks each name up, which is
            // linear in the parameter count (quadratic per statement; it topped the profile).
            let values = vec!["(?, ?, ?, ?, ?)"; rows];
            format!(
                "INSERT INTO event_staging (job_id, id, ts, type, data) VALUES {}",
                values.join(", ")
            )
            .into()
        })
        .clone()
}
