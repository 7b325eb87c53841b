//! How the SQL stores keep event logs: packed in chunks.
//!
//! A group commit holds events of many jobs. Instead of one row per event, each job's events in
//! a batch become ONE row of `event_chunks`: `(job_id, first_id, last_id, events)`, `events`
//! being a JSON array of `{"id","ts","type","data"}` objects in id order. Rows (and B-tree cells,
//! index entries, WAL frames) then scale with jobs per batch instead of events, which is what
//! makes the durable store cheap under many concurrent jobs (`docs/durability.md`). A job's log
//! is its chunks in `last_id` order; chunks of one job never overlap, and a read that starts
//! inside a chunk skips the events it already has.
//!
//! On SQLite a chunk's array is stored LZ4-compressed ([`Codec::Lz4`]) when that saves at least
//! an eighth: a BLOB of [`LZ4_FORMAT`], the text's length (`u32`, little-endian) and one LZ4 block.
//! SQLite's storage class is the format marker: TEXT is the plain array (older rows, small or
//! incompressible chunks), BLOB the compressed one, so no migration was needed. Every byte of a
//! chunk passes through SQLite's B-tree, its WAL, the checkpoint and the kernel several times;
//! compressing once on the writer costs less than that (`docs/durability.md`). Postgres keeps
//! text (it compresses large values itself, TOAST).

use std::collections::HashMap;

use lz4_flex::block::CompressTable;
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Type, TypeInfo, ValueRef};

use super::Result;
use crate::domain::{Event, EventPayload};
use crate::store::PendingEvent;
use crate::store::{EventStoreError, StoreFailure};

/// One row of `event_chunks`, ready to bind.
#[derive(Debug)]
pub(super) struct Chunk<'a> {
    pub job_id: &'a str,
    pub first_id: i64,
    pub last_id: i64,
    pub events: Body,
}

/// A chunk's `events` column: the JSON array, as text or compressed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Body {
    Text(String),
    /// [`LZ4_FORMAT`], the text's length and an LZ4 block (SQLite only).
    Lz4(Vec<u8>),
}

/// How [`pack`] stores chunk texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Text,
    Lz4,
}

/// First byte of a compressed chunk: an LZ4 block behind a `u32` length.
pub(super) const LZ4_FORMAT: u8 = 1;
/// Below this many bytes a chunk stays text: too little repeats inside it to pay for a BLOB.
const LZ4_MIN_TEXT: usize = 256;
/// Largest text a compressed chunk may claim to hold when read (a corrupt length must not
/// allocate without bound). A chunk is one job's events of one group commit, far below this.
const LZ4_MAX_TEXT: usize = 1 << 30;

/// Packs a batch into one chunk per job (in order of each job's first event). Each job's events
/// must come in increasing id order, as the runtime's writer delivers them. Event texts are
/// rendered by the emitters ([`PendingEvent::json`]), so this is sizing and copying (and, with
/// [`Codec::Lz4`], compressing).
pub(super) fn pack(events: &[PendingEvent], codec: Codec) -> Result<Vec<Chunk<'_>>> {
    // Pass 1: one chunk per job, its id range, event count and exact text length.
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut slots: Vec<usize> = Vec::with_capacity(events.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for pending in events {
        let event = &pending.event;
        let id = super::rows::to_i64(event.id);
        let slot = *index.entry(event.job_id.as_str()).or_insert_with(|| {
            chunks.push(Chunk {
                job_id: &event.job_id,
                first_id: id,
                last_id: id - 1,
                events: Body::Text(String::new()),
            });
            sizes.push(1);
            counts.push(0);
            chunks.len() - 1
        });
        let chunk = &mut chunks[slot];
        if id <= chunk.last_id {
            return Err(StoreFailure(format!(
                "events of {} out of order in a batch ({id} after {})",
                event.job_id, chunk.last_id
            )));
        }
        chunk.last_id = id;
        sizes[slot] += pending.json.len() + 1;
        counts[slot] += 1;
        slots.push(slot);
    }
    // Pass 2: the events in chunk order (a counting sort; each job's stay in id order).
    let mut starts: Vec<usize> = counts
        .iter()
        .scan(0, |next, count| {
            let start = *next;
            *next += count;
            Some(start)
        })
        .collect();
    let mut order = vec![0usize; events.len()];
    for (i, slot) in slots.into_iter().enumerate() {
        order[starts[slot]] = i;
        starts[slot] += 1;
    }
    // Pass 3: each chunk's array, built in one reused buffer and compressed from there. The
    // buffers live as long as the (writer's) thread, so big batches do not fault in fresh pages.
    SCRATCH.with_borrow_mut(|scratch| {
        build(events, &order, &mut chunks, &sizes, &counts, codec, scratch)
    });
    Ok(chunks)
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
}

