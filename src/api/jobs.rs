//! Jobs on the wire: their status, state, summary and progress (domain → wire), and the
//! create request (wire → a validated [`JobSpec`]).

use super::gepa::options_from_pb;
use super::values::{json_from_struct, timestamp_from_epoch};
use super::{Missing, limits, pb};
use crate::domain::job::{JobRecord, Progress};
use crate::domain::{Budget, DatasetRef, Example, JobSpec, JobStatus, Mode, Objective};
use crate::error::{Error, FieldError};

// ---------- status ----------

impl From<JobStatus> for pb::JobStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Pending => pb::JobStatus::Pending,
            JobStatus::Running => pb::JobStatus::Running,
            JobStatus::Finished => pb::JobStatus::Finished,
            JobStatus::Failed => pb::JobStatus::Failed,
            JobStatus::Cancelled => pb::JobStatus::Cancelled,
            JobStatus::Shutdown => pb::JobStatus::Shutdown,
            JobStatus::Paused => pb::JobStatus::Paused,
        }
    }
}

impl TryFrom<pb::JobStatus> for JobStatus {
    type Error = Missing;
    fn try_from(status: pb::JobStatus) -> Result<Self, Missing> {
        Ok(match status {
            pb::JobStatus::Unspecified => return Err(Missing("status")),
            pb::JobStatus::Pending => JobStatus::Pending,
            pb::JobStatus::Running => JobStatus::Running,
            pb::JobStatus::Finished => JobStatus::Finished,
            pb::JobStatus::Failed => JobStatus::Failed,
            pb::JobStatus::Cancelled => JobStatus::Cancelled,
            pb::JobStatus::Shutdown => JobStatus::Shutdown,
            pb::JobStatus::Paused => JobStatus::Paused,
        })
    }
}

/// The domain status of a raw wire value; `None` for unspecified or unknown values.
pub fn job_status(raw: i32) -> Option<JobStatus> {
    let status = pb::JobStatus::try_from(raw).ok()?;
    JobStatus::try_from(status).ok()
}

// ---------- job ids and list queries ----------

/// A job id a request names: 1 to [`limits::MAX_JOB_ID_BYTES`] bytes (ids we issue are UUIDs).
pub fn job_id(raw: &str) -> Result<&str, Error> {
    if raw.is_empty() || raw.len() > limits::MAX_JOB_ID_BYTES {
        let message = format!("job_id must be 1 to {} bytes", limits::MAX_JOB_ID_BYTES);
        return Err(Error::invalid(&["job_id"], message));
    }
    Ok(raw)
}

/// A job id as a REST path segment: the shape the server issues and documents, 1 to
/// [`limits::MAX_JOB_ID_BYTES`] of `[A-Za-z0-9_-]`; else the message to answer with.
pub fn job_id_path_segment(id: &str) -> Result<(), String> {
    let shape_ok = (1..=limits::MAX_JOB_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if shape_ok {
        return Ok(());
    }
    Err(format!(
        "job_id must be 1 to {} of A-Z, a-z, 0-9, _ and -",
        limits::MAX_JOB_ID_BYTES
    ))
}

/// Longest page token we issue: an offset of at most 18 digits.
const PAGE_TOKEN_DIGITS: usize = 18;

/// A `ListJobs` request, decoded: the statuses to keep (empty: all), the page size as asked
/// (0: the default) and the offset its page token stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct ListJobsQuery {
    pub statuses: Vec<JobStatus>,
    pub page_size: usize,
    pub offset: usize,
}

