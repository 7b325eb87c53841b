//! The OpenAPI 3 document of `/v1`, generated from the handlers' and types' annotations.
//! Routes served by the layers rather than the edge's handlers (stream tokens, metrics) are
//! described here by signature-only functions. Every route needs the bearer token unless its
//! annotation says `security(())`; the SSE routes also take a stream token as `?access_token=`.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderValue};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::routes::{admin, gepa, optimize, probes, workbench};
use crate::api::rest::{
    AcceptanceName, BranchBody, BudgetBody, Candidates, CreatedJob, DatasetBody, DatasetName,
    EvalBody, ExampleBody, ExampleOut, ExamplePage, HumanCandidateBody, JobList, JobState,
    JobSummary, MetricName, ModeName, ObjectiveName, OptimizeBody, ProbeStatus, SelectorName,
    SteerBody, Steered, Upserted, Version,
};
use crate::api::status::{ErrorBody, ErrorObject};

/// One Server-Sent Event of an events route (the stream is a sequence of these). The first
/// frame is only `retry`; `:` ping comments carry no event.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SseEvent {
    /// The event's id (digits), for `Last-Event-ID`.
    pub id: Option<String>,
    /// The event type, e.g. `started`, `progress`, `finished`, `error`.
    pub event: Option<String>,
    /// The compact JSON envelope `{"type","schema_version":1,"job_id","ts","data"}`.
    pub data: Option<String>,
    /// Reconnection delay in milliseconds (`SSE_RETRY_MS`), first frame only.
    pub retry: Option<u64>,
}

/// `POST /v1/optimize/{job_id}/stream-token` answer.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct StreamToken {
    /// `?access_token=` for this job's events route only.
    pub stream_token: String,
    /// Unix epoch seconds after which the token is refused (`STREAM_TOKEN_TTL_S`).
    pub expires_at: u64,
}

/// A short-lived token that opens this job's events route as `?access_token=` (for browsers'
/// `EventSource`, which cannot send headers). Only a bearer token can mint one.
#[utoipa::path(
    post, path = "/v1/optimize/{job_id}/stream-token", tag = "optimize",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = StreamToken),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn stream_token() {}

/// OpenMetrics text exposition of the process's metrics. Public like health (as in the
/// original) unless `METRICS_REQUIRE_AUTH=true`.
#[utoipa::path(
    get, path = "/v1/metrics", tag = "metrics", security(()),
    responses(
        (status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn metrics() {}

/// The same metrics as one JSON object, `{"<name>{labels}": number}`, plus the original's
/// keys (`jobs_created`, `jobs_finished`, `jobs_failed`, `jobs_cancelled`, `sse_clients`,
/// `rate_limited`, `oversize_rejected`, `ts`). Public unless `METRICS_REQUIRE_AUTH=true`.
#[utoipa::path(
    get, path = "/v1/metricsz", tag = "metrics", security(()),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn metricsz() {}

/// The OpenAPI document itself.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "probes",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn openapi_json() {}

/// Adds what the layers answer on every operation: 401 where a token is required, 429 when
/// rate limited, 503 when shedding load, 413 where there is a body (all in the error
/// envelope); and 422 on every
/// operation with a path parameter or a `page_token` (an id over 128 bytes, an unreadable
/// page token).
struct LayerResponses;

impl Modify for LayerResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_param = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|r| r == &Default::default()));
                let responses = &mut op.responses.responses;
                if !public {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| error("Missing or invalid token (unauthorized)"));
                }
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("Rate limited (rate_limited), with Retry-After"));
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("Overloaded or shutting down (unavailable)"));
                if op.request_body.is_some() {
                    responses.entry("413".into()).or_insert_with(|| {
                        error("Body over MAX_REQUEST_BYTES (payload_too_large)")
                    });
                }
                let has_page_token = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.name == "page_token"));
                // Job ids are what the server issues (UUIDs): at most 128 bytes, documented
                // as 1 to 128 characters of [A-Za-z0-9_-] (anything else is a 404 or a 422).
                for param in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(param) = param
                        && param.name == "job_id"
                    {
                        param.schema = Some(RefOr::T(utoipa::openapi::schema::Schema::Object(
                            utoipa::openapi::schema::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::schema::Type::String)
                                .pattern(Some(format!(
                                    "^[A-Za-z0-9_-]{{1,{}}}$",
                                    crate::api::limits::MAX_JOB_ID_BYTES
                                )))
                                .build(),
                        )));
                    }
                }
                if has_path_param || has_page_token {
                    op.responses
                        .responses
                        .entry("422".into())
                        .or_insert_with(|| {
                            error("Invalid id (over 128 bytes) or page token (validation_error)")
                        });
                }
            }
        }
    }
}