/// Buffers [`pack`] reuses.
#[derive(Default)]
struct Scratch {
    text: String,
    lz4: Lz4,
}

/// Fills in each chunk's body: its events (`order`, grouped by chunk) as one array.
fn build(
    events: &[PendingEvent],
    order: &[usize],
    chunks: &mut [Chunk<'_>],
    sizes: &[usize],
    counts: &[usize],
    codec: Codec,
    Scratch { text, lz4 }: &mut Scratch,
) {
    let mut members = order;
    for ((chunk, size), count) in chunks.iter_mut().zip(sizes).zip(counts) {
        let (mine, rest) = members.split_at(*count);
        members = rest;
        text.clear();
        text.reserve(*size);
        for &i in mine {
            let pending = &events[i];
            text.push(if text.is_empty() { '[' } else { ',' });
            if pending.json.is_empty() {
                text.push_str(&pending.event.json_text());
            } else {
                text.push_str(&pending.json);
            }
        }
        text.push(']');
        chunk.events = match codec {
            Codec::Lz4 => lz4.compress(text),
            Codec::Text => Body::Text(text.clone()),
        };
    }
    // A huge batch's buffers are not kept.
    if text.capacity() > SCRATCH_KEPT {
        *text = String::new();
        lz4.out = Vec::new();
    }
}

/// Largest buffer [`Scratch`] keeps between batches.
const SCRATCH_KEPT: usize = 4 << 20;

/// LZ4 state reused across the chunks of a batch.
#[derive(Default)]
struct Lz4 {
    table: CompressTable,
    out: Vec<u8>,
}

impl Lz4 {
    /// `text` as [`Body::Lz4`] when that saves at least an eighth, else as text.
    fn compress(&mut self, text: &str) -> Body {
        let length = match u32::try_from(text.len()) {
            Ok(length) if (LZ4_MIN_TEXT..=LZ4_MAX_TEXT).contains(&text.len()) => length,
            _ => return Body::Text(text.to_string()),
        };
        let bound = 5 + lz4_flex::block::get_maximum_output_size(text.len());
        if self.out.len() < bound {
            self.out.resize(bound, 0);
        }
        self.out[0] = LZ4_FORMAT;
        self.out[1..5].copy_from_slice(&length.to_le_bytes());
        match lz4_flex::block::compress_into_with_table(
            text.as_bytes(),
            &mut self.out[5..],
            &mut self.table,
        ) {
            Ok(size) if 5 + size <= text.len() - text.len() / 8 => {
                Body::Lz4(self.out[..5 + size].to_vec())
            }
            _ => Body::Text(text.to_string()),
        }
    }
}

/// The JSON array a stored chunk holds (decompressing a [`Body::Lz4`]).
fn array_bytes<'b>(
    job_id: &str,
    body: &'b Body,
    scratch: &'b mut Vec<u8>,
) -> Result<&'b [u8], EventStoreError> {
    let packed = match body {
        Body::Text(text) => return Ok(text.as_bytes()),
        Body::Lz4(packed) => packed,
    };
    let (&format, rest) = packed
        .split_first()
        .ok_or_else(|| corrupt(job_id, "empty compressed chunk"))?;
    if format != LZ4_FORMAT || rest.len() < 4 {
        return Err(corrupt(job_id, format!("unknown chunk format {format}")));
    }
    let (length, block) = rest.split_at(4);
    let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
    if length > LZ4_MAX_TEXT {
        return Err(corrupt(job_id, format!("chunk claims {length} bytes")));
    }
    scratch.clear();
    scratch.resize(length, 0);
    let size = lz4_flex::block::decompress_into(block, scratch).map_err(|e| corrupt(job_id, e))?;
    if size != length {
        return Err(corrupt(
            job_id,
            format!("chunk holds {size} of {length} bytes"),
        ));
    }
    Ok(scratch)
}

