//! Job events: the typed payloads and the stores' record of an event (their serde rendering is
//! the stored text). The JSON clients read is rendered from the wire types in `crate::api::json`;
//! a test there keeps the two the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gepa;
use super::job::{JobId, JobResult, JobStatus};

/// One entry of a job's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Increasing per job, from 1.
    pub id: u64,
    pub job_id: JobId,
    /// Unix epoch seconds.
    pub ts: f64,
    pub payload: EventPayload,
}

impl Event {
    pub fn is_terminal(&self) -> bool {
        self.payload.terminal_status().is_some()
    }

    /// The whole event as one compact JSON object, `{"id":…,"ts":…,"type":"…","data":{…}}`
    /// (the stores' record of it).
    pub fn json_text(&self) -> String {
        Event::render_json(self.id, self.ts, &self.payload)
    }

    /// [`Event::json_text`] of an event not built yet: rendered in one buffer, in one pass. The
    /// payload's tagged object is written straight after the id and time, and its opening `{`
    /// then becomes the `,` between them.
    pub fn render_json(id: u64, ts: f64, payload: &EventPayload) -> String {
        use std::io::Write as _;
        // Sized for a typical event up front: growing from a small buffer reallocates two or
        // three times per event.
        let mut buf = Vec::with_capacity(512);
        let ts = if ts.is_finite() { ts } else { 0.0 };
        let _ = write!(buf, r#"{{"id":{id},"ts":"#);
        // serde_json prints the shortest text that parses back to the same f64.
        let _ = serde_json::to_writer(&mut buf, &ts);
        let opening = buf.len();
        if serde_json::to_writer(&mut buf, payload).is_ok()
            && let Some(brace @ b'{') = buf.get_mut(opening)
        {
            *brace = b',';
            if let Ok(text) = String::from_utf8(buf) {
                return text;
            }
        }
        // Serializing a payload cannot fail (no maps with non-string keys), and a tagged payload
        // is an object; keep the shape anyway.
        let data = serde_json::json!({ "type": payload.type_name(), "data": payload.data_json() });
        let mut text = format!(r#"{{"id":{id},"ts":{ts},"#);
        let data = data.to_string();
        text.push_str(data.strip_prefix('{').unwrap_or(&data));
        text
    }
}

/// Objective and judge scores of one candidate. `brevity` stays an integer on the wire and the
/// others floats, as in the original.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveScores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brevity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Judge scores by objective name (0–10).
    #[serde(default)]
    pub judge: BTreeMap<String, f64>,
}

impl ObjectiveScores {
    /// The sum the default loop compares: deterministic scores plus judge scores.
    pub fn total(&self) -> f64 {
        self.brevity.unwrap_or(0) as f64
            + self.diversity.unwrap_or(0.0)
            + self.coverage.unwrap_or(0.0)
            + self.judge.values().sum::<f64>()
    }
}

/// The typed payload of an event. Serialised as `{"type": …, "data": …}`; the `data` object is
/// exactly the original's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventPayload {
    Started {},
    Mutation {
        count: u32,
    },
    Progress {
        iteration: u32,
        proposal: String,
        target_model: String,
        rubric: Option<String>,
        scores: ObjectiveScores,
    },
    Selected {
        candidate: String,
        scores: ObjectiveScores,
    },
    EarlyStop {
        best: String,
    },
    /// `data` is the result itself, as in the original.
    Finished(JobResult),
    Failed {
        error: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    Cancelled {},
    Shutdown {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// Not terminal: paused by a client, checkpointed.
    Paused {
        reason: String,
    },
    /// Not terminal: continues from its checkpoint (`client` or `restart`).
    Resumed {
        reason: String,
    },
    /// Not terminal: the server stopped and handed the job over (checkpointed; it continues
    /// when the service starts again).
    Suspended {
        reason: String,
    },
    // --- GEPA ---
    GenerationStarted(gepa::GenerationStarted),
    ParentSelected(gepa::ParentSelected),
    MinibatchEvaluated(gepa::MinibatchEvaluated),
    ReflectionStarted(gepa::ReflectionStarted),
    ReflectionFinished(gepa::ReflectionFinished),
    CandidateProposed(gepa::CandidateProposed),
    CandidateAccepted(gepa::CandidateVerdict),
    CandidateRejected(gepa::CandidateVerdict),
    CandidateScored(gepa::CandidateScored),
    JudgeScored(gepa::JudgeScored),
    FrontierUpdated(gepa::FrontierUpdated),
    LessonsUpdated(gepa::LessonsUpdated),
    MergeAttempted(gepa::MergeAttempted),
    BudgetProgress(gepa::BudgetUsage),
    // --- eval jobs ---
    EvalStarted(gepa::EvalStarted),
    EvalCase(gepa::EvalCase),
    EvalFinished(gepa::EvalFinished),
}

impl EventPayload {
    /// The SSE event name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventPayload::Started {} => "started",
            EventPayload::Mutation { .. } => "mutation",
            EventPayload::Progress { .. } => "progress",
            EventPayload::Selected { .. } => "selected",
            EventPayload::EarlyStop { .. } => "early_stop",
            EventPayload::Finished(_) => "finished",
            EventPayload::Failed { .. } => "failed",
            EventPayload::Cancelled {} => "cancelled",
            EventPayload::Shutdown { .. } => "shutdown",
            EventPayload::Paused { .. } => "paused",
            EventPayload::Resumed { .. } => "resumed",
            EventPayload::Suspended { .. } => "suspended",
            EventPayload::GenerationStarted(_) => "generation_started",
            EventPayload::ParentSelected(_) => "parent_selected",
            EventPayload::MinibatchEvaluated(_) => "minibatch_evaluated",
            EventPayload::ReflectionStarted(_) => "reflection_started",
            EventPayload::ReflectionFinished(_) => "reflection_finished",
            EventPayload::CandidateProposed(_) => "candidate_proposed",
            EventPayload::CandidateAccepted(_) => "candidate_accepted",
            EventPayload::CandidateRejected(_) => "candidate_rejected",
            EventPayload::CandidateScored(_) => "candidate_scored",
            EventPayload::JudgeScored(_) => "judge_scored",
            EventPayload::FrontierUpdated(_) => "frontier_updated",
            EventPayload::LessonsUpdated(_) => "lessons_updated",
            EventPayload::MergeAttempted(_) => "merge_attempted",
            EventPayload::BudgetProgress(_) => "budget_progress",
            EventPayload::EvalStarted(_) => "eval_started",
            EventPayload::EvalCase(_) => "eval_case",
            EventPayload::EvalFinished(_) => "eval_finished",
        }
    }

