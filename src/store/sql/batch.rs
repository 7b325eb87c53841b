//! One group commit in SQL: a [`WriteBatch`] becomes at most three set-based statements in one
//! transaction — new job rows, event chunks ([`super::chunks`]), then row updates — however many
//! jobs it touches. Statements per row would cost a round trip to the database (or to SQLite's
//! worker thread) each, which is what bounded jobs/s before.
//!
//! SQLite binds multi-row `VALUES` lists cut into power-of-two row counts, so the prepared
//! statement cache holds a few statements per kind; Postgres binds one array per column and
//! `UNNEST`s them.

use std::collections::HashSet;

use sqlx::{PgConnection, SqliteConnection};

use super::Result;
use super::chunks::{Body, Chunk, Codec};
use super::rows::{JobValues, to_i64, to_json};
use crate::domain::{JobId, JobRecord};
use crate::store::StoreFailure;
use crate::store::lease::EVENTS_CHANNEL;
use crate::store::{Fence, JobUpdate, NewLease, WriteBatch};

/// A batch rendered into bindable rows.
pub(super) struct Rows<'a> {
    pub inserts: Vec<(&'a JobRecord, JobValues)>,
    pub chunks: Vec<Chunk<'a>>,
    pub updates: Vec<(&'a JobUpdate, Option<String>)>,
    pub fences: &'a [Fence],
    pub leases: &'a [NewLease],
}

impl<'a> Rows<'a> {
    pub fn of(batch: &'a WriteBatch, codec: Codec) -> Result<Rows<'a>> {
        Ok(Rows {
            inserts: batch
                .inserts
                .iter()
                .map(|job| Ok((job, JobValues::of(job)?)))
                .collect::<Result<_>>()?,
            chunks: super::chunks::pack(&batch.events, codec)?,
            updates: latest_updates(&batch.updates)?,
            fences: &batch.fences,
            leases: &batch.leases,
        })
    }

    /// Statements [`sqlite`] will run.
    pub fn sqlite_statements(&self) -> usize {
        buckets(self.inserts.len()) + buckets(self.chunks.len()) + buckets(self.updates.len())
    }
}

/// The last update of each job in a batch (updates write the whole mutable state, so earlier
/// ones are superseded), in batch order, with `result` rendered.
fn latest_updates(updates: &[JobUpdate]) -> Result<Vec<(&JobUpdate, Option<String>)>> {
    let mut seen = HashSet::new();
    let mut latest = Vec::new();
    for update in updates.iter().rev() {
        if seen.insert(update.id.as_str()) {
            latest.push((update, update.result.as_ref().map(to_json).transpose()?));
        }
    }
    latest.reverse();
    Ok(latest)
}

/// Most rows one SQLite statement binds (7 columns × 256 stays far below SQLite's 32766
/// variables).
const SQLITE_MAX_ROWS: usize = 256;

/// The row counts `n` rows are cut into: 256s, then the binary digits of the rest.
fn bucket_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = n / SQLITE_MAX_ROWS;
    let rest = n % SQLITE_MAX_ROWS;
    std::iter::repeat_n(SQLITE_MAX_ROWS, full).chain(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

fn buckets(n: usize) -> usize {
    bucket_sizes(n).count()
}

/// `head (?, ?, …), (?, ?, …) tail` with `rows` groups of `columns` placeholders.
fn values_sql(head: &str, columns: usize, rows: usize, tail: &str) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (group.len() + 2));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&group);
    }
    sql.push_str(tail);
    sql
}

/// Runs `verb conflict head VALUES-list tail` over `items` in bucketed statements, binding each
/// item with `$bind` (`|query, item| query.bind(..)…`).
macro_rules! sqlite_values {
    ($conn:expr, $items:expr, $verb:expr, $conflict:expr, $head:expr, $columns:expr, $tail:expr, |$query:ident, $item:ident| $bind:expr) => {{
        let mut rest = &$items[..];
        for rows in bucket_sizes(rest.len()) {
            let (now, later) = rest.split_at(rows);
            rest = later;
            let sql = values_sql(&[$verb, $conflict, $head].concat(), $columns, rows, $tail);
            let mut $query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for $item in now {
                $query = $bind;
            }
            $query.execute(&mut *$conn).await?;
        }
    }};
}

