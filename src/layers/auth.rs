//! Bearer authentication for both transports (`Authorization: Bearer …` on HTTP is the
//! `authorization` metadata on gRPC: it is the same header).
//!
//! Tokens come from `API_BEARER_TOKENS` plus, optionally, `API_BEARER_TOKENS_FILE` (one token per
//! line or a JSON list), re-read when its modification time changes so tokens rotate without a
//! restart. Comparison is constant time (both sides hashed, then compared without early exit,
//! against every token). A verified caller becomes a [`Principal`] whose id is a short hash of
//! the token — never the token — set as a request and a response extension for the rate
//! limiter and the access log. Health, readiness and reflection are public, and so are the
//! metrics unless `METRICS_REQUIRE_AUTH` is set. `REQUIRE_AUTH=false` keeps the original's
//! meaning: a client that presents no credential may create a job (`POST /v1/optimize`,
//! `POST /optimize`, gRPC `CreateJob`) and do nothing else; only `--dev` (`dev_mode`) turns
//! authentication off everywhere. SSE routes also
//! accept `?access_token=<stream token>` for their own job ([`super::stream_token`]); gRPC
//! `WatchJob` accepts the same token as a bearer (the edge forwards it), checked against the
//! `job_id` of the request message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use super::stream_token::{StreamTokenConfig, StreamTokens};
use super::{LayerBody, is_grpc, reject};
use crate::api::routes::{self, RouteKind, classify};
use crate::error::Error;

/// How a principal proved itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    /// A stream token for this job only.
    StreamToken {
        job_id: String,
    },
}

/// A verified caller. `id` is the first 12 hex digits of SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub credential: Credential,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Short, non-reversible id of a token for logs and rate-limit keys.
pub fn principal_id(token: &str) -> String {
    digest(token)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

struct TokenFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    digests: Vec<[u8; 32]>,
}

/// What authentication reads of the configuration (no `Debug`: it holds the tokens).
#[derive(Clone, PartialEq)]
pub struct AuthConfig {
    /// False only in dev mode (`--dev`).
    pub required: bool,
    /// Anonymous clients may create jobs (`REQUIRE_AUTH=false`).
    pub anonymous_create: bool,
    /// Metrics answer without a token (`METRICS_REQUIRE_AUTH=false`).
    pub public_metrics: bool,
    /// `API_BEARER_TOKENS`.
    pub bearer_tokens: Vec<String>,
    /// `API_BEARER_TOKENS_FILE`, re-read when it changes.
    pub bearer_tokens_file: Option<PathBuf>,
    /// The job-scoped SSE tokens.
    pub stream_tokens: StreamTokenConfig,
}

/// The token set and the rules; shared by every layer instance.
pub struct Authenticator {
    /// False only in dev mode.
    required: bool,
    /// `REQUIRE_AUTH=false`: anonymous job creation is allowed.
    anonymous_create: bool,
    /// Metrics answer without a token (`METRICS_REQUIRE_AUTH=false`, the default).
    public_metrics: bool,
    configured: Vec<[u8; 32]>,
    file: RwLock<Option<TokenFile>>,
    pub stream_tokens: StreamTokens,
}

