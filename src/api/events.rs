//! Job events, wire ↔ domain: [`pb::JobEvent`] ↔ [`Event`], one exhaustive match over every
//! payload each way (no catch-all arm: a new payload does not compile until it is mapped). A
//! payload this build does not know (a newer server) is skipped, unless the event is terminal:
//! every stream needs its end.

use super::pb;
use super::values::{epoch_from_timestamp, timestamp_from_epoch};
use crate::domain::job::JobResult;
use crate::domain::{Event, EventPayload};

type P = pb::job_event::Payload;

impl From<Event> for pb::JobEvent {
    fn from(event: Event) -> Self {
        let Event {
            id,
            job_id,
            ts,
            payload,
        } = event;
        pb::JobEvent {
            id,
            job_id,
            time: Some(timestamp_from_epoch(ts)),
            r#type: payload.type_name().to_string(),
            payload: Some(payload.into()),
        }
    }
}

/// A non-terminal event whose payload this build does not know (sent by a newer server):
/// callers skip it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEvent(pub String);

impl TryFrom<pb::JobEvent> for Event {
    type Error = UnknownEvent;
    fn try_from(event: pb::JobEvent) -> Result<Self, UnknownEvent> {
        let pb::JobEvent {
            id,
            job_id,
            time,
            r#type,
            payload,
        } = event;
        let payload = match payload {
            Some(wire) => wire.into(),
            None => match r#type.as_str() {
                "cancelled" => EventPayload::Cancelled {},
                "shutdown" => EventPayload::Shutdown {
                    reason: String::new(),
                },
                terminal @ ("finished" | "failed") => undecodable_terminal(terminal),
                _ => return Err(UnknownEvent(r#type)),
            },
        };
        Ok(Event {
            id,
            job_id,
            ts: epoch_from_timestamp(time.as_ref()),
            payload,
        })
    }
}

/// The stand-in for a terminal event whose payload cannot be decoded (see
/// [`super::json::undecodable_terminal`]).
fn undecodable_terminal(kind: &str) -> EventPayload {
    super::json::undecodable_terminal(kind).into()
}

impl From<EventPayload> for P {
    fn from(payload: EventPayload) -> Self {
        match payload {
            EventPayload::Started {} => P::Started(pb::Started {}),
            EventPayload::Mutation { count } => P::Mutation(pb::Mutation { count }),
            EventPayload::Progress {
                iteration,
                proposal,
                target_model,
                rubric,
                scores,
            } => P::Progress(pb::Progress {
                iteration,
                proposal,
                target_model,
                rubric,
                scores: Some(scores.into()),
            }),
            EventPayload::Selected { candidate, scores } => P::Selected(pb::Selected {
                candidate,
                scores: Some(scores.into()),
            }),
            EventPayload::EarlyStop { best } => P::EarlyStop(pb::EarlyStop { best }),
            EventPayload::Finished(result) => P::Finished(pb::Finished {
                result: Some(result.into()),
            }),
            EventPayload::Failed { error, message } => P::Failed(pb::Failed { error, message }),
            EventPayload::Cancelled {} => P::Cancelled(pb::Cancelled {}),
            EventPayload::Shutdown { reason } => P::Shutdown(pb::Shutdown { reason }),
            EventPayload::Paused { reason } => P::Paused(pb::Paused { reason }),
            EventPayload::Resumed { reason } => P::Resumed(pb::Resumed { reason }),
            EventPayload::Suspended { reason } => P::Suspended(pb::Suspended { reason }),
            EventPayload::GenerationStarted(e) => P::GenerationStarted(e.into()),
            EventPayload::ParentSelected(e) => P::ParentSelected(e.into()),
            EventPayload::MinibatchEvaluated(e) => P::MinibatchEvaluated(e.into()),
            EventPayload::ReflectionStarted(e) => P::ReflectionStarted(e.into()),
            EventPayload::ReflectionFinished(e) => P::ReflectionFinished(e.into()),
            EventPayload::CandidateProposed(e) => P::CandidateProposed(e.into()),
            EventPayload::CandidateAccepted(v) => P::CandidateAccepted(v.into()),
            EventPayload::CandidateRejected(v) => P::CandidateRejected(v.into()),
            EventPayload::CandidateScored(e) => P::CandidateScored(e.into()),
            EventPayload::JudgeScored(e) => P::JudgeScored(e.into()),
            EventPayload::FrontierUpdated(e) => P::FrontierUpdated(e.into()),
            EventPayload::LessonsUpdated(e) => P::LessonsUpdated(e.into()),
            EventPayload::MergeAttempted(e) => P::MergeAttempted(e.into()),
            EventPayload::BudgetProgress(b) => P::BudgetProgress(b.into()),
            EventPayload::EvalStarted(e) => P::EvalStarted(e.into()),
            EventPayload::EvalCase(c) => P::EvalCase(c.into()),
            EventPayload::EvalFinished(e) => P::EvalFinished(e.into()),
        }
    }
}

impl From<P> for EventPayload {
    fn from(payload: P) -> Self {
        match payload {
            P::Started(pb::Started {}) => EventPayload::Started {},
            P::Mutation(pb::Mutation { count }) => EventPayload::Mutation { count },
            P::Progress(pb::Progress {
                iteration,
                proposal,
                target_model,
                rubric,
                scores,
            }) => EventPayload::Progress {
                iteration,
                proposal,
                target_model,
                rubric,
                scores: scores.unwrap_or_default().into(),
            },
            P::Selected(pb::Selected { candidate, scores }) => EventPayload::Selected {
                candidate,
                scores: scores.unwrap_or_default().into(),
            },
            P::EarlyStop(pb::EarlyStop { best }) => EventPayload::EarlyStop { best },
            // A terminal event is never dropped: a result this build cannot decode still ends
            // the stream (as a failure).
            P::Finished(pb::Finished { result }) => match result.map(JobResult::try_from) {
                Some(Ok(result)) => EventPayload::Finished(result),
                None | Some(Err(_)) => undecodable_terminal("finished"),
            },
            P::Failed(pb::Failed { error, message }) => EventPayload::Failed { error, message },
            P::Cancelled(pb::Cancelled {}) => EventPayload::Cancelled {},
            P::Shutdown(pb::Shutdown { reason }) => EventPayload::Shutdown { reason },
            P::Paused(pb::Paused { reason }) => EventPayload::Paused { reason },
            P::Resumed(pb::Resumed { reason }) => EventPayload::Resumed { reason },
            P::Suspended(pb::Suspended { reason }) => EventPayload::Suspended { reason },
            P::GenerationStarted(e) => EventPayload::GenerationStarted(e.into()),
            P::ParentSelected(e) => EventPayload::ParentSelected(e.into()),
            P::MinibatchEvaluated(e) => EventPayload::MinibatchEvaluated(e.into()),
            P::ReflectionStarted(e) => EventPayload::ReflectionStarted(e.into()),
            P::ReflectionFinished(e) => EventPayload::ReflectionFinished(e.into()),
            P::CandidateProposed(e) => EventPayload::CandidateProposed(e.into()),
            P::CandidateAccepted(v) => EventPayload::CandidateAccepted(v.into()),
            P::CandidateRejected(v) => EventPayload::CandidateRejected(v.into()),
            P::CandidateScored(e) => EventPayload::CandidateScored(e.into()),
            P::JudgeScored(e) => EventPayload::JudgeScored(e.into()),
            P::FrontierUpdated(e) => EventPayload::FrontierUpdated(e.into()),
            P::LessonsUpdated(e) => EventPayload::LessonsUpdated(e.into()),
            P::MergeAttempted(e) => EventPayload::MergeAttempted(e.into()),
            P::BudgetProgress(b) => EventPayload::BudgetProgress(b.into()),
            P::EvalStarted(e) => EventPayload::EvalStarted(e.into()),
            P::EvalCase(c) => EventPayload::EvalCase(c.into()),
            P::EvalFinished(e) => EventPayload::EvalFinished(e.into()),
        }
    }
}
