//! An HTTP error of the edge ([`ApiError`]): a contract code, its HTTP status and the envelope
//! ([`ErrorBody`], from [`crate::api::status`]), built from a gRPC status of the core
//! ([`ApiError::from_status`]) or by the edge's own extractors.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};
use tonic::Code;
use tonic_types::StatusExt;

pub use crate::api::status::ErrorBody;
use crate::api::status::{self, http_status_for_grpc};
use crate::error::ErrorCode;

/// One HTTP error as the contract renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
    /// Seconds for `Retry-After` (rate limits; from the status's `RetryInfo`).
    pub retry_after_s: Option<u64>,
}

/// Where a core field lives in the HTTP request, so `loc` reads `["query","iterations"]`.
fn loc_source(field: &str) -> &'static str {
    match field {
        "iterations" | "page_token" | "page_size" | "limit" | "last_event_id" => "query",
        "job_id" => "path",
        "idempotency_key" => "header",
        _ => "body",
    }
}

/// Prefixes every `details.errors[].loc` of a core validation error with its HTTP source.
fn prefix_locs(details: &mut serde_json::Value) {
    let Some(errors) = details.get_mut("errors").and_then(|e| e.as_array_mut()) else {
        return;
    };
    for error in errors {
        let Some(loc) = error.get_mut("loc").and_then(|l| l.as_array_mut()) else {
            continue;
        };
        let first = loc.first().and_then(|v| v.as_str()).unwrap_or("");
        if matches!(first, "body" | "query" | "path" | "header") {
            continue;
        }
        loc.insert(0, serde_json::Value::from(loc_source(first)));
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.http_status(),
            code,
            message: message.into(),
            details: serde_json::json!({}),
            retry_after_s: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = details;
        self
    }

    /// A validation error on one field; `loc` starts with `body`, `query`, `path` or `header`.
    pub fn invalid(loc: &[&str], msg: impl Into<String>) -> ApiError {
        let msg = msg.into();
        let details = crate::error::Error::invalid(loc, msg.clone()).details();
        ApiError::new(ErrorCode::ValidationError, msg).with_details(details)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// THE mapping of a gRPC status: the contract code from the core's `ErrorInfo` (via
    /// [`status::error_from_status`]); the HTTP status from that code when the core sent one
    /// (422, 409, … as the contract fixes them), else from the googleapis table.
    pub fn from_status(status: &tonic::Status) -> ApiError {
        let info = status::error_from_status(status);
        let ours = info.ours;
        let http = if ours {
            info.code.http_status()
        } else {
            http_status_for_grpc(status.code())
        };
        let mut details = info.details;
        if !details.is_object() {
            details = serde_json::json!({});
        }
        prefix_locs(&mut details);
        let message = if status.code() == Code::Unavailable && !ours {
            "the job service is unavailable".to_string()
        } else {
            info.message
        };
        let retry_after_s = status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .map(|delay| delay.as_secs().max(1))
            .filter(|_| info.code == ErrorCode::RateLimited);
        ApiError {
            status: http,
            code: info.code,
            message,
            details,
            retry_after_s,
        }
    }

    /// The envelope (also the `data` of an SSE `error` event).
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone(), self.details.clone())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        ApiError::from_status(&status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self
            .retry_after_s
            .filter(|_| self.code == ErrorCode::RateLimited);
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn core_codes_win_over_the_generic_table() {
        let status = status::status_from_error(&Error::NotCancelable {
            job_id: "j".into(),
            status: "finished".into(),
        });
        let err = ApiError::from_status(&status);
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(err.code, ErrorCode::NotCancelable);
        let bare = ApiError::from_status(&tonic::Status::failed_precondition("x"));
        assert_eq!(bare.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn validation_locs_get_their_http_source() {
        let status = status::status_from_error(&Error::Validation(vec![
            crate::error::FieldError::new(&["prompt"], "prompt must not be empty"),
            crate::error::FieldError::new(&["iterations"], "iterations must be >= 1"),
        ]));
        let err = ApiError::from_status(&status);
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.details["errors"][0]["loc"],
            serde_json::json!(["body", "prompt"])
        );
        assert_eq!(
            err.details["errors"][1]["loc"],
            serde_json::json!(["query", "iterations"])
        );
    }
}
