//! The contract boundary: every shape that crosses the wire, and nothing else. Domain code
//! never imports from here; the transports (`grpc/`, `edge/`, `cli/`) use nothing else to
//! speak the contract.
//!
//! - [`pb`]: the generated protobuf and tonic code of `proto/innerloop/v1`.
//! - Conversions wire ↔ domain, as `From`/`TryFrom` that name every field on both sides (no
//!   `..`, no catch-all arm: a field or payload added on either side does not compile until it
//!   is mapped), split by idea: [`jobs`] (status, state, the create request), [`events`] (the
//!   event envelope and every payload), [`gepa_events`] (GEPA and eval payloads), [`results`]
//!   (results, scores, budgets, candidates), [`gepa`] (GEPA options, estimates), [`examples`]
//!   (stored examples, eval requests), [`workbench`] (lineage, steer, branch), and [`values`]
//!   (`Struct` and `Timestamp`).
//! - [`rest`]: the REST JSON shapes (requests, answers, the OpenAPI schemas) and their mapping
//!   onto the protobuf requests and from the responses; the edge and the CLI share them.
//! - [`json`] and [`envelope`]: the JSON contract of events and results (the SSE envelope,
//!   event names, `data` objects, the REST `result`), rendered from the wire types; `build.rs`
//!   declares which generated types render and the per-field rules.
//! - [`routes`]: the route catalogue (every REST route once, with its kind) that the edge
//!   mounts and the layers classify requests by.
//! - [`limits`]: every limit of the contract, for validation and for the OpenAPI document.
//! - [`status`]: the one status table (`ErrorCode` ↔ gRPC code ↔ HTTP status), the one gRPC
//!   encoding of an error (with `ErrorInfo`) and the JSON error envelope.

/// `From` both ways between a wire message and a domain struct with the same field names. Every
/// field is listed once, by how it converts: `same` (moved as is), `each` (a collection whose
/// items convert: repeated messages, maps), `message` (an embedded message the domain always
/// has: `Some(..)` on the wire, its default when absent) and `optional` (an `Option` on both
/// sides). Both sides are destructured in full (no `..`), so a field added to either type is a
/// compile error here until it is listed.
macro_rules! wire_fields {
    ($wire:path, $domain:path {
        $(same: [$($same:ident),* $(,)?] $(,)?)?
        $(each: [$($each:ident),* $(,)?] $(,)?)?
        $(message: [$($message:ident),* $(,)?] $(,)?)?
        $(optional: [$($optional:ident),* $(,)?] $(,)?)?
    }) => {
        impl From<$domain> for $wire {
            fn from(value: $domain) -> Self {
                let $domain {
                    $($($same,)*)? $($($each,)*)? $($($message,)*)? $($($optional,)*)?
                } = value;
                $wire {
                    $($($same,)*)?
                    $($($each: $each.into_iter().map(Into::into).collect(),)*)?
                    $($($message: Some($message.into()),)*)?
                    $($($optional: $optional.map(Into::into),)*)?
                }
            }
        }

        impl From<$wire> for $domain {
            fn from(value: $wire) -> Self {
                let $wire {
                    $($($same,)*)? $($($each,)*)? $($($message,)*)? $($($optional,)*)?
                } = value;
                $domain {
                    $($($same,)*)?
                    $($($each: $each.into_iter().map(Into::into).collect(),)*)?
                    $($($message: $message.unwrap_or_default().into(),)*)?
                    $($($optional: $optional.map(Into::into),)*)?
                }
            }
        }
    };
}

pub mod envelope;
pub mod events;
pub mod examples;
pub mod gepa;
pub mod gepa_events;
pub mod jobs;
pub mod json;
pub mod limits;
pub mod rest;
pub mod results;
pub mod routes;
pub mod status;
pub mod values;
pub mod workbench;

#[cfg(test)]
mod round_trip;

/// Generated protobuf and tonic code for `innerloop.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("innerloop.v1");

    /// Encoded `FileDescriptorSet` of every proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("innerloop_descriptor");
}

/// A wire message lacked a field the domain type cannot do without (an unset `oneof`, an
/// unspecified enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is missing")]
pub struct Missing(pub &'static str);
