//! The checkpoint as stored: a **base** (the whole [`Checkpoint`]) and **parts** appended after
//! it ([`CheckpointPartRef`]): the memo entries added since the previous write, the spend, and —
//! at the top of an iteration — the state with only the pool entries added since
//! ([`StateDeltaRef`]; the pool is append-only). A resume reads the base and applies the parts in
//! order ([`Checkpoint::apply`]); [`CheckpointJournal`] is what the engine has written so far.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::budget::Spent;
use super::memo::{CacheKey, CacheText, Memo, Reflection};
use super::state::{Candidate, GepaState, Origin, Rejected, Sampler};
use crate::optimizer::rng::SeededRng;

/// What is stored: the state at the top of the current iteration, the answers paid for since
/// (and before), and the spend including them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub state: GepaState,
    pub memo: Memo,
    pub spent: Spent,
    /// Rollouts and reflections the interrupted iteration paid for (the memo entries of the
    /// parts after the first state part of the last generation, plus those a base written
    /// during a replay carries): its replay serves them from the memo but books them as paid —
    /// in the budget, which a resume restarts from the top of the iteration (`state.spent`),
    /// and in the per-proposal ledger — so every budget decision and the result equal the
    /// uninterrupted run's.
    #[serde(default)]
    pub replay: BTreeSet<String>,
}

/// [`Checkpoint`] by reference, for writing without cloning the memo.
#[derive(Serialize)]
pub struct CheckpointRef<'a> {
    /// `None` (null) until a state has been snapshotted.
    pub state: Option<&'a GepaState>,
    pub memo: &'a Memo,
    pub spent: &'a Spent,
    pub replay: &'a BTreeSet<String>,
}

/// One appended part of a checkpoint, by reference (see the module doc).
#[derive(Serialize)]
pub struct CheckpointPartRef<'a> {
    /// The state at the top of an iteration, when one began since the previous write.
    pub state: Option<StateDeltaRef<'a>>,
    pub memo: MemoDeltaRef<'a>,
    pub spent: &'a Spent,
}

/// Memo entries added since the previous write: the cache entries `cache` of `memo`.
pub struct MemoDeltaRef<'a> {
    pub memo: &'a Memo,
    pub cache: Vec<CacheKey>,
    pub reflections: BTreeMap<&'a str, &'a Reflection>,
}

impl Serialize for MemoDeltaRef<'_> {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut delta = to.serialize_struct("MemoDeltaRef", 2)?;
        let cache = CacheText {
            memo: self.memo,
            keys: &self.cache,
        };
        delta.serialize_field("cache", &cache)?;
        delta.serialize_field("reflections", &self.reflections)?;
        delta.end()
    }
}

/// A [`GepaState`] whose append-only pool vectors (candidates, parents, origins, val_scores,
/// discovered_at) hold only the entries from `pool_from` on, and whose append-only cost ledger
/// (`proposals`) only those from `proposals_from` on; every other field whole.
/// Hidden contract: every field of [`GepaState`] is here (a unit test checks the key sets).
#[derive(Serialize)]
pub struct StateDeltaRef<'a> {
    pub pool_from: usize,
    pub proposals_from: usize,
    pub version: u32,
    pub candidates: &'a [Candidate],
    pub parents: &'a [Vec<usize>],
    pub origins: &'a [Origin],
    pub val_scores: &'a [Vec<f64>],
    pub discovered_at: &'a [u64],
    pub next_component: &'a [usize],
    pub generation: u32,
    pub rng: &'a SeededRng,
    pub spent: &'a Spent,
    pub sampler: &'a Sampler,
    pub merges_due: u32,
    pub merge_attempts: u32,
    pub last_accepted: bool,
    pub tried_merges: &'a BTreeSet<(usize, usize, usize)>,
    pub merged: &'a BTreeSet<u64>,
    pub proposed: &'a BTreeSet<u64>,
    pub lessons: &'a [String],
    pub idle_iterations: u32,
    pub imputed: &'a [Vec<usize>],
    pub rejected: &'a [Rejected],
    pub unannounced: &'a [(usize, f64)],
    pub human_feedback: &'a [crate::domain::steering::HumanFeedback],
    pub proposals: &'a [crate::domain::gepa::CandidateVerdict],
}

