//! Every limit of the contract, in one table: the converters and validators enforce these, and
//! the OpenAPI document states the same numbers (checked by `crate::edge::openapi`'s tests).

use std::ops::RangeInclusive;

/// Longest idempotency key (`Idempotency-Key` header, `idempotency_key` field), in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Longest job id a request may name, in bytes (ids we issue are UUIDs).
pub const MAX_JOB_ID_BYTES: usize = 128;

/// Page size when a list request names none (jobs and stored examples).
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Largest page of stored examples (`ListExamples`, `GET /v1/examples`).
pub const MAX_EXAMPLES_PAGE: u32 = 500;

/// Characters of the prompt a job list's request summary shows.
pub const PROMPT_HEAD_CHARS: usize = 120;

// ---------- ranges of request fields ----------
//
// utoipa takes only literals in `#[schema(minimum = …)]`, so the REST schemas repeat these
// numbers; `crate::edge::openapi`'s test `the_document_states_the_limits` fails when the
// document and this table disagree.

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
