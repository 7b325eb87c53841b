//! The one error type that crosses module boundaries, and the contract's error codes. It knows
//! no transport and no database: each [`ErrorCode`]'s gRPC code and HTTP status are in
//! [`crate::api::status`] (one table), and the stores map their own driver errors into
//! [`Error::Store`].

use std::fmt;

/// Machine-readable error codes of the public contract (`{"error":{"code":…}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ValidationError,
    NotFound,
    NotCancelable,
    /// The same idempotency key was sent with a different request body.
    IdempotencyConflict,
    /// Pause or resume asked of a job in a state that does not allow it.
    InvalidJobState,
    Unauthorized,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::ValidationError,
        ErrorCode::NotFound,
        ErrorCode::NotCancelable,
        ErrorCode::IdempotencyConflict,
        ErrorCode::InvalidJobState,
        ErrorCode::Unauthorized,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Internal,
    ];

    /// The contract's string (`validation_error`, `not_found`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotCancelable => "not_cancelable",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::InvalidJobState => "invalid_job_state",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Internal => "internal_error",
        }
    }

    /// Parses the contract's string back (used by the edge on gRPC error details).
    pub fn from_str_code(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field. `loc` is the path to the field (for example `["examples", "0", "input"]`);
/// transports prefix it with where the field came from (`body`, `query`, `path`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>) -> Self {
        FieldError {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
        }
    }
}

/// The service's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", validation_message(.0))]
    Validation(Vec<FieldError>),
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("job {job_id} is {status} and cannot be cancelled")]
    NotCancelable { job_id: String, status: String },
    #[error("idempotency key {key:?} was used with a different request (job {job_id})")]
    IdempotencyConflict { key: String, job_id: String },
    #[error("job {job_id} is {status}: {action}")]
    InvalidJobState {
        job_id: String,
        status: String,
        action: &'static str,
    },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("rate limit exceeded, retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// A unary request ran past `REQUEST_TIMEOUT_S`.
    #[error("request took longer than {after_s} s")]
    DeadlineExceeded { after_s: f64 },
    #[error("store error: {0}")]
    Store(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn validation_message(errors: &[FieldError]) -> String {
    match errors.first() {
        Some(first) if errors.len() == 1 => first.msg.clone(),
        Some(first) => format!("{} (and {} more)", first.msg, errors.len() - 1),
        None => "invalid request".to_string(),
    }
}

impl Error {
    /// Shorthand for a single-field validation error.
    pub fn invalid(loc: &[&str], msg: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(loc, msg)])
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Validation(_) => ErrorCode::ValidationError,
            Error::JobNotFound(_) | Error::NotFound(_) => ErrorCode::NotFound,
            Error::NotCancelable { .. } => ErrorCode::NotCancelable,
            Error::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            Error::InvalidJobState { .. } => ErrorCode::InvalidJobState,
            Error::Unauthorized => ErrorCode::Unauthorized,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::DeadlineExceeded { .. } => ErrorCode::DeadlineExceeded,
            Error::Store(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Structured details for the error body (`details` of the contract's envelope): `{}` on
    /// every error but validation errors, which list `errors`, as in the original. Other facts
    /// (the size limit, the wait) are in the message and in headers (`Retry-After`).
    pub fn details(&self) -> serde_json::Value {
        match self {
            Error::Validation(errors) => serde_json::json!({ "errors": errors }),
            _ => serde_json::json!({}),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
