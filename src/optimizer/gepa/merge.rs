//! System-aware merge (paper App. D.1): choose two frontier dominators with a common ancestor
//! that is no better than either and where one side kept the ancestor's text of some component
//! the other changed; build the child component by component; pick a stratified validation
//! subsample to judge it on. The engine caps attempts with `max_merge_invocations`, counting
//! every attempt (the reference counts only accepted merges).

use std::collections::BTreeSet;

use super::engine::{Engine, Halt, MERGE_SUBSAMPLE};
use super::frontier;
use super::state::{Candidate, GepaState, Origin, candidate_hash};
use crate::domain::EventPayload;
use crate::domain::gepa::MergeAttempted;
use crate::optimizer::rng::SeededRng;

/// Pair draws and ancestor draws per pair, as in the reference (10 × 10).
const TRIES: usize = 10;

/// Whether the (i, j, ancestor) triple may be merged.
pub fn eligible(state: &GepaState, i: usize, j: usize, a: usize) -> bool {
    if i == j || state.tried_merges.contains(&(i.min(j), i.max(j), a)) {
        return false;
    }
    let agg_a = state.aggregate(a);
    if agg_a > state.aggregate(i) || agg_a > state.aggregate(j) {
        return false;
    }
    let (ci, cj, ca) = (
        &state.candidates[i],
        &state.candidates[j],
        &state.candidates[a],
    );
    ca.keys().any(|name| {
        let keeps_i = ci.get(name) == ca.get(name);
        let keeps_j = cj.get(name) == ca.get(name);
        keeps_i != keeps_j
    })
}

/// Finds a mergeable (i, j, ancestor) among `dominators`; `i < j`.
pub fn find_triple(
    state: &GepaState,
    dominators: &BTreeSet<usize>,
    rng: &mut SeededRng,
) -> Option<(usize, usize, usize)> {
    let pool: Vec<usize> = dominators.iter().copied().collect();
    if pool.len() < 2 {
        return None;
    }
    for _ in 0..TRIES {
        let x = pool[rng.below(pool.len())];
        let y = pool[rng.below(pool.len())];
        if x == y {
            continue;
        }
        let (i, j) = (x.min(y), x.max(y));
        let (anc_i, anc_j) = (state.ancestors(i), state.ancestors(j));
        if anc_i.contains(&j) || anc_j.contains(&i) {
            continue;
        }
        let common: Vec<usize> = anc_i
            .intersection(&anc_j)
            .copied()
            .filter(|a| eligible(state, i, j, *a))
            .collect();
        if common.is_empty() {
            continue;
        }
        let weights: Vec<f64> = common
            .iter()
            .map(|a| state.aggregate(*a).max(1e-6))
            .collect();
        for _ in 0..TRIES {
            if let Some(k) = rng.weighted(&weights) {
                return Some((i, j, common[k]));
            }
        }
    }
    None
}

/// Builds the merged child: where one side kept the ancestor's text take the other's; where both
/// changed it take the side with the better aggregate (ties random).
pub fn combine(state: &GepaState, i: usize, j: usize, a: usize, rng: &mut SeededRng) -> Candidate {
    let (ci, cj, ca) = (
        &state.candidates[i],
        &state.candidates[j],
        &state.candidates[a],
    );
    let mut child = Candidate::new();
    for (name, ti) in ci {
        let tj = cj.get(name).unwrap_or(ti);
        let ta = ca.get(name);
        let pick = if Some(ti) == ta {
            tj
        } else if Some(tj) == ta || ti == tj {
            ti
        } else {
            let (si, sj) = (state.aggregate(i), state.aggregate(j));
            if si > sj || (si == sj && rng.below(2) == 0) {
                ti
            } else {
                tj
            }
        };
        child.insert(name.clone(), pick.clone());
    }
    child
}

/// True when this composition was already produced (or is already in the pool).
pub fn already_produced(state: &GepaState, child: &Candidate) -> bool {
    state.merged.contains(&candidate_hash(child)) || state.candidates.contains(child)
}

/// Up to `n` validation indices stratified into "i better", "j better" and "tie" buckets.
pub fn subsample(
    state: &GepaState,
    i: usize,
    j: usize,
    n: usize,
    rng: &mut SeededRng,
) -> Vec<usize> {
    let (si, sj) = (&state.val_scores[i], &state.val_scores[j]);
    let mut buckets: [Vec<usize>; 3] = Default::default();
    for k in 0..si.len() {
        let b = if si[k] > sj[k] {
            0
        } else if sj[k] > si[k] {
            1
        } else {
            2
        };
        buckets[b].push(k);
    }
    for bucket in &mut buckets {
        rng.shuffle(bucket);
    }
    let mut picked = Vec::new();
    let mut round = 0;
    while picked.len() < n && buckets.iter().any(|b| b.len() > round) {
        for bucket in &buckets {
            if picked.len() < n
                && let Some(k) = bucket.get(round)
            {
                picked.push(*k);
            }
        }
        round += 1;
    }
    picked.sort_unstable();
    picked
}

