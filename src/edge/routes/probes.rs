//! Health, readiness and version.

use axum::Json;
use axum::extract::State;

use crate::api::rest::{ProbeStatus, Version};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::CallContext;
use crate::error::ErrorCode;

/// The service whose health the core reports (NOT_SERVING once it drains).
const CORE_SERVICE: &str = "innerloop.v1.OptimizerService";

/// Liveness of the edge process.
#[utoipa::path(get, path = "/v1/healthz", tag = "probes", security(()),
    responses((status = 200, body = ProbeStatus)))]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus {
        status: "ok".into(),
    })
}

/// Readiness: the edge is not draining and the core reports SERVING.
#[utoipa::path(get, path = "/v1/readyz", tag = "probes", security(()),
    responses((status = 200, body = ProbeStatus), (status = 503, body = ErrorBody)))]
pub async fn readyz(
    State(state): State<EdgeState>,
    ctx: CallContext,
) -> Result<Json<ProbeStatus>, ApiError> {
    let not_ready = |why: &str| ApiError::new(ErrorCode::Unavailable, why);
    if state.is_draining() {
        return Err(not_ready("the service is shutting down"));
    }
    let check = tonic_health::pb::HealthCheckRequest {
        service: CORE_SERVICE.to_string(),
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    match state.upstream().health().check(ctx.request(check)).await {
        Ok(answer) if answer.get_ref().status == serving => Ok(Json(ProbeStatus {
            status: "ready".into(),
        })),
        Ok(_) => Err(not_ready("the job service is not serving")),
        Err(_) => Err(not_ready("the job service is unavailable")),
    }
}

/// The service version.
#[utoipa::path(get, path = "/v1/version", tag = "probes",
    responses((status = 200, body = Version)))]
pub async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}