/// SQLite: TEXT or BLOB, told apart by the value's storage class.
impl Type<Sqlite> for Body {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty) || <Vec<u8> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Body {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        if value.type_info().name() == "BLOB" {
            Ok(Body::Lz4(<Vec<u8> as Decode<Sqlite>>::decode(value)?))
        } else {
            Ok(Body::Text(<String as Decode<Sqlite>>::decode(value)?))
        }
    }
}

/// Postgres: always text.
impl Type<Postgres> for Body {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Body {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        Ok(Body::Text(<String as Decode<Postgres>>::decode(value)?))
    }
}

/// One packed event as stored.
#[derive(Deserialize)]
struct Stored<'a> {
    id: u64,
    ts: f64,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Appends the events of a chunk with id > `after_id` to `out` until it holds `limit`.
/// `scratch` holds a decompressed chunk (reused across the chunks of a read).
pub(super) fn unpack(
    job_id: &str,
    body: &Body,
    after_id: u64,
    limit: usize,
    out: &mut Vec<Event>,
    scratch: &mut Vec<u8>,
) -> Result<(), EventStoreError> {
    let array = array_bytes(job_id, body, scratch)?;
    let stored: Vec<Stored<'_>> = serde_json::from_slice(array).map_err(|e| corrupt(job_id, e))?;
    for item in stored {
        if out.len() >= limit {
            break;
        }
        if item.id <= after_id {
            continue;
        }
        let payload = EventPayload::from_parts(
            &item.kind,
            serde_json::from_str(item.data.get()).map_err(|e| corrupt(job_id, e))?,
        )
        .map_err(|e| corrupt(job_id, e))?;
        out.push(Event {
            id: item.id,
            job_id: job_id.to_string(),
            ts: item.ts,
            payload,
        });
    }
    Ok(())
}

