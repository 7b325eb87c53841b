//! A GEPA job's candidates, folded from its events. While the job runs, the event log tells
//! ids, parents, origins, component texts (from `candidate_proposed` before each
//! `candidate_accepted`) and validation scores (`candidate_scored`); the checkpoint, saved at the
//! top of every iteration, fills in what events do not carry (a merge's texts, discovery
//! budget). Once the job has finished, its result's pool is authoritative.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::domain::gepa::{CandidateInfo, CandidateProposed, DEFAULT_COMPONENT, GepaResult};
use crate::domain::{Event, EventPayload, JobSpec};

/// A proposal that did not beat its parent on the minibatch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedProposal {
    pub generation: u32,
    pub parent_ids: Vec<u32>,
    pub component: String,
    pub text: String,
    pub example_ids: Vec<String>,
    pub parent_scores: Vec<f64>,
    pub child_scores: Vec<f64>,
}

/// Every candidate of a job so far, and the rejected proposals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lineage {
    pub candidates: Vec<CandidateInfo>,
    pub rejected: Vec<RejectedProposal>,
    /// Validation example ids, in the order of the per-example score matrix.
    pub val_example_ids: Vec<String>,
    pub best_id: u32,
    /// The job this one was branched from.
    pub branched_from: Option<crate::domain::spec::BranchedFrom>,
}

/// The seed candidate of a spec: `system_prompt` plus the extra components.
pub fn seed_components(spec: &JobSpec) -> BTreeMap<String, String> {
    let mut seed = BTreeMap::new();
    seed.insert(DEFAULT_COMPONENT.to_string(), spec.prompt.clone());
    for (name, text) in &spec.gepa.components {
        seed.insert(name.clone(), text.clone());
    }
    seed
}

fn candidate(id: u32) -> CandidateInfo {
    CandidateInfo {
        id,
        parents: Vec::new(),
        origin: String::new(),
        components: BTreeMap::new(),
        score: 0.0,
        val_scores: BTreeMap::new(),
        discovered_at_metric_calls: 0,
        validated_on: 0,
    }
}

/// Folds a job's events (in id order), checkpoint and result into its [`Lineage`].
pub fn fold(
    seed: BTreeMap<String, String>,
    events: &[Event],
    checkpoint: Option<&serde_json::Value>,
    result: Option<&GepaResult>,
) -> Lineage {
    let mut pool: Vec<CandidateInfo> = Vec::new();
    let mut rejected = Vec::new();
    // A generation proposes several children before its verdicts (parallel proposals); the
    // verdicts come in proposal order. A replayed generation (after a hand-over) starts afresh.
    let mut proposals: VecDeque<CandidateProposed> = VecDeque::new();
    let mut minibatch = None;
    let mut metric_calls = 0;
    let mut val_example_ids: Vec<String> = Vec::new();
    let slot = |pool: &mut Vec<CandidateInfo>, id: u32| -> usize {
        while pool.len() <= id as usize {
            let next = pool.len() as u32;
            pool.push(candidate(next));
        }
        id as usize
    };
    let seed_slot = slot(&mut pool, 0);
    pool[seed_slot].origin = "seed".into();
    pool[seed_slot].components = seed;
    for event in events {
        match &event.payload {
            EventPayload::BudgetProgress(b) => metric_calls = b.metric_calls_used,
            EventPayload::GenerationStarted(_)
            | EventPayload::Suspended { .. }
            | EventPayload::Resumed { .. } => proposals.clear(),
            EventPayload::CandidateProposed(p) => proposals.push_back(p.clone()),
            EventPayload::MinibatchEvaluated(m) => minibatch = Some(m.clone()),
            EventPayload::CandidateAccepted(v) => {
                let Some(id) = v.candidate_id else { continue };
                let parent_components = v
                    .parent_ids
                    .first()
                    .and_then(|p| pool.get(*p as usize))
                    .map(|p| p.components.clone())
                    .unwrap_or_default();
                let i = slot(&mut pool, id);
                pool[i].parents = v.parent_ids.clone();
                pool[i].origin = "reflection".into();
                pool[i].components = parent_components;
                if let Some(p) = proposals.pop_front() {
                    pool[i].components.insert(p.component, p.text);
                }
                pool[i].discovered_at_metric_calls = metric_calls;
            }
            EventPayload::CandidateRejected(v) => {
                let (Some(p), m) = (proposals.pop_front(), minibatch.take()) else {
                    continue;
                };
                let (example_ids, parent_scores, child_scores) = m
                    .map(|m| (m.example_ids, m.parent_scores, m.child_scores))
                    .unwrap_or_default();
                rejected.push(RejectedProposal {
                    generation: v.generation,
                    parent_ids: v.parent_ids.clone(),
                    component: p.component,
                    text: p.text,
                    example_ids,
                    parent_scores,
                    child_scores,
                });
            }
            EventPayload::MergeAttempted(m) if m.accepted => {
                // The merged child is appended to the pool; its texts come from the checkpoint.
                let i = pool.len();
                pool.push(candidate(i as u32));
                pool[i].parents = m.parent_ids.clone();
                pool[i].origin = "merge".into();
                pool[i].discovered_at_metric_calls = metric_calls;
            }
            EventPayload::CandidateScored(s) => {
                let i = slot(&mut pool, s.candidate_id);
                pool[i].score = s.score;
                pool[i].val_scores = s.val_scores.clone();
                pool[i].validated_on = s.val_scores.len() as u32;
                if val_example_ids.is_empty() {
                    val_example_ids = s.val_scores.keys().cloned().collect();
                }
            }
            _ => {}
        }
    }
    if let Some(state) = checkpoint.and_then(|c| c.get("state")) {
        overlay_checkpoint(&mut pool, state);
    }
    if let Some(result) = result {
        pool = result.candidates.clone();
    }
    let best_id = pool
        .iter()
        .filter(|c| !c.val_scores.is_empty() || c.id == 0)
        .max_by(|a, b| a.score.total_cmp(&b.score).then(b.id.cmp(&a.id)))
        .map(|c| c.id)
        .unwrap_or(0);
    if let Some(first) = pool.iter().find(|c| !c.val_scores.is_empty()) {
        val_example_ids = first.val_scores.keys().cloned().collect();
    }
    Lineage {
        candidates: pool,
        rejected,
        val_example_ids,
        best_id: result.map(|r| r.best_candidate_id).unwrap_or(best_id),
        branched_from: None,
    }
}

