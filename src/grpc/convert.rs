//! Every conversion between protobuf wire types and domain types, and between [`Error`] and
//! [`tonic::Status`]. Validation of decoded requests is delegated to the domain.

use std::collections::{BTreeMap, HashMap};

use prost_types::{Struct, Timestamp, value::Kind};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::convert_gepa;
use super::pb;
use crate::domain::event::ObjectiveScores;
use crate::domain::job::{DefaultResult, ErrorResult};
use crate::domain::{
    Budget, DatasetRef, Event, EventPayload, Example, JobRecord, JobResult, JobSpec, JobStatus,
    Mode, Objective,
};
use crate::error::{Error, ErrorCode, FieldError};

/// The `domain` of every `ErrorInfo` this service sends.
pub const ERROR_DOMAIN: &str = "innerloop";

// ---------- errors ----------

/// A domain error as a gRPC status: the code from [`ErrorCode::grpc_code`], an `ErrorInfo`
/// whose reason is the contract's code (and whose `details` metadata is the JSON details), a
/// `BadRequest` for validation errors and a `RetryInfo` for rate limits.
pub fn status_from_error(err: &Error) -> Status {
    let code = err.code();
    let mut metadata = HashMap::new();
    metadata.insert("details".to_string(), err.details().to_string());
    let mut details = ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, metadata);
    if let Error::Validation(errors) = err {
        for field in errors {
            details.add_bad_request_violation(field.loc.join("."), field.msg.clone());
        }
    }
    if let Error::RateLimited { retry_after_s } = err {
        details.set_retry_info(Some(std::time::Duration::from_secs(*retry_after_s)));
    }
    let mut status = Status::with_error_details(code.grpc_code(), err.to_string(), details);
    if let Error::RateLimited { retry_after_s } = err
        && let Ok(value) = retry_after_s.to_string().parse()
    {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        status_from_error(&err)
    }
}

/// What a client can recover from a status: the contract code, message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInfo {
    /// The contract's code when the server sent one, else derived from the gRPC code.
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
}

/// Reads a status produced by [`status_from_error`] (or any other server's status).
pub fn error_from_status(status: &Status) -> StatusInfo {
    let info = status.get_details_error_info();
    let code = info
        .as_ref()
        .filter(|i| i.domain == ERROR_DOMAIN)
        .and_then(|i| ErrorCode::from_str_code(&i.reason))
        .unwrap_or_else(|| code_for_grpc(status.code()));
    let details = info
        .as_ref()
        .and_then(|i| i.metadata.get("details"))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    StatusInfo {
        code,
        message: status.message().to_string(),
        details,
    }
}

/// The contract code for a bare gRPC code (statuses from other servers or from tower layers).
pub fn code_for_grpc(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::ValidationError,
        Code::NotFound => ErrorCode::NotFound,
        Code::FailedPrecondition => ErrorCode::NotCancelable,
        Code::AlreadyExists => ErrorCode::IdempotencyConflict,
        Code::Unauthenticated | Code::PermissionDenied => ErrorCode::Unauthorized,
        Code::ResourceExhausted => ErrorCode::RateLimited,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::Internal,
    }
}

// ---------- JSON <-> Struct ----------

pub fn struct_from_json(map: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), value_from_json(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn value_from_json(value: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        J::Object(map) => Kind::StructValue(struct_from_json(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_from_struct(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), json_from_value(v)))
        .collect()
}

fn json_from_value(value: &prost_types::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            // Integral numbers come back as integers, as JSON clients sent them.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(list)) => J::Array(list.values.iter().map(json_from_value).collect()),
        Some(Kind::StructValue(s)) => J::Object(json_from_struct(s)),
    }
}

// ---------- time ----------

pub fn timestamp_from_epoch(seconds: f64) -> Timestamp {
    let whole = seconds.floor();
    Timestamp {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9).round().min(999_999_999.0) as i32,
    }
}

pub fn epoch_from_timestamp(ts: Option<&Timestamp>) -> f64 {
    ts.map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
        .unwrap_or(0.0)
}

// ---------- requests ----------

/// A decoded, validated create request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub spec: JobSpec,
    pub idempotency_key: Option<String>,
}

