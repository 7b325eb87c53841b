//! OpenTelemetry end to end: an in-process OTLP collector receives one trace in which the
//! edge's HTTP span is the parent of the core's gRPC span, and the edge's span continues the
//! client's W3C `traceparent`; a default-mode job whose judge is a model (LocalEcho) shows the
//! whole chain edge → gRPC → job → iteration → provider call, and a gepa job's concurrent
//! rollouts keep their minibatch span as parent.

mod support;

use std::time::Duration;

use std::sync::Arc;

use innerloop::config::Settings;
use innerloop::runtime::JobRuntime;
use innerloop::server::{self, Listeners};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use support::layers::{TOKEN, settings};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

struct Collector(mpsc::Sender<Span>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span).await;
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The real service with the real optimizers; returns the edge's address and its stop token.
async fn start_real_core(settings: Settings) -> (std::net::SocketAddr, CancellationToken) {
    let settings = Arc::new(settings);
    let store = innerloop::store::open(&settings.store_location())
        .await
        .unwrap();
    let optimizers = innerloop::server::optimizers(&settings);
    let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
        .await
        .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = http.local_addr().unwrap();
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(server::run_with_runtime(
        settings,
        runtime,
        Listeners { grpc, http },
        async move { until.cancelled().await },
    ));
    (edge, stop)
}

