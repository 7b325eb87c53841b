//! `POST /v1/optimize/{job_id}/stream-token` → `{"stream_token": "…", "expires_at": <unix s>}`.
//! Mounted under the layers: the auth layer admits only bearer tokens here (a stream token
//! cannot mint another), and the token is minted in the name of that bearer's principal.

use axum::Router;
use axum::routing::post;

use crate::api::routes::STREAM_TOKEN;
use crate::edge::extract::JobIdPath;
use crate::layers::auth::Principal;
use crate::layers::stream_token::StreamTokens;

/// The route, minting with `tokens`.
pub fn router<S: Clone + Send + Sync + 'static>(tokens: StreamTokens) -> Router<S> {
    let issue = move |principal: Option<axum::Extension<Principal>>, JobIdPath(job_id)| {
        let tokens = tokens.clone();
        async move {
            let minter = principal.map_or_else(|| "0".to_string(), |p| p.0.id);
            let issued = tokens.issue(&job_id, &minter);
            axum::Json(serde_json::json!({
                "stream_token": issued.token,
                "expires_at": issued.expires_at,
            }))
        }
    };
    Router::new().route(&format!("/v1{STREAM_TOKEN}"), post(issue))
}