/// Decodes and validates an `OptimizeRequest`.
pub fn create_request(
    req: pb::OptimizeRequest,
    max_iterations: u32,
) -> Result<CreateRequest, Error> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mode = match pb::Mode::try_from(req.mode) {
        Ok(pb::Mode::Unspecified | pb::Mode::Default) => Mode::Default,
        Ok(pb::Mode::Gepa) => Mode::Gepa,
        Err(_) => {
            errors.push(FieldError::new(&["mode"], "mode must be default or gepa"));
            Mode::Default
        }
    };
    let objectives = if req.objectives.is_empty() {
        None
    } else {
        let mut parsed = Vec::new();
        for (i, name) in req.objectives.iter().enumerate() {
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
    let examples = req
        .examples
        .into_iter()
        .map(|e| Example {
            id: if e.id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                e.id
            },
            input: e.input,
            expected: e.expected,
            meta: e.meta.as_ref().map(json_from_struct).unwrap_or_default(),
        })
        .collect();
    let mut spec = JobSpec {
        prompt: req.prompt,
        context: req.context.as_ref().map(json_from_struct),
        mode,
        dataset: req.dataset.map(|d| DatasetRef {
            name: d.name,
            split: d.split,
        }),
        metrics: req.metrics,
        budget: req
            .budget
            .map(|b| Budget {
                max_generations: b.max_generations,
                max_rollouts: b.max_rollouts,
                max_cost: b.max_cost,
                max_tokens: b.max_tokens,
                max_wall_time_s: b.max_wall_time_s,
            })
            .unwrap_or_default(),
        examples,
        objectives,
        seed: req.seed.filter(|s| *s != 0),
        target_model_id: req.target_model_id.filter(|m| !m.is_empty()),
        temperature: req.temperature,
        max_tokens: req.max_tokens,
        tournament_size: req.tournament_size,
        recombination_rate: req.recombination_rate,
        early_stop_patience: req.early_stop_patience,
        evaluation_rubric: req.evaluation_rubric,
        iterations: 1,
        gepa: convert_gepa::options_from_pb(req.gepa, &mut errors),
        eval_name: None,
        branched_from: None,
    };
    let iterations = i64::from(req.iterations.unwrap_or(1));
    match spec.validate(iterations, max_iterations) {
        Ok(()) if errors.is_empty() => {}
        Ok(()) => return Err(Error::Validation(errors)),
        Err(Error::Validation(more)) => {
            errors.extend(more);
            return Err(Error::Validation(errors));
        }
        Err(other) => return Err(other),
    }
    if req.idempotency_key.len() > 256 {
        return Err(Error::invalid(
            &["idempotency_key"],
            "idempotency_key must be at most 256 bytes",
        ));
    }
    Ok(CreateRequest {
        spec,
        idempotency_key: Some(req.idempotency_key).filter(|k| !k.is_empty()),
    })
}

// ---------- jobs ----------

pub fn status_to_pb(status: JobStatus) -> pb::JobStatus {
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

pub fn status_from_pb(status: i32) -> Option<JobStatus> {
    match pb::JobStatus::try_from(status).ok()? {
        pb::JobStatus::Unspecified => None,
        pb::JobStatus::Pending => Some(JobStatus::Pending),
        pb::JobStatus::Running => Some(JobStatus::Running),
        pb::JobStatus::Finished => Some(JobStatus::Finished),
        pb::JobStatus::Failed => Some(JobStatus::Failed),
        pb::JobStatus::Cancelled => Some(JobStatus::Cancelled),
        pb::JobStatus::Shutdown => Some(JobStatus::Shutdown),
        pb::JobStatus::Paused => Some(JobStatus::Paused),
    }
}

pub fn job_to_pb(record: &JobRecord, with_result: bool) -> pb::Job {
    pb::Job {
        job_id: record.id.clone(),
        status: status_to_pb(record.status) as i32,
        created_at: Some(timestamp_from_epoch(record.created_at)),
        updated_at: Some(timestamp_from_epoch(record.updated_at)),
        result: if with_result {
            record.result.as_ref().map(result_to_pb)
        } else {
            None
        },
        last_event_id: record.last_event_id,
        request: Some(request_summary(&record.spec)),
        progress: Some(progress_to_pb(&record.progress)),
    }
}

/// Characters of the prompt a [`pb::RequestSummary`] shows.
const PROMPT_HEAD_CHARS: usize = 120;

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
        prompt_head: spec.prompt.chars().take(PROMPT_HEAD_CHARS).collect(),
        dataset,
        examples: u32::try_from(spec.examples.len()).unwrap_or(u32::MAX),
        max_generations: spec.budget.max_generations,
        max_rollouts: spec.budget.max_rollouts,
        max_cost: spec.budget.max_cost,
        max_tokens: spec.budget.max_tokens,
        max_wall_time_s: spec.budget.max_wall_time_s,
    }
}