impl Engine<'_> {
    /// One merge attempt when an eligible pair exists; false when none does.
    #[tracing::instrument(name = "merge", skip_all, fields(otel.name = "merge", generation))]
    pub(super) async fn try_merge(&mut self, generation: u32) -> Result<bool, Halt> {
        self.sync_fronts();
        let dominators: BTreeSet<usize> = if self.fronts.is_current(&self.state.val_scores) {
            self.fronts.dominators()
        } else {
            let fronts = frontier::instance_fronts(&self.state.val_scores);
            let agg: Vec<f64> = (0..self.state.candidates.len())
                .map(|c| self.state.aggregate(c))
                .collect();
            frontier::dominators(&fronts, &agg)
        };
        let mut rng = self.state.rng.clone();
        let found = find_triple(&self.state, &dominators, &mut rng);
        self.state.rng = rng;
        let Some((i, j, a)) = found else {
            return Ok(false);
        };
        self.state.merges_due = self.state.merges_due.saturating_sub(1);
        self.state.merge_attempts += 1;
        self.state.tried_merges.insert((i, j, a));
        let mut rng = self.state.rng.clone();
        let child = combine(&self.state, i, j, a, &mut rng);
        self.state.rng = rng;
        let parent_ids = vec![i as u32, j as u32];
        if already_produced(&self.state, &child) {
            self.emit(EventPayload::MergeAttempted(MergeAttempted {
                generation,
                parent_ids,
                ancestor_id: a as u32,
                before: 0.0,
                after: 0.0,
                accepted: false,
                attempts: self.state.merge_attempts,
            }))
            .await?;
            return Ok(true);
        }
        self.state.merged.insert(candidate_hash(&child));
        let mut rng = self.state.rng.clone();
        let sub = subsample(&self.state, i, j, MERGE_SUBSAMPLE, &mut rng);
        self.state.rng = rng;
        let records = self.evaluate(&child, true, &sub).await?;
        let after: f64 = records.iter().map(|r| r.score).sum();
        let sum_of = |c: usize| {
            sub.iter()
                .map(|k| self.state.val_scores[c][*k])
                .sum::<f64>()
        };
        let before = sum_of(i).max(sum_of(j));
        let accepted = after >= before;
        self.emit(EventPayload::MergeAttempted(MergeAttempted {
            generation,
            parent_ids,
            ancestor_id: a as u32,
            before,
            after,
            accepted,
            attempts: self.state.merge_attempts,
        }))
        .await?;
        let cost_before = self.budget.spent.cost_usd;
        if accepted && let Some((scores, missing)) = self.validate_child(&child, &[i, j]).await? {
            let id = self.state.add(
                child,
                vec![i, j],
                Origin::Merge,
                scores,
                self.budget.spent.metric_calls,
            );
            self.state.set_imputed(id, missing);
            self.forget_validation(id);
            self.state
                .unannounced
                .push((id, self.budget.spent.cost_usd - cost_before));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::gepa::budget::Spent;
    use crate::optimizer::gepa::state::Origin;

    fn cand(a: &str, b: &str) -> Candidate {
        [
            ("a".to_string(), a.to_string()),
            ("b".to_string(), b.to_string()),
        ]
        .into()
    }

    /// seed(0) → 1 changes `a`, seed → 2 changes `b`.
    fn pool() -> GepaState {
        let mut s = GepaState::new(
            cand("a0", "b0"),
            vec![0.0, 0.0],
            SeededRng::new(1),
            Spent::default(),
        );
        s.add(
            cand("a1", "b0"),
            vec![0],
            Origin::Reflection,
            vec![1.0, 0.0],
            0,
        );
        s.add(
            cand("a0", "b2"),
            vec![0],
            Origin::Reflection,
            vec![0.0, 1.0],
            0,
        );
        s
    }

    #[test]
    fn siblings_with_complementary_edits_are_eligible_and_combine() {
        let mut state = pool();
        assert!(eligible(&state, 1, 2, 0));
        let mut rng = SeededRng::new(2);
        let triple = find_triple(&state, &BTreeSet::from([1, 2]), &mut rng);
        assert_eq!(triple, Some((1, 2, 0)));
        assert_eq!(combine(&state, 1, 2, 0, &mut rng), cand("a1", "b2"));
        state.tried_merges.insert((1, 2, 0));
        assert!(!eligible(&state, 1, 2, 0), "a tried triple is not retried");
    }

    #[test]
    fn ancestors_and_better_ancestors_are_not_eligible() {
        let mut state = pool();
        // 3 descends from 1: never merged with its ancestor.
        state.add(
            cand("a3", "b0"),
            vec![1],
            Origin::Reflection,
            vec![1.0, 1.0],
            0,
        );
        let mut rng = SeededRng::new(2);
        assert_eq!(find_triple(&state, &BTreeSet::from([1, 3]), &mut rng), None);
        // An ancestor better than a descendant is not a valid base.
        state.val_scores[0] = vec![1.0, 1.0];
        assert!(!eligible(&state, 1, 2, 0));
        // Two candidates that both changed the same component only: nothing to merge.
        let mut s = GepaState::new(
            cand("a0", "b0"),
            vec![0.0],
            SeededRng::new(1),
            Spent::default(),
        );
        s.add(cand("x", "b0"), vec![0], Origin::Reflection, vec![1.0], 0);
        s.add(cand("y", "b0"), vec![0], Origin::Reflection, vec![1.0], 0);
        assert!(!eligible(&s, 1, 2, 0));
    }

    #[test]
    fn subsample_draws_from_every_bucket() {
        let mut state = pool();
        state.val_scores[1] = vec![1.0, 0.0, 0.5, 0.5, 1.0, 0.0];
        state.val_scores[2] = vec![0.0, 1.0, 0.5, 0.5, 0.0, 1.0];
        let mut rng = SeededRng::new(4);
        let picked = subsample(&state, 1, 2, 5, &mut rng);
        assert_eq!(picked.len(), 5);
        let has = |set: &[usize]| picked.iter().any(|k| set.contains(k));
        assert!(has(&[0, 4]) && has(&[1, 5]) && has(&[2, 3]));
    }
}
