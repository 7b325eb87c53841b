//! The JSON contract of events and results, rendered from the wire types: REST and SSE clients
//! read the serde rendering of [`pb`] payloads and results, with the contract's rules declared
//! beside the generated code (`build.rs`: which messages, which fields are left out when empty,
//! which message fields always render). This module holds the helper those rules name
//! ([`or_default`]) and the event's name and `data` object, taken from a [`pb::JobEvent`] alone.
//!
//! The stores write the domain's serde rendering of the same events; `api/round_trip.rs`
//! checks, payload by payload, that both are the same bytes.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use super::events::UnknownEvent;
use super::pb;

type P = pb::job_event::Payload;

/// `serialize_with` of message fields a client always sees: an unset one renders as its
/// default (zeros, empty lists), never `null`.
pub fn or_default<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize + Default,
    S: Serializer,
{
    match value {
        Some(value) => value.serialize(serializer),
        None => T::default().serialize(serializer),
    }
}

/// One event's payload as a JSON client reads it: its name (the SSE `event:` line and the
/// envelope's `type`), whether it ends the stream, and the payload whose rendering is the
/// `data` object (the oneof is untagged: [`EventData::data`], or serialised in place).
#[derive(Debug, Clone, PartialEq)]
pub struct EventData<'a> {
    pub name: &'static str,
    pub terminal: bool,
    pub payload: Cow<'a, P>,
}

impl<'a> TryFrom<&'a pb::JobEvent> for EventData<'a> {
    /// A non-terminal payload this build does not know (a newer core): the caller skips it.
    type Error = UnknownEvent;
    fn try_from(event: &'a pb::JobEvent) -> Result<Self, UnknownEvent> {
        let payload = match &event.payload {
            // A terminal event is never dropped: a result this build cannot decode still ends
            // the stream (as a failure).
            Some(P::Finished(pb::Finished { result }))
                if result.as_ref().is_none_or(|r| r.kind.is_none()) =>
            {
                Cow::Owned(undecodable_terminal("finished"))
            }
            Some(payload) => Cow::Borrowed(payload),
            None => Cow::Owned(match event.r#type.as_str() {
                "cancelled" => P::Cancelled(pb::Cancelled {}),
                "shutdown" => P::Shutdown(pb::Shutdown::default()),
                terminal @ ("finished" | "failed") => undecodable_terminal(terminal),
                _ => return Err(UnknownEvent(event.r#type.clone())),
            }),
        };
        Ok(EventData {
            name: name(&payload),
            terminal: terminal(&payload),
            payload,
        })
    }
}

impl EventData<'_> {
    /// The `data` object as compact JSON.
    pub fn data(&self) -> String {
        // Plain structs of strings, numbers, lists and string-keyed maps always render.
        serde_json::to_string(&*self.payload).unwrap_or_else(|_| "{}".to_string())
    }
}

/// The stand-in for a terminal event whose payload cannot be decoded: `failed` with
/// `internal_error`, so the stream still ends (the job's state keeps the real result).
pub fn undecodable_terminal(kind: &str) -> P {
    P::Failed(pb::Failed {
        error: "internal_error".into(),
        message: format!("the {kind} event's payload could not be decoded"),
    })
}

/// Whether a payload ends its job's stream.
fn terminal(payload: &P) -> bool {
    matches!(
        payload,
        P::Finished(_) | P::Failed(_) | P::Cancelled(_) | P::Shutdown(_)
    )
}

/// The event's name: one arm per payload, no catch-all.
fn name(payload: &P) -> &'static str {
    match payload {
        P::Started(_) => "started",
        P::Mutation(_) => "mutation",
        P::Progress(_) => "progress",
        P::Selected(_) => "selected",
        P::EarlyStop(_) => "early_stop",
        P::Finished(_) => "finished",
        P::Failed(_) => "failed",
        P::Cancelled(_) => "cancelled",
        P::Shutdown(_) => "shutdown",
        P::Paused(_) => "paused",
        P::Resumed(_) => "resumed",
        P::Suspended(_) => "suspended",
        P::GenerationStarted(_) => "generation_started",
        P::ParentSelected(_) => "parent_selected",
        P::MinibatchEvaluated(_) => "minibatch_evaluated",
        P::ReflectionStarted(_) => "reflection_started",
        P::ReflectionFinished(_) => "reflection_finished",
        P::CandidateProposed(_) => "candidate_proposed",
        P::CandidateAccepted(_) => "candidate_accepted",
        P::CandidateRejected(_) => "candidate_rejected",
        P::CandidateScored(_) => "candidate_scored",
        P::JudgeScored(_) => "judge_scored",
        P::FrontierUpdated(_) => "frontier_updated",
        P::LessonsUpdated(_) => "lessons_updated",
        P::MergeAttempted(_) => "merge_attempted",
        P::BudgetProgress(_) => "budget_progress",
        P::EvalStarted(_) => "eval_started",
        P::EvalCase(_) => "eval_case",
        P::EvalFinished(_) => "eval_finished",
    }
}

/// A job's result as REST clients read it (`GET /v1/optimize/{id}`), `None` when the wire
/// result is unset or of a kind this build does not know.
pub fn result_json(result: &pb::JobResult) -> Option<serde_json::Value> {
    result.kind.as_ref()?;
    serde_json::to_value(result).ok()
}