pub fn progress_to_pb(progress: &crate::domain::job::Progress) -> pb::ProgressSummary {
    pb::ProgressSummary {
        generation: progress.generation,
        metric_calls_used: progress.metric_calls_used,
        metric_calls_budget: progress.metric_calls_budget,
        best_score: progress.best_score,
        cost_usd: progress.cost_usd,
    }
}

// ---------- results and scores ----------

pub fn scores_to_pb(scores: &ObjectiveScores) -> pb::Scores {
    pb::Scores {
        brevity: scores.brevity,
        diversity: scores.diversity,
        coverage: scores.coverage,
        judge: scores.judge.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    }
}

pub fn scores_from_pb(scores: Option<pb::Scores>) -> ObjectiveScores {
    let scores = scores.unwrap_or_default();
    ObjectiveScores {
        brevity: scores.brevity,
        diversity: scores.diversity,
        coverage: scores.coverage,
        judge: scores.judge.into_iter().collect(),
    }
}

pub fn result_to_pb(result: &JobResult) -> pb::JobResult {
    use pb::job_result::Kind as K;
    let kind = match result {
        JobResult::Default(r) => K::DefaultResult(pb::DefaultResult {
            proposal: r.proposal.clone(),
            lessons: r.lessons.clone(),
            scores: Some(scores_to_pb(&r.scores)),
            target_model: r.target_model.clone(),
            rubric: r.rubric.clone(),
        }),
        JobResult::Error(e) => K::Error(pb::ErrorResult {
            error: e.error.clone(),
        }),
        JobResult::Gepa(r) => K::Gepa(convert_gepa::gepa_result_to_pb(r)),
        JobResult::Eval(r) => K::Eval(convert_gepa::eval_result_to_pb(r)),
    };
    pb::JobResult { kind: Some(kind) }
}

pub fn result_from_pb(result: pb::JobResult) -> Option<JobResult> {
    use pb::job_result::Kind as K;
    Some(match result.kind? {
        K::DefaultResult(r) => JobResult::Default(DefaultResult {
            proposal: r.proposal,
            lessons: r.lessons,
            scores: scores_from_pb(r.scores),
            target_model: r.target_model,
            rubric: r.rubric,
        }),
        K::Error(e) => JobResult::Error(ErrorResult { error: e.error }),
        K::Gepa(r) => JobResult::Gepa(Box::new(convert_gepa::gepa_result_from_pb(r))),
        K::Eval(r) => JobResult::Eval(convert_gepa::eval_result_from_pb(r)),
    })
}

// ---------- events ----------

