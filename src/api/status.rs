//! The one status table of the contract, and the one encoding of an error on each transport.
//!
//! - Each [`ErrorCode`] knows its gRPC code ([`ErrorCode::grpc_code`]) and its HTTP status
//!   ([`ErrorCode::http_status`]); statuses that carry no code of ours are read with the
//!   googleapis `google/rpc/code.proto` table ([`code_for_grpc`], [`http_status_for_grpc`]).
//! - A domain [`Error`] becomes a gRPC status in one way ([`status_from_error`]: an `ErrorInfo`
//!   whose reason is the contract's code), used by the services, the layers and the body limit
//!   alike, so an edge in front of the core maps any of them back to the same HTTP answer
//!   ([`error_from_status`]).
//! - The JSON envelope `{"error":{"code","message","details"}}` is [`ErrorBody`], rendered by
//!   the edge's handlers, its SSE `error` frames and the layers' HTTP rejections.

use std::collections::HashMap;

use http::StatusCode;
use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, ErrorCode};

/// The `domain` of every `ErrorInfo` this service sends.
pub const ERROR_DOMAIN: &str = "innerloop";

impl ErrorCode {
    /// The gRPC status code for this error.
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorCode::ValidationError => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::NotCancelable => Code::FailedPrecondition,
            // ALREADY_EXISTS, not ABORTED: retrying the same call can never succeed (ABORTED
            // says "retry at a higher level"); the key already names another request's job.
            ErrorCode::IdempotencyConflict => Code::AlreadyExists,
            ErrorCode::InvalidJobState => Code::FailedPrecondition,
            ErrorCode::Unauthorized => Code::Unauthenticated,
            ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The HTTP status for this error. The contract fixes these (422 for validation, 409 for
    /// not-cancelable); they win over the generic gRPC→HTTP table when the code is known.
    pub fn http_status(self) -> StatusCode {
        use StatusCode as S;
        match self {
            ErrorCode::ValidationError => S::UNPROCESSABLE_ENTITY,
            ErrorCode::NotFound => S::NOT_FOUND,
            ErrorCode::NotCancelable | ErrorCode::IdempotencyConflict => S::CONFLICT,
            ErrorCode::InvalidJobState => S::CONFLICT,
            ErrorCode::Unauthorized => S::UNAUTHORIZED,
            ErrorCode::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => S::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => S::SERVICE_UNAVAILABLE,
            ErrorCode::DeadlineExceeded => S::GATEWAY_TIMEOUT,
            ErrorCode::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The contract code for a bare gRPC code (statuses from other servers or transports).
pub fn code_for_grpc(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::ValidationError,
        Code::NotFound => ErrorCode::NotFound,
        Code::FailedPrecondition => ErrorCode::NotCancelable,
        Code::AlreadyExists => ErrorCode::IdempotencyConflict,
        Code::Unauthenticated | Code::PermissionDenied => ErrorCode::Unauthorized,
        Code::ResourceExhausted => ErrorCode::RateLimited,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::Internal,
    }
}

/// The googleapis `google/rpc/code.proto` HTTP mapping, used for statuses that carry no
/// contract code of ours (another server, a transport failure).
pub fn http_status_for_grpc(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

// ---------- the JSON envelope ----------

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// `error` of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// `validation_error`, `not_found`, `not_cancelable`, `unauthorized`, `payload_too_large`,
    /// `rate_limited`, `unavailable`, `deadline_exceeded` or `internal_error`.
    pub code: String,
    pub message: String,
    /// `{}` on every error but `validation_error`, whose `errors[{loc, msg}]` lists the fields.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>, details: serde_json::Value) -> Self {
        ErrorBody {
            error: ErrorObject {
                code: code.as_str().to_string(),
                message: message.into(),
                details,
            },
        }
    }

    /// The envelope of a domain error: its code, its message and its details.
    pub fn from_error(err: &Error) -> Self {
        ErrorBody::new(err.code(), err.to_string(), err.details())
    }

    /// Compact JSON, keys in the contract's order (`code, message, details`).
    pub fn to_json(&self) -> String {
        // Serializing strings and a `Value` cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

// ---------- the gRPC encoding ----------

/// A domain error as a gRPC status: the code from [`ErrorCode::grpc_code`], an `ErrorInfo`
/// whose reason is the contract's code (and whose `details` metadata is the JSON details), a
/// `BadRequest` for validation errors and a `RetryInfo` (and `retry-after`) for rate limits.
pub fn status_from_error(err: &Error) -> Status {
    let code = err.code();
    let mut metadata = HashMap::new();
    metadata.insert("details".to_string(), err.details().to_string());
    let mut details = ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, metadata);
    if let Error::Validation(errors) = err {
        for field in errors {
            details.add_bad_request_violation(field.loc.join("."), field.msg.clone());
        }
    }
    if let Error::RateLimited { retry_after_s } = err {
        details.set_retry_info(Some(std::time::Duration::from_secs(*retry_after_s)));
    }
    let mut status = Status::with_error_details(code.grpc_code(), err.to_string(), details);
    if let Error::RateLimited { retry_after_s } = err
        && let Ok(value) = retry_after_s.to_string().parse()
    {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        status_from_error(&err)
    }
}

/// What a client can recover from a status: the contract code, message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInfo {
    /// The contract's code when the server sent one, else derived from the gRPC code.
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
    /// True when the status carries our `ErrorInfo` (its code then fixes the HTTP status).
    pub ours: bool,
}

/// Reads a status produced by [`status_from_error`] (or any other server's status).
pub fn error_from_status(status: &Status) -> StatusInfo {
    let info = status
        .get_details_error_info()
        .filter(|i| i.domain == ERROR_DOMAIN);
    let code = info
        .as_ref()
        .and_then(|i| ErrorCode::from_str_code(&i.reason))
        .unwrap_or_else(|| code_for_grpc(status.code()));
    let details = info
        .as_ref()
        .and_then(|i| i.metadata.get("details"))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    StatusInfo {
        code,
        message: status.message().to_string(),
        details,
        ours: info.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_status_round_trip() {
        let err = Error::invalid(&["prompt"], "prompt must not be empty");
        let status = status_from_error(&err);
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = error_from_status(&status);
        assert_eq!(info.code, ErrorCode::ValidationError);
        assert!(info.ours);
        assert_eq!(
            info.details["errors"][0]["loc"],
            serde_json::json!(["prompt"])
        );
    }

    #[test]
    fn every_code_survives_the_status_round_trip() {
        for code in ErrorCode::ALL {
            let status = Status::with_error_details(
                code.grpc_code(),
                "m",
                ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, HashMap::new()),
            );
            assert_eq!(error_from_status(&status).code, code, "{code}");
        }
    }

    #[test]
    fn the_envelope_keeps_the_contract_order() {
        let body = ErrorBody::from_error(&Error::NotFound("job x".into()));
        assert_eq!(
            body.to_json(),
            r#"{"error":{"code":"not_found","message":"job x not found","details":{}}}"#
        );
    }

    #[test]
    fn the_googleapis_table_holds() {
        let table = [
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status_for_grpc(code).as_u16(), http, "{code:?}");
        }
    }
}