/// Counts the bytes written to it.
#[derive(Default)]
pub struct ByteCount(pub usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> StateDeltaRef<'a> {
    /// The bytes of this state's part that a later part supersedes (see
    /// [`CheckpointJournal::superseded_bytes`]).
    pub fn superseded_bytes(state: &GepaState) -> usize {
        let mut count = ByteCount::default();
        let whole = StateDeltaRef::of(state, state.candidates.len(), state.proposals.len());
        match serde_json::to_writer(&mut count, &whole) {
            Ok(()) => count.0,
            Err(_) => 0,
        }
    }

    /// `state` with its pool from `pool_from` on.
    pub fn of(state: &'a GepaState, pool_from: usize, proposals_from: usize) -> Self {
        let from = pool_from.min(state.candidates.len());
        let proposals_from = proposals_from.min(state.proposals.len());
        StateDeltaRef {
            pool_from: from,
            proposals_from,
            version: state.version,
            candidates: &state.candidates[from..],
            parents: &state.parents[from..],
            origins: &state.origins[from..],
            val_scores: &state.val_scores[from..],
            discovered_at: &state.discovered_at[from..],
            next_component: &state.next_component,
            generation: state.generation,
            rng: &state.rng,
            spent: &state.spent,
            sampler: &state.sampler,
            merges_due: state.merges_due,
            merge_attempts: state.merge_attempts,
            last_accepted: state.last_accepted,
            tried_merges: &state.tried_merges,
            merged: &state.merged,
            proposed: &state.proposed,
            lessons: &state.lessons,
            idle_iterations: state.idle_iterations,
            imputed: &state.imputed,
            rejected: &state.rejected,
            unannounced: &state.unannounced,
            human_feedback: &state.human_feedback,
            proposals: &state.proposals[proposals_from..],
        }
    }
}

/// A part as read back.
#[derive(Debug, Deserialize)]
struct CheckpointPart {
    state: Option<StateDelta>,
    memo: Memo,
    spent: Spent,
}

/// [`StateDeltaRef`] as read back: the pool entries from `pool_from` and a whole state
/// otherwise (its pool vectors hold only the new entries).
#[derive(Debug, Deserialize)]
struct StateDelta {
    pool_from: usize,
    /// Absent in parts written before the ledger was appended (they carry it whole).
    #[serde(default)]
    proposals_from: usize,
    #[serde(flatten)]
    state: GepaState,
}

impl Checkpoint {
    /// Where a resumed run's budget starts, and what its replay books as paid. The run replays
    /// the interrupted iteration from its top, so its budget starts at the top's spend and the
    /// replay books every answer the iteration had paid for as it serves it again: each budget
    /// decision (minibatch size, proposals, whether a merge fits, which ids a validation
    /// covers) then sees what the uninterrupted run saw. That holds only when the replay set
    /// accounts for everything paid since the top; if it does not (a base rewritten after a
    /// failed write), the budget starts at the whole spend and nothing is booked again: never
    /// over budget, though the result may then differ.
    pub fn resume_budget(&self) -> (Spent, BTreeSet<String>) {
        let replayed = self.replay.iter().filter(|k| self.memo.holds(k)).count() as u64;
        if self.state.spent.metric_calls + replayed == self.spent.metric_calls {
            (self.state.spent.clone(), self.replay.clone())
        } else {
            tracing::warn!(
                top = self.state.spent.metric_calls,
                replayed,
                spent = self.spent.metric_calls,
                "checkpoint's replay does not account for its spend; resuming from the whole spend"
            );
            (self.spent.clone(), BTreeSet::new())
        }
    }

