//! The route catalogue: every REST route once, with what it is. The edge mounts its handlers
//! on these paths; the layers classify requests with [`classify`] (public? a stream? which
//! job?) and the access log labels them with [`template`]. A path that is not here is
//! `unmatched` for metrics and an ordinary authenticated unary request for the layers.

/// What a route is, as far as anything but its handler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Health, readiness and the workbench page: no credential, no rate limit.
    Public,
    /// `/metrics` and `/metricsz`: public unless `METRICS_REQUIRE_AUTH`.
    Metrics,
    /// An SSE stream of one job's events (`{job_id}`): no timeout, counted against the
    /// per-principal stream cap, open to that job's stream token.
    Events,
    /// A request about one job (`{job_id}`), which the access log names.
    JobScoped,
    /// Any other request.
    Unary,
}

/// Where a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// Under `/v1` only.
    V1,
    /// Under `/v1` and unversioned (the original's paths, with deprecation headers).
    V1AndAlias,
    /// At the root, not versioned (the workbench page).
    Root,
}

/// One REST route. `path` is relative to its mount, in axum syntax: `{job_id}` names a job,
/// any other `{param}` something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub kind: Kind,
    pub mount: Mount,
}

macro_rules! catalogue {
    ($($name:ident = $path:literal, $kind:ident, $mount:ident;)+) => {
        $(
            #[doc = concat!("`", $path, "`")]
            pub const $name: &str = $path;
        )+
        /// Every REST route of the edge.
        pub const ROUTES: &[Route] = &[
            $(Route { path: $path, kind: Kind::$kind, mount: Mount::$mount },)+
        ];
    };
}

catalogue! {
    HEALTHZ = "/healthz", Public, V1AndAlias;
    READYZ = "/readyz", Public, V1AndAlias;
    VERSION = "/version", Unary, V1AndAlias;
    METRICS = "/metrics", Metrics, V1AndAlias;
    METRICSZ = "/metricsz", Metrics, V1AndAlias;
    OPENAPI = "/openapi.json", Unary, V1;
    OPTIMIZE = "/optimize", Unary, V1AndAlias;
    OPTIMIZE_ESTIMATE = "/optimize/estimate", Unary, V1AndAlias;
    OPTIMIZE_JOB = "/optimize/{job_id}", JobScoped, V1AndAlias;
    OPTIMIZE_EVENTS = "/optimize/{job_id}/events", Events, V1AndAlias;
    OPTIMIZE_PAUSE = "/optimize/{job_id}/pause", JobScoped, V1AndAlias;
    OPTIMIZE_RESUME = "/optimize/{job_id}/resume", JobScoped, V1AndAlias;
    STREAM_TOKEN = "/optimize/{job_id}/stream-token", JobScoped, V1;
    CANDIDATES = "/optimize/{job_id}/candidates", JobScoped, V1;
    STEER = "/optimize/{job_id}/steer", JobScoped, V1;
    BRANCH = "/optimize/{job_id}/branch", JobScoped, V1;
    ADMIN_JOBS = "/admin/jobs", Unary, V1;
    ADMIN_JOB = "/admin/jobs/{job_id}", JobScoped, V1;
    ADMIN_CANCEL = "/admin/jobs/{job_id}/cancel", JobScoped, V1;
    EXAMPLES = "/examples", Unary, V1;
    EXAMPLES_BULK = "/examples/bulk", Unary, V1;
    EXAMPLE = "/examples/{id}", Unary, V1;
    EVAL_START = "/eval/start", Unary, V1AndAlias;
    EVAL_JOB = "/eval/{job_id}", JobScoped, V1AndAlias;
    EVAL_EVENTS = "/eval/{job_id}/events", Events, V1AndAlias;
    UI = "/ui", Public, Root;
    UI_SLASH = "/ui/", Public, Root;
    UI_SCRIPT = "/ui/app.js", Public, Root;
    UI_STYLE = "/ui/style.css", Public, Root;
}

/// gRPC paths that need no credential and are not rate limited: health and reflection.
pub const PUBLIC_RPC_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Server-streaming RPCs of the core (the health `Watch` is public and not capped).
pub const STREAMING_RPCS: &[&str] = &[
    "/innerloop.v1.JobService/WatchJob",
    "/innerloop.v1.OptimizerService/Optimize",
];

/// A request path matched against the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: &'static Route,
    /// The `{job_id}` segment, when the route names a job.
    pub job_id: Option<&'a str>,
}

/// The catalogue's route for `path` (`/v1/…`, an alias, or a root route). A literal segment
/// wins over a parameter (`/optimize/estimate` is not a job), as in axum's router.
pub fn find(path: &str) -> Option<Matched<'_>> {
    let (relative, versioned) = match path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => (rest, true),
        _ => (path, false),
    };
    let mut best: Option<(usize, Matched<'_>)> = None;
    for route in ROUTES {
        let served = match route.mount {
            Mount::V1 => versioned,
            Mount::V1AndAlias => true,
            Mount::Root => !versioned,
        };
        if !served {
            continue;
        }
        let Some((params, job_id)) = match_segments(route.path, relative) else {
            continue;
        };
        if best.as_ref().is_none_or(|(fewest, _)| params < *fewest) {
            best = Some((params, Matched { route, job_id }));
        }
    }
    best.map(|(_, matched)| matched)
}

