//! One group commit in SQL: a [`WriteBatch`] rendered into owned rows — new job rows, event
//! chunks ([`super::chunks`]), then row updates — and, on Postgres, written as one set-based
//! statement per kind (`UNNEST` of one array per column) in one transaction, however many jobs it
//! touches. (SQLite writes the same rows through its raw handle, [`super::direct`].) The rows own
//! their values so that a commit can run on another thread than the one that rendered them.

use std::collections::HashSet;

use sqlx::PgConnection;

use super::chunks::{Body, Chunk, Codec};
use super::rows::{JobValues, to_i64, to_json};
use crate::domain::JobRecord;
use crate::error::{Error, Result};
use crate::store::{JobUpdate, WriteBatch};

/// A batch rendered into bindable rows.
pub(super) struct Rows {
    pub inserts: Vec<NewJob>,
    pub chunks: Vec<Chunk>,
    pub updates: Vec<RowUpdate>,
}

/// A new row of `jobs`.
pub(super) struct NewJob {
    pub id: String,
    pub created_at: f64,
    pub updated_at: f64,
    pub values: JobValues,
}

/// The mutable columns of a row of `jobs`, `result` rendered.
pub(super) struct RowUpdate {
    pub id: String,
    pub status: &'static str,
    pub updated_at: f64,
    pub result: Option<String>,
    pub last_event_id: i64,
}

impl Rows {
    pub fn of(batch: &WriteBatch, codec: Codec) -> Result<Rows> {
        Ok(Rows {
            inserts: batch
                .inserts
                .iter()
                .map(NewJob::of)
                .collect::<Result<_>>()?,
            chunks: super::chunks::pack(&batch.events, codec)?,
            updates: latest_updates(&batch.updates)?,
        })
    }

    /// Rows to write.
    pub fn len(&self) -> usize {
        self.inserts.len() + self.chunks.len() + self.updates.len()
    }
}

impl NewJob {
    fn of(job: &JobRecord) -> Result<NewJob> {
        Ok(NewJob {
            id: job.id.clone(),
            created_at: job.created_at,
            updated_at: job.updated_at,
            values: JobValues::of(job)?,
        })
    }
}

/// The last update of each job in a batch (updates write the whole mutable state, so earlier
/// ones are superseded), in batch order, with `result` rendered.
fn latest_updates(updates: &[JobUpdate]) -> Result<Vec<RowUpdate>> {
    let mut seen = HashSet::new();
    let mut latest = Vec::new();
    for update in updates.iter().rev() {
        if seen.insert(update.id.as_str()) {
            latest.push(RowUpdate {
                id: update.id.clone(),
                status: update.status.as_str(),
                updated_at: update.updated_at,
                result: update.result.as_ref().map(to_json).transpose()?,
                last_event_id: to_i64(update.last_event_id),
            });
        }
    }
    latest.reverse();
    Ok(latest)
}

/// Writes the rows through one Postgres transaction: one `UNNEST` statement per kind.
pub(super) async fn postgres(conn: &mut PgConnection, rows: &Rows) -> Result<()> {
    if !rows.inserts.is_empty() {
        let mut ids = Vec::new();
        let mut statuses = Vec::new();
        let mut created = Vec::new();
        let mut updated = Vec::new();
        let mut specs = Vec::new();
        let mut results = Vec::new();
        let mut last_ids = Vec::new();
        for NewJob {
            id,
            created_at,
            updated_at,
            values,
        } in &rows.inserts
        {
            ids.push(id.as_str());
            statuses.push(values.status);
            created.push(*created_at);
            updated.push(*updated_at);
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
    if !rows.chunks.is_empty() {
        let mut job_ids = Vec::with_capacity(rows.chunks.len());
        let mut firsts = Vec::with_capacity(rows.chunks.len());
        let mut lasts = Vec::with_capacity(rows.chunks.len());
        let mut texts = Vec::with_capacity(rows.chunks.len());
        for chunk in &rows.chunks {
            job_ids.push(chunk.job_id.as_str());
            firsts.push(chunk.first_id);
            lasts.push(chunk.last_id);
            match &chunk.events {
                Body::Text(text) => texts.push(text.as_str()),
                Body::Lz4(_) => {
                    return Err(Error::Store(
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
        for update in &rows.updates {
            ids.push(update.id.as_str());
            statuses.push(update.status);
            updated.push(update.updated_at);
            results.push(update.result.as_deref());
            last_ids.push(update.last_event_id);
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
    Ok(())
}
