//! Answers about the service itself: the probes and the version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"status": …}` of the health and readiness probes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProbeStatus {
    pub status: String,
}

/// `GET /v1/version` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub version: String,
}