/// Creates a job through the edge and waits until it finished; returns its id.
async fn run_to_end(edge: std::net::SocketAddr, path: &str, body: serde_json::Value) -> String {
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{edge}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = created["job_id"].as_str().expect("a job id").to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{edge}/v1/optimize/{job_id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["status"] == "finished" {
            return job_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never finished: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For `job_id`: [create HTTP span, CreateJob span, job span, an iteration span, a provider
/// call anywhere below that iteration], each the parent of the next (the call through any
/// phase spans), all in one trace; `None` until all have arrived.
fn chain<'a>(spans: &'a [Span], job_id: &str) -> Option<Vec<&'a Span>> {
    let by_id = |id: &[u8]| spans.iter().find(|s| s.span_id == id);
    let job = spans.iter().find(|s| {
        s.name == "job"
            && s.attributes
                .iter()
                .any(|a| a.key == "job_id" && format!("{:?}", a.value).contains(job_id))
    })?;
    let rpc = by_id(&job.parent_span_id)?;
    let http = by_id(&rpc.parent_span_id)?;
    for iteration in spans
        .iter()
        .filter(|s| s.name == "iteration" && s.parent_span_id == job.span_id)
    {
        let under = |call: &Span| {
            let mut parent = by_id(&call.parent_span_id);
            while let Some(p) = parent {
                if p.span_id == iteration.span_id {
                    return true;
                }
                parent = by_id(&p.parent_span_id);
            }
            false
        };
        if let Some(call) = spans.iter().find(|s| s.name == "provider_call" && under(s)) {
            let chain = vec![http, rpc, job, iteration, call];
            return chain
                .iter()
                .all(|s| s.trace_id == http.trace_id)
                .then_some(chain);
        }
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_edge_through_grpc_and_the_job_to_each_provider_call() {
    // 1. The collector.
    let (spans_tx, mut spans_rx) = mpsc::channel(1024);
    let collector_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector_listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans_tx)))
            .serve_with_incoming(TcpListenerStream::new(collector_listener)),
    );

    // 2. Tracing with OTLP export to it.
    let provider =
        innerloop::telemetry::otlp_provider(&format!("http://{collector_addr}"), "innerloop-test")
            .unwrap();
    innerloop::telemetry::install_propagator();
    use opentelemetry::trace::TracerProvider as _;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();

    // 3. The real service: the edge calls the core in-process.
    // The judge is a model (LocalEcho), so every round makes provider calls.
    let (edge_addr, stop) = start_real_core(Settings {
        use_judge_stub: false,
        judge_provider: "local_echo".into(),
        ..settings()
    })
    .await;

    // 4. A browser-like call with its own traceparent.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let answer = reqwest::Client::new()
        .get(format!("http://{edge_addr}/v1/optimize/missing-job"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    // A job that runs to the end: one round, judged by the model.
    let judged_job = run_to_end(
        edge_addr,
        "/v1/optimize?iterations=1",
        serde_json::json!({"prompt": "write a short haiku about rust"}),
    )
    .await;
    // A gepa job (offline models): its rollouts run concurrently under the evaluation semaphore.
    let gepa_job = run_to_end(
        edge_addr,
        "/v1/optimize",
        serde_json::json!({
            "prompt": "Answer the question.",
            "mode": "gepa",
            "dataset": {"name": "toy_clf"},
            "budget": {"max_rollouts": 30},
            "gepa": {"minibatch_size": 2}
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 5. Flush (blocking in the SDK) and collect.
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    let mut spans: Vec<Span> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let complete = |spans: &[Span]| {
        spans.iter().any(|s| hex(&s.trace_id) == client_trace)
            && chain(spans, &judged_job).is_some()
            && chain(spans, &gepa_job).is_some()
    };
    while !complete(&spans) {
        match tokio::time::timeout_at(deadline, spans_rx.recv()).await {
            Ok(Some(span)) => spans.push(span),
            _ => break,
        }
    }
    let names = || spans.iter().map(|s| &s.name).collect::<Vec<_>>();

    // The client's call: its traceparent continued by the edge, the gRPC span under it.
    let edge = spans
        .iter()
        .find(|s| s.name == "GET /v1/optimize/{id}" && hex(&s.trace_id) == client_trace)
        .unwrap_or_else(|| panic!("no edge span in the client's trace: {:?}", names()));
    assert_eq!(hex(&edge.parent_span_id), client_span);
    let grpc = spans
        .iter()
        .find(|s| s.parent_span_id == edge.span_id)
        .expect("a child of the edge span");
    assert_eq!(grpc.name, "RPC /innerloop.v1.JobService/GetJob");
    assert_eq!(grpc.trace_id, edge.trace_id, "one trace");

    // The finished default job: edge → gRPC → job → iteration → provider call, one trace.
    let judged = chain(&spans, &judged_job)
        .unwrap_or_else(|| panic!("no full chain for the default job in {:?}", names()));
    let call = judged.last().unwrap();
    let attr = |s: &Span, key: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
    };
    assert_eq!(
        judged.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        [
            "POST /v1/optimize",
            "RPC /innerloop.v1.OptimizerService/CreateJob",
            "job",
            "iteration",
            "provider_call"
        ]
    );
    assert!(attr(call, "model").is_some(), "{:?}", call.attributes);
    assert!(
        attr(call, "prompt_tokens").is_some(),
        "token usage recorded"
    );
    assert!(
        call.attributes
            .iter()
            .all(|a| !format!("{:?}", a.value).contains("haiku")),
        "no prompt text in the span: {:?}",
        call.attributes
    );

    // The gepa job: its concurrent rollouts' provider calls sit under the minibatch span of
    // their iteration, in the same trace.
    let gepa = chain(&spans, &gepa_job)
        .unwrap_or_else(|| panic!("no full chain for the gepa job in {:?}", names()));
    let iteration = &gepa[3];
    assert!(
        attr(iteration, "mode").is_some_and(|m| m.contains("\"gepa\"")),
        "{:?}",
        iteration.attributes
    );
    let minibatch_calls = spans
        .iter()
        .filter(|s| s.name == "iteration" && s.parent_span_id == gepa[2].span_id)
        .flat_map(|i| {
            spans
                .iter()
                .filter(|s| s.name == "minibatch" && s.parent_span_id == i.span_id)
        })
        .flat_map(|m| {
            spans
                .iter()
                .filter(|c| c.name == "provider_call" && c.parent_span_id == m.span_id)
        })
        .count();
    assert!(
        minibatch_calls >= 1,
        "no provider call under a minibatch span"
    );
    stop.cancel();
}