fn corrupt(job_id: &str, err: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Unreadable {
        job_id: job_id.to_string(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pending(job: &str, id: u64, payload: EventPayload) -> PendingEvent {
        PendingEvent::rendered(Arc::new(Event {
            id,
            job_id: job.into(),
            // Microsecond epoch times use all 52 bits: parsing must round-trip exactly.
            ts: 1_795_626_351.651_278_4 + id as f64 * 0.000_001_3,
            payload,
        }))
    }

    #[test]
    fn a_batch_packs_into_one_chunk_per_job_and_unpacks_to_the_same_events() {
        let batch = vec![
            pending("a", 1, EventPayload::Started {}),
            pending("b", 7, EventPayload::Mutation { count: 3 }),
            pending("a", 2, EventPayload::Mutation { count: 1 }),
            pending(
                "a",
                3,
                EventPayload::Failed {
                    error: "x".into(),
                    message: "say \"no\"\n".into(),
                },
            ),
        ];
        let chunks = pack(&batch, Codec::Text).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (chunks[0].job_id, chunks[0].first_id, chunks[0].last_id),
            ("a", 1, 3)
        );
        assert_eq!(
            (chunks[1].job_id, chunks[1].first_id, chunks[1].last_id),
            ("b", 7, 7)
        );

        let mut out = Vec::new();
        let mut scratch = Vec::new();
        unpack(
            "a",
            &chunks[0].events,
            0,
            usize::MAX,
            &mut out,
            &mut scratch,
        )
        .unwrap();
        let expected: Vec<Event> = batch
            .iter()
            .filter(|p| p.event.job_id == "a")
            .map(|p| Event::clone(&p.event))
            .collect();
        assert_eq!(out, expected);

        // A read starting inside the chunk, and a limit.
        let mut out = Vec::new();
        unpack("a", &chunks[0].events, 1, 1, &mut out, &mut scratch).unwrap();
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2]);
    }

    fn progress(job: &str, id: u64, proposal: &str) -> PendingEvent {
        pending(
            job,
            id,
            EventPayload::Progress {
                iteration: id as u32,
                proposal: proposal.into(),
                target_model: "openai/gpt-4o-mini".into(),
                rubric: None,
                scores: Default::default(),
            },
        )
    }

    fn unpacked(job: &str, body: &Body) -> Vec<Event> {
        let mut out = Vec::new();
        unpack(job, body, 0, usize::MAX, &mut out, &mut Vec::new()).unwrap();
        out
    }

    #[test]
    fn lz4_compresses_a_chunk_that_repeats_itself_and_reads_back_the_same_events() {
        let batch: Vec<_> = (1..=20)
            .map(|id| progress("a", id, &format!("Answer in {id} short bullet points.")))
            .chain([progress("b", 1, "tiny")])
            .collect();
        let text = pack(&batch, Codec::Text).unwrap();
        let lz4 = pack(&batch, Codec::Lz4).unwrap();
        let Body::Text(plain) = &text[0].events else {
            panic!("the text codec keeps text")
        };
        let Body::Lz4(packed) = &lz4[0].events else {
            panic!("a repetitive chunk is compressed")
        };
        assert_eq!(packed[0], LZ4_FORMAT);
        assert!(
            packed.len() * 3 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(
            unpacked("a", &lz4[0].events),
            unpacked("a", &text[0].events)
        );
        assert_eq!(unpacked("a", &lz4[0].events).len(), 20);
        // One short event is not worth a BLOB.
        assert!(matches!(lz4[1].events, Body::Text(_)));
        assert_eq!(unpacked("b", &lz4[1].events).len(), 1);
    }

    #[test]
    fn an_incompressible_chunk_stays_text() {
        // Every byte different from its neighbours: LZ4 finds nothing to repeat.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: String = (0..600)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .filter(|c| *c != '"' && *c != '\\')
            .collect();
        let batch = [progress("a", 1, &noise)];
        let lz4 = pack(&batch, Codec::Lz4).unwrap();
        assert!(matches!(lz4[0].events, Body::Text(_)));
    }

    #[test]
    fn a_corrupt_compressed_chunk_is_an_error_not_a_panic() {
        let batch: Vec<_> = (1..=10).map(|id| progress("a", id, "same words")).collect();
        let Body::Lz4(packed) = pack(&batch, Codec::Lz4).unwrap().remove(0).events else {
            panic!("compressed")
        };
        let mut bad = Vec::new();
        let mut read = |body: Vec<u8>| {
            unpack("a", &Body::Lz4(body), 0, 10, &mut bad, &mut Vec::new()).is_err()
        };
        assert!(read(Vec::new()), "empty");
        assert!(read(vec![9, 0, 0, 0, 0]), "unknown format");
        let mut wrong_length = packed.clone();
        wrong_length[1] = wrong_length[1].wrapping_add(1);
        assert!(read(wrong_length), "length that does not match");
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read(huge), "length beyond the limit");
        assert!(read(packed[..packed.len() / 2].to_vec()), "truncated block");
    }

    #[test]
    fn out_of_order_events_of_a_job_are_refused() {
        let batch = vec![
            pending("a", 2, EventPayload::Started {}),
            pending("a", 2, EventPayload::Started {}),
        ];
        assert!(pack(&batch, Codec::Text).is_err());
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        let mut read = |text: &str| {
            unpack(
                "a",
                &Body::Text(text.into()),
                0,
                10,
                &mut out,
                &mut Vec::new(),
            )
            .is_err()
        };
        assert!(read("[{\"id\":1}"));
        assert!(read(r#"[{"id":1,"ts":1,"type":"nope","data":{}}]"#));
    }
}
