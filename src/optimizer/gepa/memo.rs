//! The memo: every model answer a GEPA job has paid for — rollouts by (candidate, example) and
//! reflections by prompt — with what each cost, so a resumed iteration replays them instead of
//! paying again. In memory a rollout's key is two integers ([`CacheKey`]); stored, it is the
//! text `"<candidate hash>/<example id>"` it always was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// An evaluation-cache key: a candidate by its hash ([`candidate_hash`](super::state::candidate_hash)) and an example by its
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

/// A stored key text's candidate hash and example id (`None`: not `<16 hex digits>/<id>`).
fn parse_key_text(text: &str) -> Option<(u64, &str)> {
    let (candidate, example_id) = text.split_once('/')?;
    if candidate.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(candidate, 16).ok()?, example_id))
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
        let (candidate, example_id) = parse_key_text(text)?;
        Some(self.key(candidate, example_id))
    }

    /// The cache entry a stored key text names.
    pub fn get_text(&self, text: &str) -> Option<&EvalRecord> {
        let (candidate, example_id) = parse_key_text(text)?;
        let key = CacheKey {
            candidate,
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
pub(super) struct CacheText<'a> {
    pub(super) memo: &'a Memo,
    pub(super) keys: &'a [CacheKey],
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