impl TryFrom<pb::ListJobsRequest> for ListJobsQuery {
    type Error = Error;
    fn try_from(request: pb::ListJobsRequest) -> Result<Self, Error> {
        let pb::ListJobsRequest {
            page_size,
            page_token,
            status,
        } = request;
        // Tokens are the offsets we issue: digits only (not "+5"), and not too many of them.
        let issued =
            page_token.len() <= PAGE_TOKEN_DIGITS && page_token.bytes().all(|b| b.is_ascii_digit());
        let offset = if page_token.is_empty() {
            0
        } else {
            page_token
                .parse::<usize>()
                .ok()
                .filter(|_| issued)
                .ok_or_else(|| Error::invalid(&["page_token"], "page_token is not one we issued"))?
        };
        let statuses = status
            .into_iter()
            .map(|raw| {
                job_status(raw).ok_or_else(|| Error::invalid(&["status"], "unknown job status"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ListJobsQuery {
            statuses,
            page_size: page_size as usize,
            offset,
        })
    }
}

/// One page of jobs on the wire (without results); `next_offset` becomes the next page token.
pub fn list_jobs_response(jobs: &[JobRecord], next_offset: Option<usize>) -> pb::ListJobsResponse {
    pb::ListJobsResponse {
        jobs: jobs.iter().map(|job| job_to_pb(job, false)).collect(),
        next_page_token: next_offset.map(|o| o.to_string()).unwrap_or_default(),
    }
}

// ---------- job state ----------

/// A job's state on the wire; `with_result` is false for list pages (results can be large).
pub fn job_to_pb(record: &JobRecord, with_result: bool) -> pb::Job {
    let JobRecord {
        id,
        status,
        created_at,
        updated_at,
        spec,
        result,
        last_event_id,
        progress,
    } = record;
    pb::Job {
        job_id: id.clone(),
        status: pb::JobStatus::from(*status) as i32,
        created_at: Some(timestamp_from_epoch(*created_at)),
        updated_at: Some(timestamp_from_epoch(*updated_at)),
        result: result
            .as_ref()
            .filter(|_| with_result)
            .map(|r| r.clone().into()),
        last_event_id: *last_event_id,
        request: Some(request_summary(spec)),
        progress: Some(progress.clone().into()),
    }
}

/// What a job list shows of its request (not a conversion of the whole spec).
pub fn request_summary(spec: &JobSpec) -> pb::RequestSummary {
    let dataset = match (&spec.dataset, spec.examples.is_empty()) {
        (Some(d), _) => d.name.clone(),
        (None, false) => "inline".to_string(),
        (None, true) => String::new(),
    };
    pb::RequestSummary {
        mode: match spec.mode {
            Mode::Default => "default",
            Mode::Gepa => "gepa",
            Mode::Eval => "eval",
        }
        .to_string(),
        prompt_head: spec
            .prompt
            .chars()
            .take(limits::PROMPT_HEAD_CHARS)
            .collect(),
        dataset,
        examples: u32::try_from(spec.examples.len()).unwrap_or(u32::MAX),
        max_generations: spec.budget.max_generations,
        max_rollouts: spec.budget.max_rollouts,
        max_cost: spec.budget.max_cost,
        max_tokens: spec.budget.max_tokens,
        max_wall_time_s: spec.budget.max_wall_time_s,
    }
}

wire_fields!(
    pb::ProgressSummary,
    Progress {
        same: [
            generation,
            metric_calls_used,
            metric_calls_budget,
            best_score,
            cost_usd,
        ],
    }
);

// ---------- the create request ----------

/// A decoded, validated create request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub spec: JobSpec,
    pub idempotency_key: Option<String>,
}

wire_fields!(
    pb::Budget,
    Budget {
        same: [
            max_generations,
            max_rollouts,
            max_cost,
            max_tokens,
            max_wall_time_s,
        ],
    }
);

wire_fields!(
    pb::DatasetRef,
    DatasetRef {
        same: [name, split],
    }
);

impl From<Example> for pb::Example {
    fn from(e: Example) -> Self {
        let Example {
            id,
            input,
            expected,
            meta,
        } = e;
        pb::Example {
            id,
            input,
            expected,
            meta: Some(super::values::struct_from_json(&meta)),
        }
    }
}

/// An example as sent (a missing id gets a UUID); its `meta` depth is checked by the caller.
impl From<pb::Example> for Example {
    fn from(e: pb::Example) -> Self {
        let pb::Example {
            id,
            input,
            expected,
            meta,
        } = e;
        Example {
            id: if id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                id
            },
            input,
            expected,
            meta: meta.as_ref().map(json_from_struct).unwrap_or_default(),
        }
    }
}

/// Decodes and validates an `OptimizeRequest`; every problem is reported at once.
pub fn create_request(
    req: pb::OptimizeRequest,
    max_iterations: u32,
) -> Result<CreateRequest, Error> {
    let pb::OptimizeRequest {
        prompt,
        context,
        mode,
        dataset,
        metrics,
        budget,
        examples,
        objectives,
        seed,
        target_model_id,
        temperature,
        max_tokens,
        tournament_size,
        recombination_rate,
        early_stop_patience,
        evaluation_rubric,
        iterations,
        idempotency_key,
        gepa,
    } = req;
    let mut errors: Vec<FieldError> = Vec::new();
    let mode = match pb::Mode::try_from(mode) {
        Ok(pb::Mode::Unspecified | pb::Mode::Default) => Mode::Default,
        Ok(pb::Mode::Gepa) => Mode::Gepa,
        Err(_) => {
            errors.push(FieldError::new(&["mode"], "mode must be default or gepa"));
            Mode::Default
        }
    };
    let objectives = if objectives.is_empty() {
        None
    } else {
        let mut parsed = Vec::new();
        for (i, name) in objectives.iter().enumerate() {
            match Objective::parse(name) {
                Some(o) => parsed.push(o),
                None => errors.push(FieldError::new(
                    &["objectives", &i.to_string()],
                    format!("unknown objective {name:?}; expected brevity, diversity or coverage"),
                )),
            }
        }
        Some(parsed)
    };
    let mut spec = JobSpec {
        prompt,
        context: context.as_ref().map(json_from_struct),
        mode,
        dataset: dataset.map(Into::into),
        metrics,
        budget: budget.map(Into::into).unwrap_or_default(),
        examples: examples.into_iter().map(Into::into).collect(),
        objectives,
        seed: seed.filter(|s| *s != 0),
        target_model_id: target_model_id.filter(|m| !m.is_empty()),
        temperature,
        max_tokens,
        tournament_size,
        recombination_rate,
        early_stop_patience,
        evaluation_rubric,
        iterations: 1,
        gepa: options_from_pb(gepa, &mut errors),
        eval_name: None,
        branched_from: None,
    };
    let iterations = i64::from(iterations.unwrap_or(1));
    validated(&mut spec, iterations, max_iterations, errors)?;
    Ok(CreateRequest {
        spec,
        idempotency_key: idempotency_key_from_pb(idempotency_key)?,
    })
}

/// Validates the decoded spec ([`JobSpec::validate`]) and reports its errors after the
/// decoder's `errors`.
pub(super) fn validated(
    spec: &mut JobSpec,
    iterations: i64,
    max_iterations: u32,
    mut errors: Vec<FieldError>,
) -> Result<(), Error> {
    match spec.validate(iterations, max_iterations) {
        Ok(()) if errors.is_empty() => Ok(()),
        Ok(()) => Err(Error::Validation(errors)),
        Err(Error::Validation(more)) => {
            errors.extend(more);
            Err(Error::Validation(errors))
        }
        Err(other) => Err(other),
    }
}

/// An idempotency key as sent: empty means none; longer than
/// [`limits::MAX_IDEMPOTENCY_KEY_BYTES`] is a validation error.
pub fn idempotency_key_from_pb(key: String) -> Result<Option<String>, Error> {
    if key.len() > limits::MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Error::invalid(
            &["idempotency_key"],
            format!(
                "idempotency_key must be at most {} bytes",
                limits::MAX_IDEMPOTENCY_KEY_BYTES
            ),
        ));
    }
    Ok(Some(key).filter(|k| !k.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(page_token: &str, status: Vec<i32>) -> Result<ListJobsQuery, Error> {
        ListJobsQuery::try_from(pb::ListJobsRequest {
            page_size: 7,
            page_token: page_token.into(),
            status,
        })
    }

    #[test]
    fn a_list_query_takes_only_the_page_tokens_we_issue() {
        let first = query("", vec![pb::JobStatus::Running as i32]).expect("first page");
        assert_eq!(
            first,
            ListJobsQuery {
                statuses: vec![JobStatus::Running],
                page_size: 7,
                offset: 0,
            }
        );
        assert_eq!(query("50", vec![]).expect("ours").offset, 50);
        for forged in ["+5", "-1", "5x", "1234567890123456789"] {
            assert!(query(forged, vec![]).is_err(), "{forged:?} is not ours");
        }
        assert!(query("", vec![0]).is_err(), "unspecified status");
        assert!(query("", vec![999]).is_err(), "unknown status");
    }

    #[test]
    fn a_job_id_is_1_to_128_bytes() {
        assert_eq!(job_id("j-1").expect("valid"), "j-1");
        assert!(job_id("").is_err());
        assert!(job_id(&"a".repeat(limits::MAX_JOB_ID_BYTES)).is_ok());
        assert!(job_id(&"a".repeat(limits::MAX_JOB_ID_BYTES + 1)).is_err());
        assert!(job_id_path_segment("0f3a_B-9").is_ok());
        for bad in ["", "a/b", "a.b", &"a".repeat(limits::MAX_JOB_ID_BYTES + 1)] {
            assert_eq!(
                job_id_path_segment(bad),
                Err("job_id must be 1 to 128 of A-Z, a-z, 0-9, _ and -".to_string()),
                "{bad:?}"
            );
        }
    }
}
