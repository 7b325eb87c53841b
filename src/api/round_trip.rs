//! Every event payload round-trips wire ↔ domain ↔ JSON. The table is checked against
//! [`variant`], an exhaustive match: a new payload (or result kind) fails to compile there, and
//! then fails here until the table has a sample of it.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use super::pb;
use crate::domain::event::ObjectiveScores;
use crate::domain::gepa::*;
use crate::domain::job::{DefaultResult, ErrorResult, JobResult, JobStatus};
use crate::domain::{Event, EventPayload};

/// The index of a payload's variant (result kinds of `finished` counted apart).
fn variant(payload: &EventPayload) -> usize {
    match payload {
        EventPayload::Started {} => 0,
        EventPayload::Mutation { .. } => 1,
        EventPayload::Progress { .. } => 2,
        EventPayload::Selected { .. } => 3,
        EventPayload::EarlyStop { .. } => 4,
        EventPayload::Finished(JobResult::Default(_)) => 5,
        EventPayload::Finished(JobResult::Gepa(_)) => 6,
        EventPayload::Finished(JobResult::Eval(_)) => 7,
        EventPayload::Finished(JobResult::Error(_)) => 8,
        EventPayload::Failed { .. } => 9,
        EventPayload::Cancelled {} => 10,
        EventPayload::Shutdown { .. } => 11,
        EventPayload::Paused { .. } => 12,
        EventPayload::Resumed { .. } => 13,
        EventPayload::Suspended { .. } => 14,
        EventPayload::GenerationStarted(_) => 15,
        EventPayload::ParentSelected(_) => 16,
        EventPayload::MinibatchEvaluated(_) => 17,
        EventPayload::ReflectionStarted(_) => 18,
        EventPayload::ReflectionFinished(_) => 19,
        EventPayload::CandidateProposed(_) => 20,
        EventPayload::CandidateAccepted(_) => 21,
        EventPayload::CandidateRejected(_) => 22,
        EventPayload::CandidateScored(_) => 23,
        EventPayload::JudgeScored(_) => 24,
        EventPayload::FrontierUpdated(_) => 25,
        EventPayload::LessonsUpdated(_) => 26,
        EventPayload::MergeAttempted(_) => 27,
        EventPayload::BudgetProgress(_) => 28,
        EventPayload::EvalStarted(_) => 29,
        EventPayload::EvalCase(_) => 30,
        EventPayload::EvalFinished(_) => 31,
    }
}
const VARIANTS: usize = 32;