/// Adds the security schemes: `bearer` (`Authorization: Bearer <token>`) and `access_token`
/// (a stream token in the query, SSE routes only).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "A stream token for this job (create response or POST /v1/optimize/{job_id}/stream-token)",
            ))),
        );
    }
}

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
        optimize::pause,
        optimize::resume,
        admin::list,
        admin::get,
        admin::cancel,
        admin::delete,
        stream_token,
        gepa::bulk,
        gepa::list,
        gepa::delete,
        gepa::start,
        gepa::get,
        gepa::events,
        workbench::candidates,
        workbench::steer,
        workbench::branch,
        metrics,
        metricsz,
        openapi_json,
    ),
    modifiers(&SecuritySchemes, &LayerResponses),
    security(("bearer" = [])),
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
        StreamToken,
        SseEvent,
        ObjectiveName,
        SelectorName,
        AcceptanceName,
        DatasetName,
        MetricName,
        Upserted,
        ExampleOut,
        ExamplePage,
        EvalBody,
        Candidates,
        SteerBody,
        HumanCandidateBody,
        Steered,
        BranchBody,
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

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;

    use crate::api::limits;

    /// The document's bounds are the limits the core enforces (utoipa's attributes take only
    /// literals, so this ties them to [`limits`]).
    #[test]
    fn the_document_states_the_limits() {
        let doc: serde_json::Value = serde_json::from_str(super::json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let bounds = |schema: &str, field: &str| {
            let property = &schemas[schema]["properties"][field];
            (property["minimum"].as_f64(), property["maximum"].as_f64())
        };
        let floats = |r: &RangeInclusive<f64>| (Some(*r.start()), Some(*r.end()));
        let ints =
            |r: &RangeInclusive<u32>| (Some(f64::from(*r.start())), Some(f64::from(*r.end())));
        assert_eq!(
            bounds("OptimizeBody", "temperature"),
            floats(&limits::TEMPERATURE)
        );
        assert_eq!(
            bounds("OptimizeBody", "max_tokens"),
            ints(&limits::MAX_TOKENS)
        );
        for schema in ["OptimizeBody", "EvalBody"] {
            assert_eq!(
                bounds(schema, "recombination_rate"),
                floats(&limits::RECOMBINATION_RATE)
            );
            assert_eq!(
                bounds(schema, "tournament_size"),
                ints(&limits::TOURNAMENT_SIZE)
            );
            assert_eq!(
                bounds(schema, "early_stop_patience"),
                ints(&limits::EARLY_STOP_PATIENCE)
            );
        }
        assert_eq!(
            bounds("GepaBody", "minibatch_size"),
            ints(&limits::MINIBATCH_SIZE)
        );
        assert_eq!(
            bounds("GepaBody", "parallel_proposals"),
            ints(&limits::PARALLEL_PROPOSALS)
        );
        assert_eq!(
            bounds("GepaBody", "max_merge_invocations").1,
            Some(f64::from(limits::MAX_MERGE_INVOCATIONS))
        );
        let names = &schemas["GepaBody"]["properties"]["components"]["propertyNames"];
        assert_eq!(names["minLength"], *limits::COMPONENT_NAME_CHARS.start());
        assert_eq!(names["maxLength"], *limits::COMPONENT_NAME_CHARS.end());
        for (path, method) in [
            ("/v1/optimize", "post"),
            ("/v1/eval/start", "post"),
            ("/v1/optimize/{job_id}/branch", "post"),
        ] {
            let parameters = doc["paths"][path][method]["parameters"].as_array().unwrap();
            let key = parameters
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap_or_else(|| panic!("{path} takes an Idempotency-Key"));
            assert_eq!(
                key["schema"]["maxLength"],
                limits::MAX_IDEMPOTENCY_KEY_BYTES,
                "{path}"
            );
        }
    }
}