pub fn event_to_pb(event: &Event) -> pb::JobEvent {
    use pb::job_event::Payload as P;
    let payload = match &event.payload {
        EventPayload::Started {} => P::Started(pb::Started {}),
        EventPayload::Mutation { count } => P::Mutation(pb::Mutation { count: *count }),
        EventPayload::Progress {
            iteration,
            proposal,
            target_model,
            rubric,
            scores,
        } => P::Progress(pb::Progress {
            iteration: *iteration,
            proposal: proposal.clone(),
            target_model: target_model.clone(),
            rubric: rubric.clone(),
            scores: Some(scores_to_pb(scores)),
        }),
        EventPayload::Selected { candidate, scores } => P::Selected(pb::Selected {
            candidate: candidate.clone(),
            scores: Some(scores_to_pb(scores)),
        }),
        EventPayload::EarlyStop { best } => P::EarlyStop(pb::EarlyStop { best: best.clone() }),
        EventPayload::Finished(result) => P::Finished(pb::Finished {
            result: Some(result_to_pb(result)),
        }),
        EventPayload::Failed { error, message } => P::Failed(pb::Failed {
            error: error.clone(),
            message: message.clone(),
        }),
        EventPayload::Cancelled {} => P::Cancelled(pb::Cancelled {}),
        EventPayload::Shutdown { reason } => P::Shutdown(pb::Shutdown {
            reason: reason.clone(),
        }),
        EventPayload::Paused { reason } => P::Paused(pb::Paused {
            reason: reason.clone(),
        }),
        EventPayload::Resumed { reason } => P::Resumed(pb::Resumed {
            reason: reason.clone(),
        }),
        EventPayload::Suspended { reason } => P::Suspended(pb::Suspended {
            reason: reason.clone(),
        }),
        // Every GEPA and eval payload, listed: a new payload is a compile error here and in
        // `convert_gepa` until it has a wire mapping.
        gepa @ (EventPayload::GenerationStarted(_)
        | EventPayload::ParentSelected(_)
        | EventPayload::MinibatchEvaluated(_)
        | EventPayload::ReflectionStarted(_)
        | EventPayload::ReflectionFinished(_)
        | EventPayload::CandidateProposed(_)
        | EventPayload::CandidateAccepted(_)
        | EventPayload::CandidateRejected(_)
        | EventPayload::CandidateScored(_)
        | EventPayload::JudgeScored(_)
        | EventPayload::FrontierUpdated(_)
        | EventPayload::LessonsUpdated(_)
        | EventPayload::MergeAttempted(_)
        | EventPayload::BudgetProgress(_)
        | EventPayload::EvalStarted(_)
        | EventPayload::EvalCase(_)
        | EventPayload::EvalFinished(_)) => convert_gepa::event_to_pb(gepa)
            .unwrap_or_else(|| unreachable!("convert_gepa maps every GEPA and eval payload")),
    };
    pb::JobEvent {
        id: event.id,
        job_id: event.job_id.clone(),
        time: Some(timestamp_from_epoch(event.ts)),
        r#type: event.payload.type_name().to_string(),
        payload: Some(payload),
    }
}

/// The stand-in for a terminal event whose payload cannot be decoded: `failed` with
/// `internal_error`, so the stream still ends.
fn undecodable_terminal(kind: &str) -> EventPayload {
    EventPayload::Failed {
        error: "internal_error".into(),
        message: format!("the {kind} event's payload could not be decoded"),
    }
}

