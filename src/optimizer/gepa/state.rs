//! Everything the engine must carry across an iteration boundary: the pool (candidates,
//! lineage, origins, per-instance validation scores, discovery budget, round-robin pointers),
//! counters, the RNG, the minibatch sampler, merge bookkeeping and the lessons so far. Serde
//! round-trips it exactly. The answers already paid for are the memo ([`super::memo`]); how
//! state and memo are stored — a base and incremental parts — is [`super::checkpoint`] (both
//! re-exported here).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::budget::Spent;
pub use super::checkpoint::*;
pub use super::memo::*;
use crate::optimizer::rng::SeededRng;

/// Checkpoint schema version; a checkpoint of another version is ignored (the job restarts).
pub const STATE_VERSION: u32 = 2;

/// A candidate: component name → text.
pub type Candidate = BTreeMap<String, String>;

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Seed,
    Reflection,
    Merge,
    /// Hand-written (`SteerJob`).
    Human,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::Reflection => "reflection",
            Origin::Merge => "merge",
            Origin::Human => "human",
        }
    }
}

/// Epoch-shuffled minibatches; each epoch is padded with the least-used ids so it divides evenly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
    uses: Vec<u32>,
}

impl Sampler {
    /// The next `size` train indices out of `n` (size is clamped to `1..=n`).
    pub fn next_batch(&mut self, n: usize, size: usize, rng: &mut SeededRng) -> Vec<usize> {
        let size = size.clamp(1, n.max(1));
        if self.uses.len() != n {
            self.uses = vec![0; n];
        }
        if self.pos + size > self.order.len() {
            let mut ids: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut ids);
            let mut pad_uses = self.uses.clone();
            for id in &ids {
                pad_uses[*id] += 1;
            }
            while !ids.len().is_multiple_of(size) {
                let least = (0..n).min_by_key(|i| (pad_uses[*i], *i)).unwrap_or(0);
                pad_uses[least] += 1;
                ids.push(least);
            }
            self.order = ids;
            self.pos = 0;
        }
        let batch = self.order[self.pos..self.pos + size].to_vec();
        self.pos += size;
        for id in &batch {
            self.uses[*id] += 1;
        }
        batch
    }
}

/// The engine's whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GepaState {
    pub version: u32,
    pub candidates: Vec<Candidate>,
    pub parents: Vec<Vec<usize>>,
    pub origins: Vec<Origin>,
    /// `val_scores[candidate][validation index]`.
    pub val_scores: Vec<Vec<f64>>,
    pub discovered_at: Vec<u64>,
    /// Round-robin pointer (index into the component names) per candidate.
    pub next_component: Vec<usize>,
    /// Iterations completed.
    pub generation: u32,
    pub rng: SeededRng,
    pub spent: Spent,
    pub sampler: Sampler,
    pub merges_due: u32,
    /// Every merge attempt, accepted or not (the cap counts these).
    pub merge_attempts: u32,
    pub last_accepted: bool,
    pub tried_merges: BTreeSet<(usize, usize, usize)>,
    pub merged: BTreeSet<u64>,
    /// Hashes of every child proposed by reflection (a repeat proposal is idle work).
    pub proposed: BTreeSet<u64>,
    pub lessons: Vec<String>,
    /// Consecutive idle iterations: perfect parents or repeated proposals, nothing added.
    pub idle_iterations: u32,
    /// Per candidate, the validation indices NOT scored (sparse validation at the end of the
    /// budget); their `val_scores` are the parent's, as estimates. Rows may be missing (= none).
    #[serde(default)]
    pub imputed: Vec<Vec<usize>>,
    /// Recent rejected reflection proposals (reflection memory), oldest first.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
    /// Candidates added but not yet announced, with the USD their validation cost: announced
    /// (`candidate_scored`, `frontier_updated`, `selected`) at the start of the next generation,
    /// where the original's event order puts scoring, or when the search ends.
    #[serde(default)]
    pub unannounced: Vec<(usize, f64)>,
    /// Human feedback taken from the job's steering inbox, newest last (at most
    /// `domain::steering::MAX_FEEDBACK`); every later reflection on its component sees it.
    #[serde(default)]
    pub human_feedback: Vec<crate::domain::steering::HumanFeedback>,
    /// The cost ledger: every proposal's verdict and spend, in order.
    #[serde(default)]
    pub proposals: Vec<crate::domain::gepa::CandidateVerdict>,
}

/// A reflection proposal that lost on its minibatch (or its validation subsample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub parent: usize,
    pub component: String,
    pub text: String,
    /// Parent's and child's sums on the minibatch.
    pub before: f64,
    pub after: f64,
    pub size: usize,
}

