//! How the SQL stores keep event logs: packed in chunks.
//!
//! A group commit holds events of many jobs. Instead of one row per event, each job's events in
//! a batch become ONE row of `event_chunks`: `(job_id, first_id, last_id, events)`, `events`
//! being a JSON array of `{"id","ts","type","data"}` objects in id order. Rows (and B-tree cells,
//! index entries, WAL frames) then scale with jobs per batch instead of events, which is what
//! makes the durable store cheap under many concurrent jobs (`docs/durability.md`). A job's log
//! is its chunks in `last_id` order; chunks of one job never overlap, and a read that starts
//! inside a chunk skips the events it already has.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{Event, EventPayload};
use crate::error::{Error, Result};
use crate::store::PendingEvent;

/// One row of `event_chunks`, ready to bind.
#[derive(Debug)]
pub(super) struct Chunk<'a> {
    pub job_id: &'a str,
    pub first_id: i64,
    pub last_id: i64,
    pub events: String,
}

/// Packs a batch into one chunk per job (in order of each job's first event). Each job's events
/// must come in increasing id order, as the runtime's writer delivers them. Event texts are
/// rendered by the emitters ([`PendingEvent::json`]), so this is sizing and copying.
pub(super) fn pack(events: &[PendingEvent]) -> Result<Vec<Chunk<'_>>> {
    // Pass 1: one chunk per job, its id range and exact text length.
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
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
                events: String::new(),
            });
            sizes.push(1);
            chunks.len() - 1
        });
        let chunk = &mut chunks[slot];
        if id <= chunk.last_id {
            return Err(Error::Store(format!(
                "events of {} out of order in a batch ({id} after {})",
                event.job_id, chunk.last_id
            )));
        }
        chunk.last_id = id;
        sizes[slot] += pending.json.len() + 1;
        slots.push(slot);
    }
    // Pass 2: copy each event's text into its chunk's array.
    for (chunk, size) in chunks.iter_mut().zip(&sizes) {
        chunk.events.reserve_exact(*size);
    }
    for (pending, slot) in events.iter().zip(slots) {
        let text = &mut chunks[slot].events;
        text.push(if text.is_empty() { '[' } else { ',' });
        if pending.json.is_empty() {
            text.push_str(&pending.event.json_text());
        } else {
            text.push_str(&pending.json);
        }
    }
    for chunk in &mut chunks {
        chunk.events.push(']');
    }
    Ok(chunks)
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
pub(super) fn unpack(
    job_id: &str,
    text: &str,
    after_id: u64,
    limit: usize,
    out: &mut Vec<Event>,
) -> Result<()> {
    let stored: Vec<Stored<'_>> = serde_json::from_str(text).map_err(|e| corrupt(job_id, e))?;
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

fn corrupt(job_id: &str, err: impl std::fmt::Display) -> Error {
    Error::Store(format!("unreadable event chunk of {job_id}: {err}"))
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
        let chunks = pack(&batch).unwrap();
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
        unpack("a", &chunks[0].events, 0, usize::MAX, &mut out).unwrap();
        let expected: Vec<Event> = batch
            .iter()
            .filter(|p| p.event.job_id == "a")
            .map(|p| Event::clone(&p.event))
            .collect();
        assert_eq!(out, expected);

        // A read starting inside the chunk, and a limit.
        let mut out = Vec::new();
        unpack("a", &chunks[0].events, 1, 1, &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn out_of_order_events_of_a_job_are_refused() {
        let batch = vec![
            pending("a", 2, EventPayload::Started {}),
            pending("a", 2, EventPayload::Started {}),
        ];
        assert!(pack(&batch).is_err());
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(unpack("a", "[{\"id\":1}", 0, 10, &mut out).is_err());
        assert!(
            unpack(
                "a",
                r#"[{"id":1,"ts":1,"type":"nope","data":{}}]"#,
                0,
                10,
                &mut out
            )
            .is_err()
        );
    }
}