/// One of every payload, with non-default values in every field.
fn samples() -> Vec<EventPayload> {
    let scores = ObjectiveScores {
        brevity: Some(-12),
        diversity: Some(1.0),
        coverage: Some(0.5),
        judge: [("brevity".to_string(), 7.0)].into(),
    };
    let budget = BudgetUsage {
        generation: 2,
        metric_calls_used: 10,
        metric_calls_left: Some(5),
        cost_usd: 0.25,
        cost_left_usd: None,
        tokens_used: 99,
        tokens_left: Some(1),
        rollouts: 10,
    };
    let frontier = vec![FrontierEntry { id: 1, score: 0.5 }];
    let verdict = CandidateVerdict {
        generation: 1,
        candidate_id: Some(2),
        parent_ids: vec![0],
        before: 1.0,
        after: 2.0,
        cost: ProposalCost {
            metric_calls: 3,
            task_usd: 0.5,
            reflection_usd: 0.25,
            judge_usd: 0.125,
        },
    };
    let val_scores: BTreeMap<String, f64> = [("a".to_string(), 1.0)].into();
    let components: BTreeMap<String, String> =
        [("system_prompt".to_string(), "p".to_string())].into();
    let case = EvalCase {
        example_id: "e".into(),
        output: "o".into(),
        score: 1.0,
        feedback: "f".into(),
    };
    let reason = |r: &str| r.to_string();
    vec![
        EventPayload::Started {},
        EventPayload::Mutation { count: 3 },
        EventPayload::Progress {
            iteration: 1,
            proposal: "say \"hi\" \u{e9}\n".into(),
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
            lessons: vec!["l".into()],
            scores,
            target_model: "m".into(),
            rubric: Some("r".into()),
        })),
        EventPayload::Finished(JobResult::Gepa(Box::new(GepaResult {
            best_prompt: "p".into(),
            frontier: frontier.clone(),
            lessons: vec!["l".into()],
            best_candidate_id: 1,
            best_candidate: components.clone(),
            best_score: 0.5,
            seed_score: 0.1,
            candidates: vec![CandidateInfo {
                id: 1,
                parents: vec![0],
                origin: "reflection".into(),
                components: components.clone(),
                score: 0.5,
                val_scores: val_scores.clone(),
                discovered_at_metric_calls: 7,
                validated_on: 1,
            }],
            generations: 2,
            budget: budget.clone(),
            stop_reason: "max_metric_calls".into(),
            error: Some("e".into()),
            test: Some(TestReport {
                count: 2,
                seed_score: 0.25,
                best_score: 0.5,
                best_candidate_id: 1,
                metric_calls: 4,
            }),
            proposals: vec![verdict.clone()],
        }))),
        EventPayload::Finished(JobResult::Eval(EvalResult {
            name: "toy_qa".into(),
            score: 0.5,
            count: 1,
            cases: vec![case.clone()],
            metric_calls_used: 1,
            cost_usd: 0.125,
        })),
        EventPayload::Finished(JobResult::Error(ErrorResult {
            error: "internal_error".into(),
        })),
        EventPayload::Failed {
            error: "deadline_exceeded".into(),
            message: "m".into(),
        },
        EventPayload::Cancelled {},
        EventPayload::Shutdown {
            reason: reason("shutdown"),
        },
        EventPayload::Paused {
            reason: reason("client"),
        },
        EventPayload::Resumed {
            reason: reason("restart"),
        },
        EventPayload::Suspended {
            reason: reason("shutdown"),
        },
        EventPayload::GenerationStarted(GenerationStarted {
            generation: 1,
            budget: budget.clone(),
            r#gen: 1,
            population_size: 2,
        }),
        EventPayload::ParentSelected(ParentSelected {
            generation: 1,
            candidate_id: 3,
            selector: "pareto".into(),
            score: 0.3,
        }),
        EventPayload::MinibatchEvaluated(MinibatchEvaluated {
            generation: 1,
            candidate_id: 3,
            example_ids: vec!["x".into()],
            parent_scores: vec![0.5],
            child_scores: vec![1.0],
        }),
        EventPayload::ReflectionStarted(ReflectionStarted {
            generation: 1,
            candidate_id: 3,
            component: "system_prompt".into(),
            r#gen: 1,
            feedback: vec!["be brief".into()],
        }),
        EventPayload::ReflectionFinished(ReflectionFinished {
            generation: 1,
            component: "system_prompt".into(),
            rule_based: true,
            r#gen: 1,
        }),
        EventPayload::CandidateProposed(CandidateProposed {
            generation: 1,
            parent_ids: vec![0],
            component: "system_prompt".into(),
            text: "t".into(),
        }),
        EventPayload::CandidateAccepted(verdict.clone()),
        EventPayload::CandidateRejected(CandidateVerdict {
            candidate_id: None,
            ..verdict
        }),
        EventPayload::CandidateScored(CandidateScored {
            candidate_id: 1,
            score: 1.0,
            val_scores,
            cost: 0.5,
            len: 12,
        }),
        EventPayload::JudgeScored(JudgeScored {
            example_id: "e".into(),
            score: 0.7,
            id: "e".into(),
            judge_score: 0.7,
        }),
        EventPayload::FrontierUpdated(FrontierUpdated {
            frontier,
            best_id: 1,
            best_score: 0.5,
            r#gen: 1,
            size: 1,
            best: 0.5,
        }),
        EventPayload::LessonsUpdated(LessonsUpdated {
            lessons: vec!["l".into()],
            count: 1,
            sample: vec!["l".into()],
        }),
        EventPayload::MergeAttempted(MergeAttempted {
            generation: 3,
            parent_ids: vec![1, 2],
            ancestor_id: 1,
            before: 1.0,
            after: 1.5,
            accepted: true,
            attempts: 1,
        }),
        EventPayload::BudgetProgress(budget),
        EventPayload::EvalStarted(EvalStarted {
            name: "toy_qa".into(),
            total: 3,
            task: "t".into(),
            examples: 3,
        }),
        EventPayload::EvalCase(case),
        EventPayload::EvalFinished(EvalFinished {
            score: 0.5,
            count: 3,
        }),
    ]
}

#[test]
fn the_table_has_every_payload() {
    let covered: BTreeSet<usize> = samples().iter().map(variant).collect();
    let missing: Vec<usize> = (0..VARIANTS).filter(|v| !covered.contains(v)).collect();
    assert!(missing.is_empty(), "no sample of variants {missing:?}");
}