impl GepaState {
    pub fn new(seed: Candidate, seed_scores: Vec<f64>, rng: SeededRng, spent: Spent) -> Self {
        GepaState {
            version: STATE_VERSION,
            candidates: vec![seed],
            parents: vec![Vec::new()],
            origins: vec![Origin::Seed],
            val_scores: vec![seed_scores],
            discovered_at: vec![spent.metric_calls],
            next_component: vec![0],
            generation: 0,
            rng,
            spent,
            sampler: Sampler::default(),
            merges_due: 0,
            merge_attempts: 0,
            last_accepted: false,
            tried_merges: BTreeSet::new(),
            merged: BTreeSet::new(),
            proposed: BTreeSet::new(),
            lessons: Vec::new(),
            idle_iterations: 0,
            imputed: Vec::new(),
            rejected: Vec::new(),
            unannounced: Vec::new(),
            human_feedback: Vec::new(),
            proposals: Vec::new(),
        }
    }

    /// Adds a validated candidate; returns its id.
    pub fn add(
        &mut self,
        candidate: Candidate,
        parents: Vec<usize>,
        origin: Origin,
        scores: Vec<f64>,
        metric_calls: u64,
    ) -> usize {
        let pointer = parents
            .iter()
            .map(|p| self.next_component[*p])
            .max()
            .unwrap_or(0);
        self.merged.insert(candidate_hash(&candidate));
        self.candidates.push(candidate);
        self.parents.push(parents);
        self.origins.push(origin);
        self.val_scores.push(scores);
        self.discovered_at.push(metric_calls);
        self.next_component.push(pointer);
        self.candidates.len() - 1
    }

    /// All ancestors of `c` (not `c` itself).
    pub fn ancestors(&self, c: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = self.parents[c].clone();
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.parents[p].iter().copied());
            }
        }
        seen
    }

    /// Records which validation indices of `c` are estimates.
    pub fn set_imputed(&mut self, c: usize, missing: Vec<usize>) {
        if self.imputed.len() <= c {
            self.imputed.resize(c + 1, Vec::new());
        }
        self.imputed[c] = missing;
    }

    /// Validation indices of `c` that were actually scored.
    pub fn validated_on(&self, c: usize) -> usize {
        self.val_scores[c].len() - self.imputed.get(c).map_or(0, Vec::len)
    }

    pub fn aggregate(&self, c: usize) -> f64 {
        super::frontier::mean(&self.val_scores[c])
    }
}

/// FNV-1a over parts separated by a 0xff byte: a stable hash for cache keys that checkpoints
/// can carry across processes and Rust versions.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.as_bytes().iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Candidates whose hash [`candidate_hash`] remembers, per thread.
const RECENT_HASHES: usize = 8;

