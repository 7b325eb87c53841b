//! Everything the engine must carry across an iteration boundary — the checkpoint: the pool
//! (candidates, lineage, origins, per-instance validation scores, discovery budget, round-robin
//! pointers), counters, the RNG, the minibatch sampler, merge bookkeeping, the evaluation cache
//! (every model answer already paid for) and the lessons so far. Serde round-trips it exactly.
//!
//! Checkpoints are incremental: a **base** (the whole [`Checkpoint`]) and **parts** appended
//! after it ([`CheckpointPartRef`]): the memo entries added since the previous write, the spend,
//! and — at the top of an iteration — the state with only the pool entries added since
//! ([`StateDeltaRef`]; the pool is append-only). A resume reads the base and applies the parts
//! in order ([`Checkpoint::apply`]). The engine rewrites the base at the top of an iteration once
//! the parts outweigh it, so bytes written per iteration stay proportional to what changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::budget::Spent;
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

/// One evaluated rollout: the model's output and the metric's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub output: String,
    pub score: f64,
    pub feedback: String,
    /// What the rollout cost (task model, and the judge's share), so a resume that replays it
    /// from the memo books it in the per-proposal ledger as the uninterrupted run did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub task_usd: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_usd: f64,
    /// Tokens the rollout used (task and judge), so a replay books them in the budget.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens: u64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_zero_u64(x: &u64) -> bool {
    *x == 0
}

/// A reflection's answer and what it cost, so a replay books it as the uninterrupted run did.
/// Checkpoints written before 2026-12-06 hold the text alone (read with no cost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ReflectionRepr")]
pub struct Reflection {
    pub text: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usd: f64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ReflectionRepr {
    Text(String),
    Paid {
        text: String,
        #[serde(default)]
        usd: f64,
        #[serde(default)]
        tokens: u64,
    },
}

impl From<ReflectionRepr> for Reflection {
    fn from(repr: ReflectionRepr) -> Self {
        match repr {
            ReflectionRepr::Text(text) => Reflection {
                text,
                usd: 0.0,
                tokens: 0,
            },
            ReflectionRepr::Paid { text, usd, tokens } => Reflection { text, usd, tokens },
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
    /// `workbench::steering::MAX_FEEDBACK`); every later reflection on its component sees it.
    #[serde(default)]
    pub human_feedback: Vec<crate::workbench::HumanFeedback>,
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

/// Every model answer already paid for. Checkpointed after each batch of calls, so a resumed
/// iteration replays them instead of paying (and, with a non-deterministic model, diverging).
///
/// Stored as `{"cache": {"<candidate hash, 16 hex digits>/<example id>": rollout, …},
/// "reflections": {"<hash of model and prompt>": answer, …}}`. In memory a cache key is two
/// integers ([`CacheKey`]: every rollout looks its key up several times, and a formatted
/// string key cost a format and string comparisons each time); the memo keeps the example ids
/// the keys stand for, so the stored text stays what it always was and checkpoints written
/// before the keys were compact resume as they are.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    /// (candidate, example) → rollout. Hashed (an iteration at |V| = 300 inserts, looks up
    /// and drops about 600 entries each); written in key order.
    pub cache: CacheMap<EvalRecord>,
    /// `"<hash of model and prompt>"` → reflection answer.
    pub reflections: BTreeMap<String, Reflection>,
    /// Example ids by [`CacheKey::example`], and each id's index.
    ids: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

/// An evaluation-cache key: a candidate by its hash ([`candidate_hash`]) and an example by its
/// index in its memo's table of example ids ([`Memo::example`]); keys of one memo only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey {
    pub candidate: u64,
    pub example: u32,
}

/// A map by [`CacheKey`] with [`KeyHasher`].
pub type CacheMap<V> =
    std::collections::HashMap<CacheKey, V, std::hash::BuildHasherDefault<KeyHasher>>;
/// A set of [`CacheKey`]s with [`KeyHasher`].
pub type CacheSet = std::collections::HashSet<CacheKey, std::hash::BuildHasherDefault<KeyHasher>>;

/// Hashes a [`CacheKey`] by mixing its two integers (its candidate part is already a hash; no
/// need for SipHash's protection, and no random seed: the same keys land the same way).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        // The table indexes by the low bits: fold the well-mixed high bits into them.
        self.0 ^ (self.0 >> 29)
    }
}

/// A cache key as stored: `"<candidate hash, 16 hex digits>/<example id>"`.
pub struct KeyText<'a> {
    candidate: u64,
    example_id: &'a str,
}

impl std::fmt::Display for KeyText<'_> {
    /// `{:016x}/{}` by hand: a checkpoint part writes hundreds of keys per iteration, and the
    /// formatter's padded hex cost more than the rest of the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 17];
        for (i, digit) in hex[..16].iter_mut().enumerate() {
            *digit = DIGITS[((self.candidate >> (60 - 4 * i)) & 0xf) as usize];
        }
        hex[16] = b'/';
        f.write_str(std::str::from_utf8(&hex).map_err(|_| std::fmt::Error)?)?;
        f.write_str(self.example_id)
    }
}