#[test]
fn every_payload_round_trips_wire_domain_json() {
    for (i, payload) in samples().into_iter().enumerate() {
        let event = Event {
            id: i as u64 + 1,
            job_id: "j".into(),
            ts: 1_722_033_641.25,
            payload,
        };
        let name = event.payload.type_name();
        // Domain → wire → bytes → wire → domain.
        let wire = pb::JobEvent::from(event.clone());
        assert_eq!(wire.r#type, name);
        let bytes = wire.encode_to_vec();
        let decoded = pb::JobEvent::decode(bytes.as_slice()).expect("decodes");
        let back = Event::try_from(decoded).expect("a known payload");
        assert_eq!(back, event, "{name} through the wire");
        // Domain → JSON → domain: the `data` object the SSE envelope and the stores carry.
        let data = event.payload.data_json();
        assert_eq!(
            event.payload.data_json_text(),
            data.to_string(),
            "{name}: the stores' one-pass text is the data object"
        );
        let parsed = EventPayload::from_parts(name, data.clone()).expect("parses back");
        assert_eq!(parsed, event.payload, "{name} through JSON");
        // Wire → JSON: what REST and SSE clients read is rendered from the wire event, and
        // its `data` is byte for byte the text the stores write.
        let envelope = super::envelope::EventEnvelope::try_from(wire).expect("known");
        assert_eq!(envelope.name, name);
        assert_eq!(envelope.terminal, event.is_terminal(), "{name}");
        let rendered = super::json::EventData::try_from(&pb::JobEvent::from(event.clone()))
            .expect("known")
            .data();
        assert_eq!(
            rendered,
            event.payload.data_json_text(),
            "{name}: wire JSON = stored"
        );
        let whole: serde_json::Value = serde_json::from_str(&envelope.json).expect("envelope");
        assert_eq!(whole["type"], name);
        assert_eq!(whole["id"], event.id);
        assert_eq!(whole["data"], data, "{name}");
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
    let event = Event::try_from(wire("finished", Some(undecodable))).expect("kept");
    assert_eq!(event.payload.type_name(), "failed");
    assert_eq!(event.payload.terminal_status(), Some(JobStatus::Failed));
    let unknown_cancel = Event::try_from(wire("cancelled", None)).expect("kept");
    assert_eq!(unknown_cancel.payload, EventPayload::Cancelled {});
    assert_eq!(
        Event::try_from(wire("finished", None)).map(|e| e.payload.type_name()),
        Ok("failed")
    );
    assert!(Event::try_from(wire("something_new", None)).is_err());
    // The JSON clients read ends the stream the same way.
    let undecodable = pb::job_event::Payload::Finished(pb::Finished {
        result: Some(pb::JobResult { kind: None }),
    });
    for (r#type, payload) in [("finished", Some(undecodable)), ("failed", None)] {
        let event = wire(r#type, payload);
        let data = super::json::EventData::try_from(&event).expect("kept");
        assert_eq!((data.name, data.terminal), ("failed", true));
        assert!(data.data().contains("internal_error"), "{}", data.data());
    }
    let event = wire("shutdown", None);
    let shutdown = super::json::EventData::try_from(&event).expect("kept");
    assert_eq!(
        (shutdown.name, shutdown.data().as_str()),
        ("shutdown", "{}")
    );
    assert!(super::json::EventData::try_from(&wire("something_new", None)).is_err());
}

/// Every payload with every field at its default (empty strings and lists, unset optionals and
/// messages): the rules that leave fields out or render them anyway agree with the stored text.
#[test]
fn empty_payloads_render_as_stored() {
    // Each oneof field number, sent with an empty message, decodes to that payload at its
    // defaults; numbers that are no payload decode to none.
    let mut seen = 0;
    for field in 1..=63u32 {
        let mut bytes = Vec::new();
        prost::encoding::encode_key(
            field,
            prost::encoding::WireType::LengthDelimited,
            &mut bytes,
        );
        bytes.push(0);
        let Ok(wire) = pb::JobEvent::decode(bytes.as_slice()) else {
            continue;
        };
        let Some(payload) = wire.payload.clone() else {
            continue;
        };
        seen += 1;
        let mut wires = vec![wire];
        if let pb::job_event::Payload::Finished(_) = payload {
            type K = pb::job_result::Kind;
            for kind in [
                K::DefaultResult(Default::default()),
                K::Error(Default::default()),
                K::Gepa(Default::default()),
                K::Eval(Default::default()),
            ] {
                wires.push(pb::JobEvent {
                    payload: Some(pb::job_event::Payload::Finished(pb::Finished {
                        result: Some(pb::JobResult { kind: Some(kind) }),
                    })),
                    ..Default::default()
                });
            }
        }
        for wire in wires {
            let rendered = super::json::EventData::try_from(&wire).expect("known");
            let (name, data) = (rendered.name, rendered.data());
            let event = Event::try_from(wire.clone()).expect("known");
            assert_eq!(name, event.payload.type_name());
            assert_eq!(data, event.payload.data_json_text(), "{name}");
        }
    }
    assert_eq!(seen, 29, "every JobEvent payload");
}
