//! The OpenAPI 3 document of `/v1`, generated from the handlers' and types' annotations.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderValue};
use utoipa::OpenApi;

use super::error::{ErrorBody, ErrorObject};
use super::json::{
    BudgetBody, CreatedJob, DatasetBody, ExampleBody, JobList, JobState, JobSummary, ModeName,
    OptimizeBody, ProbeStatus, Version,
};
use super::routes::{admin, optimize, probes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "innerloop",
        description = "Prompt-optimization jobs over REST and SSE"
    ),
    paths(
        probes::healthz,
        probes::readyz,
        probes::version,
        optimize::create,
        optimize::get,
        optimize::cancel,
        optimize::events,
        admin::list,
        admin::get,
        admin::cancel,
        admin::delete,
    ),
    components(schemas(
        OptimizeBody,
        ModeName,
        DatasetBody,
        BudgetBody,
        ExampleBody,
        CreatedJob,
        JobState,
        JobSummary,
        JobList,
        ProbeStatus,
        Version,
        ErrorBody,
        ErrorObject,
    ))
)]
pub struct ApiDoc;

/// The document as JSON, rendered once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        doc.to_json().unwrap_or_else(|_| "{}".to_string())
    })
}

/// `GET /v1/openapi.json`.
pub async fn document() -> Response {
    let mut response = json().into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