fn parse_token_file(text: &str) -> Vec<String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(trimmed).unwrap_or_default();
    }
    trimmed
        .lines()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with('#'))
        .map(String::from)
        .collect()
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Authenticator {
        let auth = Authenticator {
            required: config.required,
            anonymous_create: config.anonymous_create,
            public_metrics: config.public_metrics,
            configured: config.bearer_tokens.iter().map(|t| digest(t)).collect(),
            file: RwLock::new(config.bearer_tokens_file.clone().map(|path| TokenFile {
                path,
                modified: None,
                digests: Vec::new(),
            })),
            stream_tokens: StreamTokens::configured(&config.stream_tokens),
        };
        auth.reload_file_blocking();
        let no_file_tokens = auth
            .file
            .read()
            .map(|f| f.as_ref().is_none_or(|f| f.digests.is_empty()))
            .unwrap_or(true);
        if auth.required && auth.configured.is_empty() && no_file_tokens {
            tracing::warn!(
                "no bearer token is configured (API_BEARER_TOKENS, API_BEARER_TOKENS_FILE): every request that needs one will be refused (use --dev to turn authentication off)"
            );
        }
        auth
    }

    /// Whether authentication is on (everywhere but in dev mode).
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether `req` may pass without a credential on top of the public routes: the metrics
    /// (unless `METRICS_REQUIRE_AUTH`), and job creation when `REQUIRE_AUTH=false` and the
    /// client presented no credential at all (a wrong token is still a 401, as in the original).
    fn lets_anonymous<B>(&self, req: &Request<B>) -> bool {
        let path = req.uri().path();
        if self.public_metrics && routes::is_metrics(path) {
            return true;
        }
        if !self.anonymous_create || req.headers().contains_key(header::AUTHORIZATION) {
            return false;
        }
        let rest_create = req.method() == http::Method::POST
            && routes::find(path).is_some_and(|m| m.route.path == routes::OPTIMIZE);
        rest_create || (is_grpc(req) && path == GRPC_CREATE)
    }

    fn reload_file_blocking(&self) {
        let Ok(mut guard) = self.file.write() else {
            return;
        };
        let Some(file) = guard.as_mut() else {
            return;
        };
        let modified = std::fs::metadata(&file.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified == file.modified {
            return;
        }
        match std::fs::read_to_string(&file.path) {
            Ok(text) => {
                file.digests = parse_token_file(&text).iter().map(|t| digest(t)).collect();
                file.modified = modified;
                tracing::info!(path = %file.path.display(), tokens = file.digests.len(), "bearer tokens loaded");
            }
            Err(err) => {
                tracing::warn!(path = %file.path.display(), error = %err, "bearer token file unreadable; keeping the previous tokens");
            }
        }
    }

    /// Re-reads the tokens file when it changed (called from the maintenance task).
    pub async fn reload_file_if_changed(self: &Arc<Self>) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.reload_file_blocking()).await;
    }

    /// True when `token` is one of the bearer tokens. Every token is compared, in constant time.
    pub fn is_valid_bearer(&self, token: &str) -> bool {
        let given = digest(token);
        let mut found = false;
        for known in &self.configured {
            found |= ct_eq(known, &given);
        }
        if let Ok(guard) = self.file.read()
            && let Some(file) = guard.as_ref()
        {
            for known in &file.digests {
                found |= ct_eq(known, &given);
            }
        }
        found
    }
}

/// gRPC job creation, open to anonymous clients when `REQUIRE_AUTH=false` (as the REST
/// [`routes::OPTIMIZE`]).
const GRPC_CREATE: &str = "/innerloop.v1.OptimizerService/CreateJob";

/// Logs a loud warning when authentication is off (`--dev`) on a non-loopback address, and a
/// milder one when `REQUIRE_AUTH=false` lets anyone who can reach it create jobs.
pub fn warn_if_unprotected(config: &AuthConfig, addr: SocketAddr, surface: &str) {
    if addr.ip().is_loopback() {
        return;
    }
    if !config.required {
        tracing::warn!(
            %addr,
            surface,
            "AUTHENTICATION IS OFF (--dev) ON A NON-LOOPBACK ADDRESS: anyone who can reach it can create, read and cancel jobs"
        );
    } else if config.anonymous_create {
        tracing::warn!(
            %addr,
            surface,
            "REQUIRE_AUTH=false on a non-loopback address: anyone who can reach it can create jobs (reading them still needs a token)"
        );
    }
}

fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `job_id` (field 1) of a unary gRPC request message whose body is fully buffered.
fn grpc_job_id(body: &[u8]) -> Option<String> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct JobIdOnly {
        #[prost(string, tag = "1")]
        job_id: String,
    }
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = body.get(5..5 + len)?;
    JobIdOnly::decode(message).ok().map(|m| m.job_id)
}

/// Largest gRPC message buffered to check a stream token (a `WatchJobRequest` is tiny).
const STREAM_TOKEN_BODY_LIMIT: usize = 4096;

/// Applies [`AuthService`].
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// Rejects unauthenticated requests (401 / UNAUTHENTICATED) and marks verified ones.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