/// Writes the rows through one SQLite connection: inside a transaction (`in_transaction`) or, for
/// a batch of one statement, as that statement's own.
///
/// In a transaction the statements say `OR FAIL`. With SQLite's default (`ABORT`) a statement
/// that writes several rows inside a transaction must be able to undo just itself, so SQLite
/// copies every page it is about to change to a statement journal first — a temp file, as
/// much again as the WAL (measured: 37 MB of journal beside 19 MB of WAL for the service
/// bench's 4000 jobs). `FAIL` needs no journal: a failing statement keeps the rows it wrote,
/// and the error rolls the whole transaction back here anyway. A lone statement runs in
/// autocommit mode, where SQLite keeps no statement journal and `FAIL` would commit a partial
/// statement, so it keeps the default.
pub(super) async fn sqlite(
    conn: &mut SqliteConnection,
    rows: &Rows<'_>,
    in_transaction: bool,
) -> Result<()> {
    let conflict = if in_transaction { " OR FAIL" } else { "" };
    sqlite_values!(
        conn,
        rows.inserts,
        "INSERT",
        conflict,
        " INTO jobs (id, status, created_at, updated_at, spec, result, last_event_id) VALUES ",
        7,
        "",
        |query, item| {
            let (job, values) = item;
            query
                .bind(job.id.as_str())
                .bind(values.status)
                .bind(job.created_at)
                .bind(job.updated_at)
                .bind(values.spec.as_str())
                .bind(values.result.as_deref())
                .bind(values.last_event_id)
        }
    );
    sqlite_values!(
        conn,
        rows.chunks,
        "INSERT",
        conflict,
        " INTO event_chunks (job_id, first_id, last_id, events) VALUES ",
        4,
        "",
        |query, chunk| {
            let query = query
                .bind(chunk.job_id)
                .bind(chunk.first_id)
                .bind(chunk.last_id);
            match &chunk.events {
                Body::Text(text) => query.bind(text.as_str()),
                Body::Lz4(packed) => query.bind(packed.as_slice()),
            }
        }
    );
    sqlite_values!(
        conn,
        rows.updates,
        "UPDATE",
        conflict,
        " jobs SET status = u.column2, updated_at = u.column3, result = u.column4, \
         last_event_id = u.column5 FROM (VALUES ",
        5,
        ") AS u WHERE jobs.id = u.column1",
        |query, item| {
            let (update, result) = item;
            query
                .bind(update.id.as_str())
                .bind(update.status.as_str())
                .bind(update.updated_at)
                .bind(result.as_deref())
                .bind(to_i64(update.last_event_id))
        }
    );
    Ok(())
}

