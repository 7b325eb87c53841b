//! Steering a running (or paused) GEPA job by hand: feedback that the next reflections receive,
//! and hand-written candidates that join the pool like any accepted child (origin `human`).
//!
//! A [`Steering`] is the job's inbox, shared between the runtime (which fills it from
//! `SteerJob`) and the engine (which drains it at the top of each iteration: from then on the
//! feedback is part of its checkpointed state, and a human candidate is in its pool, so both
//! survive a pause, a resume and a restart). Only what is still in the inbox when the process
//! stops is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// At most this many feedback notes are kept per job (the newest); older ones drop out.
pub const MAX_FEEDBACK: usize = 8;
/// A feedback note's limit, in characters.
pub const MAX_FEEDBACK_CHARS: usize = 4_000;
/// Hand-written candidates waiting for the engine, per job.
pub const MAX_PENDING_CANDIDATES: usize = 8;

/// Feedback a human gave: for one component, or for every component when `component` is None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanFeedback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub text: String,
}

/// A hand-written candidate: a parent's components with some replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanCandidate {
    pub parent_id: u32,
    /// The components to replace (the others are the parent's).
    pub components: BTreeMap<String, String>,
}

/// What one `SteerJob` asks for. Its serde form is what waits in the store for the replica
/// that runs the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteerRequest {
    pub feedback: Option<HumanFeedback>,
    pub candidate: Option<HumanCandidate>,
}

/// What an `InvalidJobState` for steering says.
pub const STEER_ACTION: &str = "only a running or paused GEPA job can be steered";

/// Steering applies to a GEPA job that has not ended (running, paused, or queued to run):
/// otherwise `InvalidJobState`.
pub fn check_steerable(record: &super::JobRecord) -> Result<()> {
    if record.spec.mode == super::Mode::Gepa && !record.status.is_terminal() {
        return Ok(());
    }
    Err(Error::InvalidJobState {
        job_id: record.id.clone(),
        status: record.status.to_string(),
        action: STEER_ACTION,
    })
}

impl SteerRequest {
    /// Checks what is asked for (an empty request asks for nothing and is fine).
    pub fn validate(&self) -> Result<()> {
        // Neither feedback nor a candidate: nothing to queue, and nothing wrong with that.
        if let Some(f) = &self.feedback {
            let chars = f.text.chars().count();
            if f.text.trim().is_empty() || chars > MAX_FEEDBACK_CHARS {
                return Err(Error::invalid(
                    &["body", "feedback"],
                    format!("feedback must be 1 to {MAX_FEEDBACK_CHARS} characters"),
                ));
            }
        }
        if let Some(c) = &self.candidate {
            if c.components.is_empty() {
                return Err(Error::invalid(
                    &["body", "candidate", "components"],
                    "a candidate needs at least one component text",
                ));
            }
            for (name, text) in &c.components {
                // No length cap of its own: MAX_REQUEST_BYTES bounds the body (issue 16).
                if name.is_empty() || text.trim().is_empty() {
                    return Err(Error::invalid(
                        &["body", "candidate", "components", name.as_str()],
                        "component texts must not be empty",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Inbox {
    feedback: Vec<HumanFeedback>,
    candidates: Vec<HumanCandidate>,
}

/// A job's steering inbox. Cheap to clone; every clone is the same inbox.
#[derive(Debug, Clone, Default)]
pub struct Steering(Arc<Mutex<Inbox>>);

/// Feedback notes that apply to `component`, newest last.
pub fn feedback_for<'a>(notes: &'a [HumanFeedback], component: &str) -> Vec<&'a str> {
    notes
        .iter()
        .filter(|f| f.component.as_deref().is_none_or(|c| c == component))
        .map(|f| f.text.as_str())
        .collect()
}

impl Steering {
    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a validated request. A candidate beyond [`MAX_PENDING_CANDIDATES`] is refused.
    pub fn push(&self, request: SteerRequest) -> Result<()> {
        let mut inbox = self.inbox();
        if request.candidate.is_some() && inbox.candidates.len() >= MAX_PENDING_CANDIDATES {
            return Err(Error::RateLimited { retry_after_s: 5 });
        }
        if let Some(f) = request.feedback {
            inbox.feedback.push(f);
        }
        if let Some(c) = request.candidate {
            inbox.candidates.push(c);
        }
        Ok(())
    }

    /// Everything queued since the last call.
    pub fn drain(&self) -> (Vec<HumanFeedback>, Vec<HumanCandidate>) {
        let mut inbox = self.inbox();
        (
            std::mem::take(&mut inbox.feedback),
            std::mem::take(&mut inbox.candidates),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_applies_to_its_component_or_to_all() {
        let notes = vec![
            HumanFeedback {
                component: None,
                text: "be brief".into(),
            },
            HumanFeedback {
                component: Some("tools".into()),
                text: "name the tool".into(),
            },
        ];
        assert_eq!(feedback_for(&notes, "system_prompt"), vec!["be brief"]);
        assert_eq!(
            feedback_for(&notes, "tools"),
            vec!["be brief", "name the tool"]
        );
    }

    #[test]
    fn steer_requests_are_validated_and_drained_once() {
        // Asking for nothing is fine (nothing is queued); a blank note is not.
        assert!(SteerRequest::default().validate().is_ok());
        let blank = SteerRequest {
            feedback: Some(HumanFeedback {
                component: None,
                text: "  ".into(),
            }),
            candidate: None,
        };
        assert!(blank.validate().is_err());
        let steering = Steering::default();
        let request = SteerRequest {
            feedback: Some(HumanFeedback {
                component: None,
                text: "cite sources".into(),
            }),
            candidate: Some(HumanCandidate {
                parent_id: 0,
                components: BTreeMap::from([("system_prompt".into(), "Cite.".into())]),
            }),
        };
        request.validate().unwrap();
        steering.clone().push(request).unwrap();
        let (feedback, candidates) = steering.drain();
        assert_eq!((feedback.len(), candidates.len()), (1, 1));
        assert_eq!(steering.drain(), (vec![], vec![]));
    }
}
