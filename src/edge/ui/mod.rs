//! The workbench page at `/ui`: static HTML, JavaScript and CSS compiled into the binary (no
//! CDN, no build step). The page is public (it holds no data); it asks for the API token and
//! calls the `/v1` routes like any client, opening event streams with a job's stream token.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};

use super::EdgeState;
use crate::api::routes;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// Everything from this origin only; inline SVG and `blob:` downloads are allowed.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CONTENT_SECURITY_POLICY, CSP),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `/ui` and its assets.
pub fn routes() -> Router<EdgeState> {
    Router::new()
        .route(routes::UI, get(index))
        .route(routes::UI_SLASH, get(index))
        .route(routes::UI_SCRIPT, get(app_js))
        .route(routes::UI_STYLE, get(style_css))
}