/// Stable hash of a candidate (names and texts in order). FNV-1a reads a byte at a time (about
/// a nanosecond a byte: 11 µs for an 11 KB prompt) and an iteration asks for the hashes of the
/// same few candidates (parents, children) a dozen times, so the last few are remembered by
/// content: comparing a candidate with one remembered is a length check or a `memcmp`.
pub fn candidate_hash(candidate: &Candidate) -> u64 {
    thread_local! {
        static RECENT: std::cell::RefCell<std::collections::VecDeque<(Candidate, u64)>> =
            const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some((_, hash)) = recent.iter().find(|(c, _)| c == candidate) {
            return *hash;
        }
        let parts: Vec<&str> = candidate
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        let hash = fnv1a(&parts);
        if recent.len() == RECENT_HASHES {
            recent.pop_front();
        }
        recent.push_back((candidate.clone(), hash));
        hash
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_pads_epochs_and_balances_use() {
        let mut sampler = Sampler::default();
        let mut rng = SeededRng::new(1);
        let mut counts = [0u32; 5];
        for _ in 0..10 {
            let batch = sampler.next_batch(5, 3, &mut rng);
            assert_eq!(batch.len(), 3);
            for id in batch {
                counts[id] += 1;
            }
        }
        // 30 draws over 5 ids: padding keeps every id within one use of the others.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "{counts:?}");
    }

    fn sample_state() -> GepaState {
        let seed: Candidate = [("system_prompt".to_string(), "be nice".to_string())].into();
        let mut state =
            GepaState::new(seed.clone(), vec![0.5], SeededRng::new(3), Spent::default());
        state.add(seed, vec![0], Origin::Reflection, vec![1.0], 4);
        state.tried_merges.insert((1, 2, 0));
        state
    }

    #[test]
    fn the_state_delta_carries_every_field_of_the_state() {
        let state = sample_state();
        let whole = serde_json::to_value(&state).unwrap();
        let delta = serde_json::to_value(StateDeltaRef::of(&state, 1, 0)).unwrap();
        let mut whole_keys: Vec<&String> = whole.as_object().unwrap().keys().collect();
        let mut delta_keys: Vec<&String> = delta
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "pool_from" && *k != "proposals_from")
            .collect();
        whole_keys.sort();
        delta_keys.sort();
        assert_eq!(
            delta_keys, whole_keys,
            "a GepaState field is missing from StateDeltaRef: add it there"
        );
    }

    #[test]
    fn a_base_and_its_parts_read_back_as_the_whole_checkpoint() {
        let mut state = sample_state();
        state.proposals.push(verdict(1));
        let mut memo = Memo::default();
        let a = memo.key(0xa, "1");
        memo.cache.insert(a, record(0.5));
        let base_spent = Spent {
            metric_calls: 1,
            ..Spent::default()
        };
        let base = serde_json::to_value(CheckpointRef {
            state: Some(&state),
            memo: &memo,
            spent: &base_spent,
            replay: &BTreeSet::new(),
        })
        .unwrap();
        // A mid-iteration part (memo only), then a top-of-iteration part with a new candidate.
        let mut journal = CheckpointJournal {
            pool_written: state.candidates.len(),
            proposals_written: state.proposals.len(),
            has_base: true,
            ..CheckpointJournal::default()
        };
        let b = memo.key(0xb, "1");
        memo.cache.insert(b, record(1.0));
        journal.fresh_cache.push(b);
        let spent = Spent {
            metric_calls: 2,
            ..Spent::default()
        };
        let part1 = serde_json::to_string(&CheckpointPartRef {
            state: None,
            memo: journal.memo_delta(&memo),
            spent: &spent,
        })
        .unwrap();
        journal.fresh_cache.clear();
        let parent = state.candidates[1].clone();
        state.add(parent, vec![1], Origin::Merge, vec![0.25], 2);
        state.generation = 3;
        state.proposals.push(verdict(3));
        memo.reflections.insert(
            "r".into(),
            Reflection {
                text: "answer".into(),
                usd: 0.0,
                tokens: 0,
            },
        );
        journal.fresh_reflections.push("r".into());
        let part2 = serde_json::to_string(&CheckpointPartRef {
            state: Some(StateDeltaRef::of(
                &state,
                journal.pool_written,
                journal.proposals_written,
            )),
            memo: journal.memo_delta(&memo),
            spent: &spent,
        })
        .unwrap();
        let mut read: Checkpoint = serde_json::from_value(base).unwrap();
        read.apply(&[part1, part2]);
        assert_eq!(read.state, state);
        assert_eq!(read.memo, memo);
        assert_eq!(read.spent, spent);
    }

    fn verdict(generation: u32) -> crate::domain::gepa::CandidateVerdict {
        crate::domain::gepa::CandidateVerdict {
            generation,
            candidate_id: None,
            parent_ids: vec![0],
            before: 1.0,
            after: 0.0,
            cost: Default::default(),
        }
    }

    fn record(score: f64) -> EvalRecord {
        EvalRecord {
            task_usd: 0.0,
            judge_usd: 0.0,
            tokens: 0,
            output: "o".into(),
            score,
            feedback: "f".into(),
        }
    }

    #[test]
    fn a_memo_is_stored_with_text_keys_and_reads_back_from_them() {
        // The stored form, as every checkpoint has had it (written before keys were compact).
        let stored = serde_json::json!({
            "cache": {
                "00000000000000ab/e1": {"output": "x", "score": 1.0, "feedback": "ok"},
                "00000000000000ab/a/b": {"output": "", "score": 0.0, "feedback": "", "task_usd": 0.5},
                "ffffffffffffffff/e1": {"output": "y", "score": 0.5, "feedback": "half"},
            },
            "reflections": {"0123": "answer"},
        });
        let mut memo: Memo = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(memo.cache.len(), 3);
        let e1 = memo.key(0xab, "e1");
        assert_eq!(memo.cache[&e1].output, "x");
        // An id with a slash in it is the whole rest of the key.
        let ab = memo.key(0xab, "a/b");
        assert_eq!(memo.cache[&ab].task_usd, 0.5);
        let last = memo.key(u64::MAX, "e1");
        assert_eq!(memo.cache[&last].score, 0.5);
        // Reflections are written with what they cost now (a bare text reads as costing 0).
        let mut written = stored.clone();
        written["reflections"]["0123"] = serde_json::json!({"text": "answer"});
        assert_eq!(serde_json::to_value(&memo).unwrap(), written);
        assert_eq!(
            memo.key_text(CacheKey {
                candidate: 0x0123_4567_89ab_cdef,
                example: ab.example,
            })
            .to_string(),
            "0123456789abcdef/a/b"
        );
        // A part's memo learnt its ids in another order: absorbing it re-keys its entries.
        let part: Memo = serde_json::from_value(serde_json::json!({
            "cache": {"0000000000000001/new": {"output": "", "score": 1.0, "feedback": ""},
                      "00000000000000ab/e1": {"output": "z", "score": 0.0, "feedback": ""}},
            "reflections": {},
        }))
        .unwrap();
        memo.absorb(part);
        assert_eq!(memo.cache[&e1].output, "z");
        let new = memo.key(1, "new");
        assert_eq!(memo.cache[&new].score, 1.0);
        assert_eq!(memo.cache.len(), 4);
    }

    #[test]
    fn state_round_trips_through_json() {
        let seed: Candidate = [("system_prompt".to_string(), "be nice".to_string())].into();
        let mut state =
            GepaState::new(seed.clone(), vec![0.5], SeededRng::new(3), Spent::default());
        state.add(seed, vec![0], Origin::Reflection, vec![1.0], 4);
        state.tried_merges.insert((1, 2, 0));
        let json = serde_json::to_value(&state).unwrap();
        let back: GepaState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.ancestors(1), BTreeSet::from([0]));
    }
}