/// Writes the rows through one Postgres transaction: one `UNNEST` statement per kind. Jobs
/// with a [`Fence`] are locked `FOR SHARE` (no claim commits before this transaction does) and
/// their chunks and updates are left out when their lease epoch moved on (returned). Every job
/// whose events or row were written is announced on [`EVENTS_CHANNEL`] (delivered at commit).
pub(super) async fn postgres(
    conn: &mut PgConnection,
    rows: &Rows<'_>,
    fences: &[Fence],
) -> Result<Vec<JobId>> {
    if !rows.inserts.is_empty() {
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut created = Vec::new();
        let mut updated = Vec::new();
        let mut specs = Vec::new();
        let mut results = Vec::new();
        let mut last_ids = Vec::new();
        for (job, values) in &rows.inserts {
            ids.push(job.id.as_str());
            statuses.push(values.status);
            created.push(job.created_at);
            updated.push(job.updated_at);
            specs.push(values.spec.as_str());
            results.push(values.result.as_deref());
            last_ids.push(values.last_event_id);
        }
        sqlx::query(
            "INSERT INTO jobs (id, status, created_at, updated_at, spec, result, last_event_id) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], \
             $5::text[], $6::text[], $7::bigint[])",
        )
        .bind(ids)
        .bind(statuses)
        .bind(created)
        .bind(updated)
        .bind(specs)
        .bind(results)
        .bind(last_ids)
        .execute(&mut *conn)
        .await?;
    }
    if !rows.leases.is_empty() {
        let ids: Vec<&str> = rows.leases.iter().map(|l| l.job_id.as_str()).collect();
        let owners: Vec<&str> = rows.leases.iter().map(|l| l.owner.as_str()).collect();
        let until: Vec<f64> = rows.leases.iter().map(|l| l.until).collect();
        sqlx::query(
            "UPDATE jobs SET owner = u.owner, lease_until = u.until, lease_epoch = 1 \
             FROM UNNEST($1::text[], $2::text[], $3::float8[]) AS u (id, owner, until) \
             WHERE jobs.id = u.id",
        )
        .bind(ids)
        .bind(owners)
        .bind(until)
        .execute(&mut *conn)
        .await?;
    }
    let fenced = check_fences(&mut *conn, fences).await?;
    let kept = |job_id: &str| fenced.is_empty() || !fenced.iter().any(|f| f == job_id);
    let mut touched: HashSet<&str> = HashSet::new();
    if !rows.chunks.is_empty() {
        let mut job_ids = Vec::with_capacity(rows.chunks.len());
        let mut firsts = Vec::with_capacity(rows.chunks.len());
        let mut lasts = Vec::with_capacity(rows.chunks.len());
        let mut texts = Vec::with_capacity(rows.chunks.len());
        for chunk in rows.chunks.iter().filter(|c| kept(c.job_id)) {
            touched.insert(chunk.job_id);
            job_ids.push(chunk.job_id);
            firsts.push(chunk.first_id);
            lasts.push(chunk.last_id);
            match &chunk.events {
                Body::Text(text) => texts.push(text.as_str()),
                Body::Lz4(_) => {
                    return Err(StoreFailure(
                        "compressed event chunk on postgres (packed with the wrong codec)".into(),
                    ));
                }
            }
        }
        sqlx::query(
            "INSERT INTO event_chunks (job_id, first_id, last_id, events) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[])",
        )
        .bind(job_ids)
        .bind(firsts)
        .bind(lasts)
        .bind(texts)
        .execute(&mut *conn)
        .await?;
    }
    if !rows.updates.is_empty() {
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut updated = Vec::new();
        let mut results = Vec::new();
        let mut last_ids = Vec::new();
        for (update, result) in rows.updates.iter().filter(|(u, _)| kept(&u.id)) {
            touched.insert(update.id.as_str());
            ids.push(update.id.as_str());
            statuses.push(update.status.as_str());
            updated.push(update.updated_at);
            results.push(result.as_deref());
            last_ids.push(to_i64(update.last_event_id));
        }
        sqlx::query(
            "UPDATE jobs SET status = u.status, updated_at = u.updated_at, result = u.result, \
             last_event_id = u.last_event_id \
             FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::text[], $5::bigint[]) \
             AS u (id, status, updated_at, result, last_event_id) WHERE jobs.id = u.id",
        )
        .bind(ids)
        .bind(statuses)
        .bind(updated)
        .bind(results)
        .bind(last_ids)
        .execute(&mut *conn)
        .await?;
    }
    if !touched.is_empty() {
        let touched: Vec<&str> = touched.into_iter().collect();
        sqlx::query("SELECT pg_notify($1, id) FROM UNNEST($2::text[]) AS id")
            .bind(EVENTS_CHANNEL)
            .bind(touched)
            .execute(&mut *conn)
            .await?;
    }
    Ok(fenced)
}

/// The fenced jobs among `fences`: those whose row is gone or has another lease epoch. The
/// rows are locked `FOR SHARE` until the transaction ends, so a claim (which updates them)
/// cannot commit between this check and the writes it guards.
async fn check_fences(conn: &mut PgConnection, fences: &[Fence]) -> Result<Vec<JobId>> {
    if fences.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = fences.iter().map(|f| f.job_id.as_str()).collect();
    let current: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, lease_epoch FROM jobs WHERE id = ANY($1::text[]) ORDER BY id FOR SHARE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let epochs: std::collections::HashMap<&str, i64> =
        current.iter().map(|(id, e)| (id.as_str(), *e)).collect();
    Ok(fences
        .iter()
        .filter(|f| epochs.get(f.job_id.as_str()) != Some(&to_i64(f.epoch)))
        .map(|f| f.job_id.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_into_few_power_of_two_statements() {
        assert_eq!(bucket_sizes(0).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(bucket_sizes(1).collect::<Vec<_>>(), vec![1]);
        assert_eq!(bucket_sizes(200).collect::<Vec<_>>(), vec![128, 64, 8]);
        assert_eq!(bucket_sizes(513).collect::<Vec<_>>(), vec![256, 256, 1]);
        for n in 0..2000 {
            assert_eq!(bucket_sizes(n).sum::<usize>(), n);
        }
    }

    #[test]
    fn values_lists_have_one_group_per_row() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b) VALUES ", 2, 3, ""),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)"
        );
    }
}
