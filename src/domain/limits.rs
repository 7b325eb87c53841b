//! The ranges of a job request's fields and the page sizes: rules of the domain, enforced by
//! [`JobSpec::validate`](super::JobSpec::validate) and read through [`crate::api::limits`] (with
//! the wire-only limits). utoipa takes only literals in `#[schema(minimum = …)]`, so the REST
//! schemas repeat these numbers; `crate::edge::openapi`'s test `the_document_states_the_limits`
//! fails when the document and this table disagree.

use std::ops::RangeInclusive;

/// Page size when a list request names none (jobs and stored examples).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page of a job list.
pub const MAX_JOBS_PAGE: u32 = 500;
/// Largest page of stored examples (`ListExamples`, `GET /v1/examples`).
pub const MAX_EXAMPLES_PAGE: u32 = 500;

/// `temperature`.
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=2.0;
/// `recombination_rate`.
pub const RECOMBINATION_RATE: RangeInclusive<f64> = 0.0..=1.0;
/// `max_tokens` of one completion.
pub const MAX_TOKENS: RangeInclusive<u32> = 1..=100_000;
/// `tournament_size`.
pub const TOURNAMENT_SIZE: RangeInclusive<u32> = 1..=64;
/// `early_stop_patience`.
pub const EARLY_STOP_PATIENCE: RangeInclusive<u32> = 1..=1000;
/// `gepa.minibatch_size`.
pub const MINIBATCH_SIZE: RangeInclusive<u32> = 1..=64;
/// `gepa.parallel_proposals`.
pub const PARALLEL_PROPOSALS: RangeInclusive<u32> = 1..=16;
/// Largest `gepa.max_merge_invocations`.
pub const MAX_MERGE_INVOCATIONS: u32 = 100;
/// Most extra `gepa.components`.
pub const MAX_COMPONENTS: usize = 16;
/// Characters of a component's name.
pub const COMPONENT_NAME_CHARS: RangeInclusive<usize> = 1..=100;