impl Serialize for KeyText<'_> {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        to.collect_str(self)
    }
}

impl Memo {
    /// The index cache keys give the example `id` (a new one for an id not seen before).
    pub fn example(&mut self, id: &str) -> u32 {
        if let Some(index) = self.index.get(id) {
            return *index;
        }
        let index = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), index);
        index
    }

    /// The key of (candidate hash, example id).
    pub fn key(&mut self, candidate: u64, example_id: &str) -> CacheKey {
        CacheKey {
            candidate,
            example: self.example(example_id),
        }
    }

    /// A key of this memo as stored.
    pub fn key_text(&self, key: CacheKey) -> KeyText<'_> {
        KeyText {
            candidate: key.candidate,
            example_id: self
                .ids
                .get(key.example as usize)
                .map_or("", String::as_str),
        }
    }

    /// The key a stored text names (`None`: not a key's text; nothing can look it up).
    fn read_key(&mut self, text: &str) -> Option<CacheKey> {
        let (candidate, example_id) = text.split_once('/')?;
        if candidate.len() != 16 {
            return None;
        }
        let candidate = u64::from_str_radix(candidate, 16).ok()?;
        Some(self.key(candidate, example_id))
    }

    /// The cache entry a stored key text names.
    pub fn get_text(&self, text: &str) -> Option<&EvalRecord> {
        let (candidate, example_id) = text.split_once('/')?;
        let key = CacheKey {
            candidate: u64::from_str_radix(candidate, 16).ok()?,
            example: *self.index.get(example_id)?,
        };
        self.cache.get(&key)
    }

    /// Whether the cache holds the entry a stored key text names.
    pub fn holds(&self, text: &str) -> bool {
        self.get_text(text).is_some()
    }

    /// Adds another memo's entries (a checkpoint part's) to this one, replacing equal keys.
    pub fn absorb(&mut self, other: Memo) {
        for (key, record) in other.cache {
            let key = self.key(key.candidate, &other.ids[key.example as usize]);
            self.cache.insert(key, record);
        }
        self.reflections.extend(other.reflections);
    }

    /// The cache by stored key text (what equality compares: two memos holding the same
    /// entries may have met their example ids in another order).
    fn by_text(&self) -> BTreeMap<String, &EvalRecord> {
        self.cache
            .iter()
            .map(|(key, record)| (self.key_text(*key).to_string(), record))
            .collect()
    }
}

impl PartialEq for Memo {
    fn eq(&self, other: &Memo) -> bool {
        self.reflections == other.reflections && self.by_text() == other.by_text()
    }
}

/// The cache entries `keys` of `memo`, serialised as a map from key text to record.
struct CacheText<'a> {
    memo: &'a Memo,
    keys: &'a [CacheKey],
}

impl Serialize for CacheText<'_> {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = to.serialize_map(None)?;
        for key in self.keys {
            if let Some(record) = self.memo.cache.get(key) {
                map.serialize_entry(&self.memo.key_text(*key), record)?;
            }
        }
        map.end()
    }
}

impl Serialize for Memo {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut keys: Vec<CacheKey> = self.cache.keys().copied().collect();
        keys.sort_unstable();
        let mut memo = to.serialize_struct("Memo", 2)?;
        memo.serialize_field(
            "cache",
            &CacheText {
                memo: self,
                keys: &keys,
            },
        )?;
        memo.serialize_field("reflections", &self.reflections)?;
        memo.end()
    }
}

impl<'de> Deserialize<'de> for Memo {
    fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Memo, D::Error> {
        /// The memo as stored.
        #[derive(Deserialize)]
        #[serde(rename = "Memo")]
        struct Stored {
            cache: BTreeMap<String, EvalRecord>,
            reflections: BTreeMap<String, Reflection>,
        }
        let stored = Stored::deserialize(from)?;
        let mut memo = Memo {
            reflections: stored.reflections,
            ..Memo::default()
        };
        for (text, record) in stored.cache {
            if let Some(key) = memo.read_key(&text) {
                memo.cache.insert(key, record);
            }
        }
        Ok(memo)
    }
}

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
    pub human_feedback: &'a [crate::workbench::HumanFeedback],
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

/// Every train and validation example's index in a memo's id table ([`Memo::example`]), so
/// the engine makes a cache key from two integers. Hidden contract: made for the memo the
/// engine keeps (its id table only grows, so the indices stay right).
#[derive(Debug, Default)]
pub struct ExampleKeys {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

impl ExampleKeys {
    pub fn new(
        memo: &mut Memo,
        train: &[crate::domain::Example],
        val: &[crate::domain::Example],
    ) -> Self {
        ExampleKeys {
            train: train.iter().map(|e| memo.example(&e.id)).collect(),
            val: val.iter().map(|e| memo.example(&e.id)).collect(),
        }
    }
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