/// Takes texts, parents, origins and discovery budget from a checkpoint's state, read loosely
/// (a field this version does not know is skipped, not an error).
fn overlay_checkpoint(pool: &mut [CandidateInfo], state: &serde_json::Value) {
    let list = |name: &str| {
        state
            .get(name)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (texts, parents, origins, found, imputed) = (
        list("candidates"),
        list("parents"),
        list("origins"),
        list("discovered_at"),
        list("imputed"),
    );
    for (i, c) in pool.iter_mut().enumerate() {
        if let Some(Ok(components)) = texts
            .get(i)
            .map(|t| serde_json::from_value::<BTreeMap<String, String>>(t.clone()))
        {
            c.components = components;
        }
        if let Some(Ok(ids)) = parents
            .get(i)
            .map(|p| serde_json::from_value::<Vec<u32>>(p.clone()))
        {
            c.parents = ids;
        }
        if let Some(origin) = origins.get(i).and_then(|o| o.as_str()) {
            c.origin = origin.to_string();
        }
        if let Some(at) = found.get(i).and_then(|f| f.as_u64()) {
            c.discovered_at_metric_calls = at;
        }
        if let Some(missing) = imputed.get(i).and_then(|m| m.as_array()) {
            c.validated_on = (c.val_scores.len() as u32).saturating_sub(missing.len() as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gepa::{
        CandidateProposed, CandidateScored, CandidateVerdict, MergeAttempted, MinibatchEvaluated,
    };

    fn ev(id: u64, payload: EventPayload) -> Event {
        Event {
            id,
            job_id: "j".into(),
            ts: id as f64,
            payload,
        }
    }

    fn scored(id: u32, a: f64, b: f64) -> EventPayload {
        EventPayload::CandidateScored(CandidateScored {
            candidate_id: id,
            score: (a + b) / 2.0,
            val_scores: BTreeMap::from([("v1".into(), a), ("v2".into(), b)]),
            cost: 0.0,
            len: 0,
        })
    }

    fn proposed(parent: u32, text: &str) -> EventPayload {
        EventPayload::CandidateProposed(CandidateProposed {
            generation: 1,
            parent_ids: vec![parent],
            component: DEFAULT_COMPONENT.into(),
            text: text.into(),
        })
    }

    fn verdict(id: Option<u32>, parent: u32) -> CandidateVerdict {
        CandidateVerdict {
            generation: 1,
            candidate_id: id,
            parent_ids: vec![parent],
            before: 0.0,
            after: 1.0,
            cost: Default::default(),
        }
    }

    fn seed() -> BTreeMap<String, String> {
        BTreeMap::from([(DEFAULT_COMPONENT.to_string(), "seed".to_string())])
    }

    #[test]
    fn events_give_children_their_parent_texts_scores_and_rejections() {
        let events = vec![
            ev(1, scored(0, 0.0, 1.0)),
            ev(2, proposed(0, "worse")),
            ev(
                3,
                EventPayload::MinibatchEvaluated(MinibatchEvaluated {
                    generation: 1,
                    candidate_id: 0,
                    example_ids: vec!["t1".into()],
                    parent_scores: vec![1.0],
                    child_scores: vec![0.0],
                }),
            ),
            ev(4, EventPayload::CandidateRejected(verdict(None, 0))),
            ev(5, proposed(0, "better")),
            ev(6, EventPayload::CandidateAccepted(verdict(Some(1), 0))),
            ev(7, scored(1, 1.0, 1.0)),
        ];
        let lineage = fold(seed(), &events, None, None);
        assert_eq!(lineage.candidates.len(), 2);
        let child = &lineage.candidates[1];
        assert_eq!(child.parents, vec![0]);
        assert_eq!(child.origin, "reflection");
        assert_eq!(child.components[DEFAULT_COMPONENT], "better");
        assert_eq!(child.val_scores["v2"], 1.0);
        assert_eq!(lineage.best_id, 1);
        assert_eq!(lineage.val_example_ids, vec!["v1", "v2"]);
        assert_eq!(lineage.rejected.len(), 1);
        assert_eq!(lineage.rejected[0].text, "worse");
        assert_eq!(lineage.rejected[0].child_scores, vec![0.0]);
    }

    #[test]
    fn parallel_proposals_are_matched_to_their_verdicts_in_proposal_order() {
        // A generation proposes two children, then judges them in the same order; a replayed
        // generation (after a hand-over) proposes again from the start.
        let events = vec![
            ev(1, scored(0, 0.0, 1.0)),
            ev(2, proposed(0, "interrupted")),
            ev(
                3,
                EventPayload::Suspended {
                    reason: "shutdown".into(),
                },
            ),
            ev(
                4,
                EventPayload::Resumed {
                    reason: "restart".into(),
                },
            ),
            ev(5, proposed(0, "first")),
            ev(6, proposed(0, "second")),
            ev(7, EventPayload::CandidateRejected(verdict(None, 0))),
            ev(8, EventPayload::CandidateAccepted(verdict(Some(1), 0))),
            ev(9, scored(1, 1.0, 1.0)),
        ];
        let lineage = fold(seed(), &events, None, None);
        assert_eq!(
            lineage.candidates[1].components[DEFAULT_COMPONENT],
            "second"
        );
        assert_eq!(lineage.rejected.len(), 1);
        assert_eq!(lineage.rejected[0].text, "first");
    }

    #[test]
    fn the_checkpoint_supplies_a_merged_childs_texts() {
        let events = vec![
            ev(1, scored(0, 0.5, 0.5)),
            ev(
                2,
                EventPayload::MergeAttempted(MergeAttempted {
                    generation: 2,
                    parent_ids: vec![0, 0],
                    ancestor_id: 0,
                    before: 0.0,
                    after: 1.0,
                    accepted: true,
                    attempts: 1,
                }),
            ),
            ev(3, scored(1, 1.0, 0.5)),
        ];
        let checkpoint = serde_json::json!({"state": {
            "candidates": [{"system_prompt": "seed"}, {"system_prompt": "merged"}],
            "parents": [[], [0, 0]],
            "origins": ["seed", "merge"],
            "discovered_at": [2, 9],
        }});
        let lineage = fold(seed(), &events, Some(&checkpoint), None);
        assert_eq!(lineage.candidates[1].origin, "merge");
        assert_eq!(
            lineage.candidates[1].components[DEFAULT_COMPONENT],
            "merged"
        );
        assert_eq!(lineage.candidates[1].discovered_at_metric_calls, 9);
    }
}
