//! Every limit of the contract, in one table: the converters and validators enforce these, and
//! the OpenAPI document states the same numbers (checked by `crate::edge::openapi`'s tests).

/// Longest idempotency key (`Idempotency-Key` header, `idempotency_key` field), in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Longest job id a request may name, in bytes (ids we issue are UUIDs).
pub const MAX_JOB_ID_BYTES: usize = 128;

/// Characters of the prompt a job list's request summary shows.
pub const PROMPT_HEAD_CHARS: usize = 120;

/// The ranges of request fields are rules of the domain (a branch validates the spec it
/// builds too); they are defined in [`crate::domain::limits`] and read from here.
pub use crate::domain::limits::*;
