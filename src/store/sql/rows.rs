//! Row shapes of the SQL stores and their conversions to domain types. Each row type decodes from
//! SQLite and Postgres rows alike (one generic `FromRow` per type), so query code is written once.

use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};

use super::Result;
use crate::domain::{Example, JobRecord, JobStatus};
use crate::store::StoreFailure;

/// Implements `FromRow` for any backend whose rows decode every field's type, reading each field
/// from the column of the same name.
macro_rules! from_row {
    ($ty:ident { $($field:ident : $fty:ty),* $(,)? }) => {
        impl<'r, R: Row> FromRow<'r, R> for $ty
        where
            &'r str: ColumnIndex<R>,
            $($fty: Decode<'r, R::Database> + Type<R::Database>,)*
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                Ok($ty { $($field: row.try_get(stringify!($field))?,)* })
            }
        }
    };
}

/// Columns of `jobs`, as `job_columns!()` selects them.
pub(super) struct JobRow {
    id: String,
    status: String,
    created_at: f64,
    updated_at: f64,
    spec: String,
    result: Option<String>,
    last_event_id: i64,
}
from_row!(JobRow { id: String, status: String, created_at: f64, updated_at: f64, spec: String,
    result: Option<String>, last_event_id: i64 });

/// The `SELECT` list matching [`JobRow`], as a literal for `concat!`.
macro_rules! job_columns {
    () => {
        "id, status, created_at, updated_at, spec, result, last_event_id"
    };
}
pub(super) use job_columns;

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreFailure;

    fn try_from(row: JobRow) -> Result<Self> {
        let status = JobStatus::parse(&row.status)
            .ok_or_else(|| corrupt("jobs.status", &row.id, &row.status))?;
        let spec = serde_json::from_str(&row.spec).map_err(|e| corrupt("jobs.spec", &row.id, e))?;
        let result = row
            .result
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("jobs.result", &row.id, e))?;
        let progress = result
            .as_ref()
            .and_then(crate::domain::job::Progress::from_result)
            .unwrap_or_default();
        Ok(JobRecord {
            progress,
            id: row.id,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            spec,
            result,
            last_event_id: u64::try_from(row.last_event_id).unwrap_or(0),
        })
    }
}

/// A job's columns as bound values.
pub(super) struct JobValues {
    pub status: &'static str,
    pub spec: String,
    pub result: Option<String>,
    pub last_event_id: i64,
}

impl JobValues {
    pub fn of(job: &JobRecord) -> Result<JobValues> {
        Ok(JobValues {
            status: job.status.as_str(),
            spec: to_json(&job.spec)?,
            result: job.result.as_ref().map(to_json).transpose()?,
            last_event_id: to_i64(job.last_event_id),
        })
    }
}

/// Columns of `examples`.
pub(super) struct ExampleRow {
    id: String,
    input: String,
    expected: Option<String>,
    meta: String,
}
from_row!(ExampleRow { id: String, input: String, expected: Option<String>, meta: String });

impl TryFrom<ExampleRow> for Example {
    type Error = StoreFailure;

    fn try_from(row: ExampleRow) -> Result<Self> {
        let meta =
            serde_json::from_str(&row.meta).map_err(|e| corrupt("examples.meta", &row.id, e))?;
        Ok(Example {
            id: row.id,
            input: row.input,
            expected: row.expected,
            meta,
        })
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreFailure(format!("cannot encode JSON: {e}")))
}

/// Ids, counts and limits as SQL integers (saturating: `usize::MAX` limits mean "all").
pub(super) fn to_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn corrupt(column: &str, key: &str, err: impl std::fmt::Display) -> StoreFailure {
    StoreFailure(format!("unreadable {column} of {key}: {err}"))
}

/// A job row a claim returned: the job, its new lease epoch and any command left for it.
pub(super) struct ClaimRow {
    id: String,
    status: String,
    created_at: f64,
    updated_at: f64,
    spec: String,
    result: Option<String>,
    last_event_id: i64,
    lease_epoch: i64,
    requested: Option<String>,
}
from_row!(ClaimRow { id: String, status: String, created_at: f64, updated_at: f64, spec: String,
    result: Option<String>, last_event_id: i64, lease_epoch: i64, requested: Option<String> });

impl TryFrom<ClaimRow> for crate::store::Claimed {
    type Error = StoreFailure;

    fn try_from(row: ClaimRow) -> Result<Self> {
        let epoch = u64::try_from(row.lease_epoch).unwrap_or(0);
        let requested = row.requested;
        let record = JobRecord::try_from(JobRow {
            id: row.id,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            spec: row.spec,
            result: row.result,
            last_event_id: row.last_event_id,
        })?;
        Ok(crate::store::Claimed {
            record,
            epoch,
            requested,
        })
    }
}