/// Rebuilds the domain event from its wire form (the edge renders SSE from it). `None` for a
/// non-terminal payload this build does not know (a newer server): callers skip it. Terminal
/// events are never dropped.
pub fn event_from_pb(event: pb::JobEvent) -> Option<Event> {
    use pb::job_event::Payload as P;
    let Some(wire) = event.payload else {
        // A payload this build does not know (a newer server): skipped, unless the event is
        // terminal, whose end every stream needs.
        let payload = match event.r#type.as_str() {
            "cancelled" => EventPayload::Cancelled {},
            "shutdown" => EventPayload::Shutdown {
                reason: String::new(),
            },
            terminal @ ("finished" | "failed") => undecodable_terminal(terminal),
            _ => return None,
        };
        return Some(Event {
            id: event.id,
            job_id: event.job_id,
            ts: epoch_from_timestamp(event.time.as_ref()),
            payload,
        });
    };
    let payload = match wire {
        P::Started(_) => EventPayload::Started {},
        P::Mutation(m) => EventPayload::Mutation { count: m.count },
        P::Progress(p) => EventPayload::Progress {
            iteration: p.iteration,
            proposal: p.proposal,
            target_model: p.target_model,
            rubric: p.rubric,
            scores: scores_from_pb(p.scores),
        },
        P::Selected(s) => EventPayload::Selected {
            candidate: s.candidate,
            scores: scores_from_pb(s.scores),
        },
        P::EarlyStop(e) => EventPayload::EarlyStop { best: e.best },
        // A terminal event is never dropped: a result this build cannot decode still ends the
        // stream (as a failure; the job's state keeps the real result).
        P::Finished(f) => match f.result.and_then(result_from_pb) {
            Some(result) => EventPayload::Finished(result),
            None => undecodable_terminal("finished"),
        },
        P::Failed(f) => EventPayload::Failed {
            error: f.error,
            message: f.message,
        },
        P::Cancelled(_) => EventPayload::Cancelled {},
        P::Shutdown(s) => EventPayload::Shutdown { reason: s.reason },
        P::Paused(p) => EventPayload::Paused { reason: p.reason },
        P::Resumed(r) => EventPayload::Resumed { reason: r.reason },
        P::Suspended(s) => EventPayload::Suspended { reason: s.reason },
        gepa @ (P::GenerationStarted(_)
        | P::ParentSelected(_)
        | P::MinibatchEvaluated(_)
        | P::ReflectionStarted(_)
        | P::ReflectionFinished(_)
        | P::CandidateProposed(_)
        | P::CandidateAccepted(_)
        | P::CandidateRejected(_)
        | P::CandidateScored(_)
        | P::JudgeScored(_)
        | P::FrontierUpdated(_)
        | P::LessonsUpdated(_)
        | P::MergeAttempted(_)
        | P::BudgetProgress(_)
        | P::EvalStarted(_)
        | P::EvalCase(_)
        | P::EvalFinished(_)) => convert_gepa::event_from_pb(gepa)?,
    };
    Some(Event {
        id: event.id,
        job_id: event.job_id,
        ts: epoch_from_timestamp(event.time.as_ref()),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_protobuf() {
        let mut judge = std::collections::BTreeMap::new();
        judge.insert("brevity".to_string(), 7.0);
        let scores = ObjectiveScores {
            brevity: Some(-12),
            diversity: Some(1.0),
            coverage: Some(0.5),
            judge,
        };
        let payloads = vec![
            EventPayload::Started {},
            EventPayload::Mutation { count: 3 },
            EventPayload::Progress {
                iteration: 1,
                proposal: "p".into(),
                target_model: "m".into(),
                rubric: None,
                scores: scores.clone(),
            },
            EventPayload::Selected {
                candidate: "c".into(),
                scores: scores.clone(),
            },
            EventPayload::EarlyStop { best: "b".into() },
            EventPayload::Finished(JobResult::Default(DefaultResult {
                proposal: "p".into(),
                lessons: vec![],
                scores,
                target_model: "m".into(),
                rubric: Some("r".into()),
            })),
            EventPayload::Failed {
                error: "deadline_exceeded".into(),
                message: String::new(),
            },
            EventPayload::Cancelled {},
            EventPayload::Shutdown {
                reason: "shutdown".into(),
            },
        ];
        let payloads = payloads
            .into_iter()
            .chain(convert_gepa::samples())
            .collect::<Vec<_>>();
        for (i, payload) in payloads.into_iter().enumerate() {
            let event = Event {
                id: i as u64 + 1,
                job_id: "j".into(),
                ts: 1722033641.25,
                payload,
            };
            let back = event_from_pb(event_to_pb(&event)).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_terminal_event_is_never_dropped() {
        let wire = |r#type: &str, payload| pb::JobEvent {
            id: 9,
            job_id: "j".into(),
            time: None,
            r#type: r#type.into(),
            payload,
        };
        let undecodable = pb::job_event::Payload::Finished(pb::Finished { result: None });
        let event = event_from_pb(wire("finished", Some(undecodable))).expect("kept");
        assert_eq!(event.payload.type_name(), "failed");
        assert_eq!(event.payload.terminal_status(), Some(JobStatus::Failed));
        let unknown_cancel = event_from_pb(wire("cancelled", None)).expect("kept");
        assert_eq!(unknown_cancel.payload, EventPayload::Cancelled {});
        assert_eq!(
            event_from_pb(wire("finished", None)).map(|e| e.payload.type_name()),
            Some("failed")
        );
        assert!(event_from_pb(wire("something_new", None)).is_none());
    }

    #[test]
    fn errors_survive_the_status_round_trip() {
        let err = Error::invalid(&["prompt"], "prompt must not be empty");
        let status = status_from_error(&err);
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = error_from_status(&status);
        assert_eq!(info.code, ErrorCode::ValidationError);
        assert_eq!(
            info.details["errors"][0]["loc"],
            serde_json::json!(["prompt"])
        );
    }
}
