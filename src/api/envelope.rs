//! The JSON contract of one job event as clients read it: the SSE `event:` name and the
//! compact envelope of its `data:` line, keys in the contract's order
//! (`type, schema_version, job_id, ts, id, data`). The CLI's `--events` output prints the
//! same line. Rendered from the wire [`pb::JobEvent`] alone (the `data` object by
//! [`super::json`]), so the edge renders SSE from this module and the generated types.

use serde::Serialize;

use super::events::UnknownEvent;
use super::json::EventData;
use super::pb;
use super::values::epoch_from_timestamp;

/// The version of the envelope's shape, sent as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// One event ready for a JSON client: what an SSE frame or a CLI line needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// The event's id (the SSE `id:` line).
    pub id: u64,
    /// The event's type (the SSE `event:` line, and `type` in the envelope).
    pub name: &'static str,
    /// Whether this event ends its job's stream.
    pub terminal: bool,
    /// The compact envelope (the SSE `data:` line).
    pub json: String,
}

impl TryFrom<pb::JobEvent> for EventEnvelope {
    /// A non-terminal payload this build does not know (a newer core): the caller skips it.
    type Error = UnknownEvent;
    fn try_from(wire: pb::JobEvent) -> Result<Self, UnknownEvent> {
        let EventData {
            name,
            terminal,
            payload,
        } = EventData::try_from(&wire)?;
        #[derive(Serialize)]
        struct Envelope<'a> {
            r#type: &'static str,
            schema_version: u32,
            job_id: &'a str,
            ts: f64,
            id: u64,
            /// Rendered in place: the untagged payload is the `data` object.
            data: &'a pb::job_event::Payload,
        }
        let envelope = Envelope {
            r#type: name,
            schema_version: SCHEMA_VERSION,
            job_id: &wire.job_id,
            ts: epoch_from_timestamp(wire.time.as_ref()),
            id: wire.id,
            data: &payload,
        };
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        Ok(EventEnvelope {
            id: wire.id,
            name,
            terminal,
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::values::timestamp_from_epoch;

    #[test]
    fn a_wire_event_renders_the_contract_envelope() {
        let wire = pb::JobEvent {
            id: 8,
            job_id: "j1".into(),
            time: Some(timestamp_from_epoch(1722033641.11)),
            r#type: "mutation".into(),
            payload: Some(pb::job_event::Payload::Mutation(pb::Mutation { count: 3 })),
        };
        let envelope = EventEnvelope::try_from(wire).expect("a known payload");
        assert_eq!(envelope.id, 8);
        assert_eq!(envelope.name, "mutation");
        assert!(!envelope.terminal);
        assert_eq!(
            envelope.json,
            r#"{"type":"mutation","schema_version":1,"job_id":"j1","ts":1722033641.11,"id":8,"data":{"count":3}}"#
        );
    }

    #[test]
    fn a_terminal_wire_event_says_so_and_an_unknown_one_is_refused() {
        let cancelled = pb::JobEvent {
            id: 2,
            job_id: "j".into(),
            time: None,
            r#type: "cancelled".into(),
            payload: Some(pb::job_event::Payload::Cancelled(pb::Cancelled {})),
        };
        let unknown = pb::JobEvent {
            r#type: "something_new".into(),
            payload: None,
            ..cancelled.clone()
        };
        let envelope = EventEnvelope::try_from(cancelled).expect("known");
        assert!(envelope.terminal);
        assert_eq!(envelope.name, "cancelled");
        assert!(EventEnvelope::try_from(unknown).is_err());
    }
}