fn unauthorized<RB: LayerBody>(grpc: bool) -> Response<RB> {
    let mut response = reject::<RB>(grpc, &Error::Unauthorized);
    if !grpc {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: LayerBody,
    RB: LayerBody,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let grpc = is_grpc(&req);
            let kind = classify(req.uri().path());
            if !auth.required() || kind == RouteKind::Public {
                return inner.call(req).await;
            }
            if auth.lets_anonymous(&req) {
                return inner.call(req).await;
            }
            let principal = match (bearer(&req), &kind) {
                (Some(token), _) if auth.is_valid_bearer(token) => Some(Principal {
                    id: principal_id(token),
                    credential: Credential::Bearer,
                }),
                // SSE: `?access_token=` for this job only.
                (None, RouteKind::Stream { job_id: Some(job) }) => {
                    // The principal is the token's minter: its streams count against them.
                    query_param(req.uri().query(), "access_token")
                        .and_then(|token| auth.stream_tokens.verify(job, token))
                        .map(|minter| Principal {
                            id: minter,
                            credential: Credential::StreamToken {
                                job_id: job.clone(),
                            },
                        })
                }
                // gRPC WatchJob with a forwarded stream token: check the message's job id.
                (Some(token), RouteKind::Stream { job_id: None })
                    if grpc && req.uri().path() == routes::STREAMING_RPCS[0] =>
                {
                    let token = token.to_string();
                    let (parts, body) = req.into_parts();
                    let bytes = match http_body_util::Limited::new(body, STREAM_TOKEN_BODY_LIMIT)
                        .collect()
                        .await
                    {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => Bytes::new(),
                    };
                    let job = grpc_job_id(&bytes);
                    req = Request::from_parts(parts, B::full(bytes));
                    job.and_then(|job| {
                        let minter = auth.stream_tokens.verify(&job, &token)?;
                        Some(Principal {
                            id: minter,
                            credential: Credential::StreamToken { job_id: job },
                        })
                    })
                }
                _ => None,
            };
            let Some(principal) = principal else {
                return Ok(unauthorized(grpc));
            };
            req.extensions_mut().insert(principal.clone());
            let mut response = inner.call(req).await?;
            response.extensions_mut().insert(principal);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn authenticator(tokens: &[&str]) -> Authenticator {
        Authenticator::new(
            &Settings {
                api_bearer_tokens: tokens.iter().map(|t| t.to_string()).collect(),
                ..Settings::default()
            }
            .layers()
            .auth,
        )
    }

    #[test]
    fn only_configured_tokens_are_valid() {
        let auth = authenticator(&["alpha", "beta"]);
        assert!(auth.is_valid_bearer("alpha") && auth.is_valid_bearer("beta"));
        assert!(!auth.is_valid_bearer("alph") && !auth.is_valid_bearer(""));
    }

    #[test]
    fn principal_ids_do_not_reveal_the_token() {
        let id = principal_id("super-secret-token");
        assert_eq!(id.len(), 12);
        assert!(!id.contains("secret"));
        assert_ne!(id, principal_id("another-token"));
    }

    #[test]
    fn token_file_rotates_tokens() {
        let dir = std::env::temp_dir().join(format!("innerloop-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, "# comment\nold-token\n").unwrap();
        let auth = Authenticator::new(
            &Settings {
                api_bearer_tokens_file: Some(path.clone()),
                ..Settings::default()
            }
            .layers()
            .auth,
        );
        assert!(auth.is_valid_bearer("old-token"));
        std::fs::write(&path, r#"["new-token"]"#).unwrap();
        // Force a different modification time even on coarse file systems.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        auth.reload_file_blocking();
        assert!(auth.is_valid_bearer("new-token"));
        assert!(!auth.is_valid_bearer("old-token"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bearer_and_query_tokens_are_parsed() {
        let req = Request::builder()
            .header("authorization", "Bearer  abc ")
            .body(())
            .unwrap();
        assert_eq!(bearer(&req), Some("abc"));
        let req = Request::builder()
            .header("authorization", "Basic abc")
            .body(())
            .unwrap();
        assert_eq!(bearer(&req), None);
        assert_eq!(
            query_param(Some("a=1&access_token=t.x"), "access_token"),
            Some("t.x")
        );
    }
}
