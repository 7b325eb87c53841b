//! A job as REST shows it: the create answer, a job's state and the admin list, mapped from
//! the protobuf responses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::values::epoch_from_timestamp;
use crate::api::{jobs, pb};

/// `POST /v1/optimize` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedJob {
    pub job_id: String,
    /// When auth is on: a short-lived token for `?access_token=` on this job's events route
    /// only (browsers' `EventSource` cannot send headers). See `POST /v1/optimize/{job_id}/stream-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_token: Option<String>,
}

/// A job's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobState {
    pub job_id: String,
    /// `pending`, `running`, `paused`, `finished`, `failed`, `cancelled` or `shutdown`.
    pub status: String,
    /// Unix epoch seconds.
    pub created_at: f64,
    /// Unix epoch seconds.
    pub updated_at: f64,
    /// Null until terminal; `{proposal, lessons, scores, target_model, rubric}` or `{error}`.
    /// A GEPA job that ended without finishing (cancelled, shutdown, failed) holds its best
    /// result so far, with `error` saying how it ended.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// What was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSummary>,
    /// How far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressSummary>,
}

/// One row of the admin list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub job_id: String,
    /// `pending`, `running`, `paused`, `finished`, `failed`, `cancelled` or `shutdown`.
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressSummary>,
}

/// A job's request in short.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RequestSummary {
    /// `default`, `gepa` or `eval`.
    pub mode: String,
    /// The first 120 characters of the prompt.
    pub prompt_head: String,
    /// The dataset pack, `inline` for inline examples, or null.
    pub dataset: Option<String>,
    /// Number of inline examples.
    pub examples: u32,
    pub budget: BudgetSummary,
}

/// The budget a job asked for (null = server default or unlimited).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetSummary {
    pub max_generations: Option<u32>,
    pub max_rollouts: Option<u64>,
    pub max_cost: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_wall_time_s: Option<f64>,
}

/// How far a job got.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressSummary {
    /// Iterations completed.
    pub generation: u32,
    pub metric_calls_used: u64,
    /// The metric-call budget, when one applies.
    pub metric_calls_budget: Option<u64>,
    /// Best mean validation score so far (GEPA), when known.
    pub best_score: Option<f64>,
    pub cost_usd: f64,
}

impl RequestSummary {
    fn from_pb(r: pb::RequestSummary) -> RequestSummary {
        RequestSummary {
            mode: r.mode,
            prompt_head: r.prompt_head,
            dataset: Some(r.dataset).filter(|d| !d.is_empty()),
            examples: r.examples,
            budget: BudgetSummary {
                max_generations: r.max_generations,
                max_rollouts: r.max_rollouts,
                max_cost: r.max_cost,
                max_tokens: r.max_tokens,
                max_wall_time_s: r.max_wall_time_s,
            },
        }
    }
}

impl ProgressSummary {
    fn from_pb(p: pb::ProgressSummary) -> ProgressSummary {
        ProgressSummary {
            generation: p.generation,
            metric_calls_used: p.metric_calls_used,
            metric_calls_budget: p.metric_calls_budget,
            best_score: p.best_score,
            cost_usd: p.cost_usd,
        }
    }
}

/// `GET /v1/admin/jobs` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

fn status_name(raw: i32) -> String {
    jobs::job_status(raw)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

impl JobState {
    pub fn from_pb(job: pb::Job) -> JobState {
        let result = job.result.as_ref().and_then(crate::api::json::result_json);
        JobState {
            job_id: job.job_id,
            status: status_name(job.status),
            created_at: epoch_from_timestamp(job.created_at.as_ref()),
            updated_at: epoch_from_timestamp(job.updated_at.as_ref()),
            result,
            request: job.request.map(RequestSummary::from_pb),
            progress: job.progress.map(ProgressSummary::from_pb),
        }
    }
}

impl JobList {
    pub fn from_pb(list: pb::ListJobsResponse) -> JobList {
        JobList {
            jobs: list
                .jobs
                .into_iter()
                .map(|job| JobSummary {
                    job_id: job.job_id,
                    status: status_name(job.status),
                    created_at: epoch_from_timestamp(job.created_at.as_ref()),
                    updated_at: epoch_from_timestamp(job.updated_at.as_ref()),
                    request: job.request.map(RequestSummary::from_pb),
                    progress: job.progress.map(ProgressSummary::from_pb),
                })
                .collect(),
            next_page_token: Some(list.next_page_token).filter(|t| !t.is_empty()),
        }
    }
}