    /// The status a terminal event puts its job in; `None` for non-terminal events.
    pub fn terminal_status(&self) -> Option<JobStatus> {
        match self {
            EventPayload::Finished(_) => Some(JobStatus::Finished),
            EventPayload::Failed { .. } => Some(JobStatus::Failed),
            EventPayload::Cancelled {} => Some(JobStatus::Cancelled),
            EventPayload::Shutdown { .. } => Some(JobStatus::Shutdown),
            _ => None,
        }
    }

    /// The `data` object alone.
    pub fn data_json(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => map
                .remove("data")
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            _ => serde_json::Value::Object(Default::default()),
        }
    }

    /// The `data` object as compact JSON text, equal to `data_json().to_string()` but rendered
    /// in one pass (no intermediate `Value` tree): the stores write this text.
    pub fn data_json_text(&self) -> String {
        // Adjacent tagging renders `{"type":"<name>","data":<data>}`; keep `<data>`.
        if let Ok(whole) = serde_json::to_string(self) {
            let data = whole
                .strip_prefix(r#"{"type":""#)
                .and_then(|rest| rest.strip_prefix(self.type_name()))
                .and_then(|rest| rest.strip_prefix(r#"","data":"#))
                .and_then(|rest| rest.strip_suffix('}'));
            if let Some(data) = data {
                return data.to_string();
            }
        }
        self.data_json().to_string()
    }

    /// Rebuilds a payload from its type name and `data` object (stores and the edge use this).
    pub fn from_parts(type_name: &str, data: serde_json::Value) -> serde_json::Result<Self> {
        serde_json::from_value(serde_json::json!({ "type": type_name, "data": data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_is_the_whole_event_and_parses_back() {
        let event = Event {
            id: 42,
            job_id: "j".into(),
            ts: 1_795_626_351.651_278_4,
            payload: EventPayload::Failed {
                error: "boom".into(),
                message: "say \"no\"".into(),
            },
        };
        let text = event.json_text();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["id"], 42);
        assert_eq!(value["ts"].as_f64(), Some(event.ts));
        assert_eq!(value["type"], "failed");
        assert_eq!(value["data"], event.payload.data_json());
    }
}