/// How many parameters `pattern` used to match `path`, and the `{job_id}` value.
fn match_segments<'a>(pattern: &str, path: &'a str) -> Option<(usize, Option<&'a str>)> {
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    let mut params = 0;
    let mut job_id = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some((params, job_id)),
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params += 1;
                if w == "{job_id}" {
                    job_id = Some(g);
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// The metric label of a path: the route with every parameter as `{id}` (keeping `/v1` when
/// the path had it), or [`UNMATCHED`]: the label set stays bounded whatever clients send.
pub fn template(path: &str) -> String {
    let Some(matched) = find(path) else {
        return UNMATCHED.to_string();
    };
    let prefix = if matched.route.mount != Mount::Root && path.starts_with("/v1/") {
        "/v1"
    } else {
        ""
    };
    let mut out = String::from(prefix);
    for segment in matched.route.path.split('/').skip(1) {
        out.push('/');
        out.push_str(if segment.starts_with('{') {
            "{id}"
        } else {
            segment
        });
    }
    out
}

/// The label of every path that is not a route.
pub const UNMATCHED: &str = "unmatched";

/// What a request is to the layers, by its path (REST or gRPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// Health, readiness, the workbench page and gRPC reflection: no auth, no rate limit.
    Public,
    /// A long-lived stream (SSE events, `WatchJob`, `Optimize`): no timeout, counted against the
    /// per-principal stream cap. `job_id` is known for SSE routes (from the path).
    Stream { job_id: Option<String> },
    /// Everything else.
    Unary,
}

/// Classifies a request by its path.
pub fn classify(path: &str) -> RouteKind {
    if PUBLIC_RPC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return RouteKind::Public;
    }
    if STREAMING_RPCS.contains(&path) {
        return RouteKind::Stream { job_id: None };
    }
    match find(path) {
        Some(Matched {
            route: Route {
                kind: Kind::Public, ..
            },
            ..
        }) => RouteKind::Public,
        Some(Matched {
            route: Route {
                kind: Kind::Events, ..
            },
            job_id,
        }) => RouteKind::Stream {
            job_id: job_id.map(String::from),
        },
        _ => RouteKind::Unary,
    }
}

/// The job id of an SSE events route (`/v1/optimize/{id}/events`, `/v1/eval/{id}/events` and
/// their unversioned aliases).
pub fn events_job_id(path: &str) -> Option<&str> {
    find(path)
        .filter(|m| m.route.kind == Kind::Events)
        .and_then(|m| m.job_id)
}

/// The job a request names in its path, for logs.
pub fn path_job_id(path: &str) -> Option<&str> {
    find(path).and_then(|m| m.job_id)
}

/// Whether `path` is a metrics route.
pub fn is_metrics(path: &str) -> bool {
    find(path).is_some_and(|m| m.route.kind == Kind::Metrics)
}

/// The full paths a route is served at (for mounting and tests).
pub fn served_paths(route: &Route) -> Vec<String> {
    match route.mount {
        Mount::V1 => vec![format!("/v1{}", route.path)],
        Mount::V1AndAlias => vec![format!("/v1{}", route.path), route.path.to_string()],
        Mount::Root => vec![route.path.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_path() {
        assert_eq!(classify("/v1/healthz"), RouteKind::Public);
        assert_eq!(classify("/healthz"), RouteKind::Public);
        assert_eq!(classify("/ui/app.js"), RouteKind::Public);
        assert_eq!(classify("/grpc.health.v1.Health/Check"), RouteKind::Public);
        assert_eq!(
            classify("/innerloop.v1.JobService/WatchJob"),
            RouteKind::Stream { job_id: None }
        );
        assert_eq!(
            classify("/v1/optimize/abc/events"),
            RouteKind::Stream {
                job_id: Some("abc".into())
            }
        );
        assert_eq!(
            classify("/eval/abc/events"),
            RouteKind::Stream {
                job_id: Some("abc".into())
            }
        );
        assert_eq!(classify("/v1/optimize/abc"), RouteKind::Unary);
        assert_eq!(
            classify("/innerloop.v1.JobService/GetJob"),
            RouteKind::Unary
        );
        assert_eq!(classify("/v1/optimize//events"), RouteKind::Unary);
        assert_eq!(events_job_id("/v1/optimize/a/b/events"), None);
    }

    #[test]
    fn job_ids_come_from_job_routes_only() {
        assert_eq!(path_job_id("/v1/admin/jobs/j1/cancel"), Some("j1"));
        assert_eq!(path_job_id("/optimize/j1"), Some("j1"));
        assert_eq!(path_job_id("/v1/optimize/j1/stream-token"), Some("j1"));
        assert_eq!(path_job_id("/v1/eval/start"), None);
        assert_eq!(path_job_id("/v1/optimize/estimate"), None);
        assert_eq!(path_job_id("/v1/examples/e1"), None);
    }

    #[test]
    fn templates_are_bounded() {
        assert_eq!(
            template("/v1/optimize/abc-123/events"),
            "/v1/optimize/{id}/events"
        );
        assert_eq!(
            template("/v1/admin/jobs/j1/cancel"),
            "/v1/admin/jobs/{id}/cancel"
        );
        assert_eq!(template("/v1/eval/start"), "/v1/eval/start");
        assert_eq!(template("/v1/healthz"), "/v1/healthz");
        assert_eq!(template("/optimize/j1"), "/optimize/{id}");
        assert_eq!(template("/v1/optimize/estimate"), "/v1/optimize/estimate");
        assert_eq!(template("/v1/examples/e1"), "/v1/examples/{id}");
        assert_eq!(template("/ui/app.js"), "/ui/app.js");
        assert_eq!(template("/v1/nope-123"), UNMATCHED);
        assert_eq!(template("/v1/optimize/j1/x/y"), UNMATCHED);
        assert_eq!(template("/v1/ui"), UNMATCHED);
        assert_eq!(template("/"), UNMATCHED);
    }

    #[test]
    fn metrics_routes_are_known_with_and_without_the_prefix() {
        assert!(is_metrics("/v1/metrics"));
        assert!(is_metrics("/metricsz"));
        assert!(!is_metrics("/v1/metrics/x"));
    }
}