    /// Applies parts (JSON texts, in order) to this base. A part that does not parse, or whose
    /// pool does not line up, ends the replay there: the checkpoint stays what it was before it
    /// (older but consistent; a resume then re-runs more and pays for nothing it holds).
    pub fn apply(&mut self, parts: &[String]) {
        let mut generation = self.state.generation;
        for text in parts {
            let Ok(part) = serde_json::from_str::<CheckpointPart>(text) else {
                tracing::warn!("unreadable checkpoint part; resuming from the parts before it");
                return;
            };
            match &part.state {
                // A new iteration: the previous one's answers are plain cache hits now. (A
                // resumed run writes the same iteration's top again: nothing to clear.)
                Some(delta) if delta.state.generation != generation => {
                    generation = delta.state.generation;
                    self.replay.clear();
                }
                Some(_) => {}
                None => {
                    self.replay.extend(
                        part.memo
                            .cache
                            .keys()
                            .map(|key| part.memo.key_text(*key).to_string()),
                    );
                    self.replay.extend(part.memo.reflections.keys().cloned());
                }
            }
            if let Some(delta) = part.state {
                let StateDelta {
                    pool_from,
                    proposals_from,
                    state,
                } = delta;
                if pool_from > self.state.candidates.len()
                    || proposals_from > self.state.proposals.len()
                {
                    tracing::warn!("checkpoint part does not follow its base; ignoring the rest");
                    return;
                }
                let mut whole = std::mem::replace(&mut self.state, state);
                whole.candidates.truncate(pool_from);
                whole.parents.truncate(pool_from);
                whole.origins.truncate(pool_from);
                whole.val_scores.truncate(pool_from);
                whole.discovered_at.truncate(pool_from);
                whole.proposals.truncate(proposals_from);
                let new = &mut self.state;
                whole.candidates.append(&mut new.candidates);
                whole.parents.append(&mut new.parents);
                whole.origins.append(&mut new.origins);
                whole.val_scores.append(&mut new.val_scores);
                whole.discovered_at.append(&mut new.discovered_at);
                whole.proposals.append(&mut new.proposals);
                new.candidates = whole.candidates;
                new.parents = whole.parents;
                new.origins = whole.origins;
                new.val_scores = whole.val_scores;
                new.discovered_at = whole.discovered_at;
                new.proposals = whole.proposals;
            }
            self.memo.absorb(part.memo);
            self.spent = part.spent;
        }
    }
}

/// What the engine has written of its checkpoint, so the next write appends only what changed.
#[derive(Debug, Default)]
pub struct CheckpointJournal {
    /// Memo keys added since the last write (cache, reflections).
    pub fresh_cache: Vec<CacheKey>,
    pub fresh_reflections: Vec<String>,
    /// Pool entries and ledger entries (`proposals`) already written.
    pub pool_written: usize,
    pub proposals_written: usize,
    /// A base with a state has been written (parts may follow it).
    pub has_base: bool,
    pub base_bytes: usize,
    /// Bytes of the parts written since the base.
    pub parts_bytes: usize,
    /// Of those, the bytes a later part supersedes: each state part's fields other than the
    /// entries it appends to the pool and the ledger (a resume reads them and drops them).
    pub superseded_bytes: usize,
}

/// Parts are appended until what they hold twice outweighs the base (and at least this much),
/// then the base is rewritten.
pub const MIN_PARTS_BYTES_BEFORE_REBASE: usize = 256 * 1024;

impl CheckpointJournal {
    /// Whether the next top-of-iteration write should be a new base: when the superseded bytes
    /// of the parts outweigh the base. New pool entries and memo entries do not count: a new
    /// base would hold them too. So what a resume reads stays within about twice a fresh base,
    /// and the base — which holds every candidate's text and grows with the run — is rewritten
    /// only as often as the repeated part of the state makes it worth it, not every time the
    /// pool has grown by its own size again.
    pub fn rebase_due(&self) -> bool {
        !self.has_base || self.superseded_bytes > self.base_bytes.max(MIN_PARTS_BYTES_BEFORE_REBASE)
    }

    /// The memo entries added since the last write.
    pub fn memo_delta<'a>(&self, memo: &'a Memo) -> MemoDeltaRef<'a> {
        let mut cache = self.fresh_cache.clone();
        cache.sort_unstable();
        cache.dedup();
        MemoDeltaRef {
            memo,
            cache,
            reflections: self
                .fresh_reflections
                .iter()
                .filter_map(|k| memo.reflections.get_key_value(k))
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        }
    }
}
