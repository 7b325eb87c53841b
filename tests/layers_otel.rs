//! OpenTelemetry end to end: an in-process OTLP collector receives one trace in which the
//! edge's HTTP span is the parent of the core's gRPC span, and the edge's span continues the
//! client's W3C `traceparent`; a default-mode job whose judge is a model (LocalEcho) shows the
//! whole chain edge → gRPC → job → iteration → provider call.

mod layers_support;

use std::time::Duration;

use std::sync::Arc;

use innerloop::config::Settings;
use innerloop::runtime::JobRuntime;
use innerloop::server::{self, Listeners};
use layers_support::{TOKEN, settings};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
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
    let store = innerloop::store::open(&settings).await.unwrap();
    let optimizers = innerloop::optimizer::registry(&settings);
    let runtime = JobRuntime::start(settings, store, optimizers)
        .await
        .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = http.local_addr().unwrap();
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(server::run_with_runtime(
        runtime,
        Listeners { grpc, http },
        async move { until.cancelled().await },
    ));
    (edge, stop)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_span_is_the_parent_of_the_grpc_span() {
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
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{edge_addr}/v1/optimize?iterations=1"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"prompt": "write a short haiku about rust"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let judged_job = created["job_id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{edge_addr}/v1/optimize/{judged_job}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["status"] == "finished" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never finished: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 5. Flush (blocking in the SDK) and collect.
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    let mut spans = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let wanted = [
        "GET /v1/optimize/{id}",
        "RPC /innerloop.v1.JobService/GetJob",
        "POST /v1/optimize",
        "RPC /innerloop.v1.OptimizerService/CreateJob",
        "job",
        "iteration",
        "provider_call",
    ];
    while !wanted
        .iter()
        .all(|w| spans.iter().any(|s: &Span| s.name == *w))
    {
        match tokio::time::timeout_at(deadline, spans_rx.recv()).await {
            Ok(Some(span)) => spans.push(span),
            _ => break,
        }
    }
    let edge = spans
        .iter()
        .find(|s| s.name == "GET /v1/optimize/{id}")
        .unwrap_or_else(|| {
            panic!(
                "no edge span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let grpc = spans
        .iter()
        .find(|s| s.name == "RPC /innerloop.v1.JobService/GetJob")
        .expect("a gRPC span");
    assert_eq!(
        hex(&edge.trace_id),
        client_trace,
        "the edge continues the client's trace"
    );
    assert_eq!(hex(&edge.parent_span_id), client_span);
    assert_eq!(grpc.trace_id, edge.trace_id, "one trace");
    assert_eq!(grpc.parent_span_id, edge.span_id, "edge span → gRPC span");
    let create_http = spans
        .iter()
        .find(|s| s.name == "POST /v1/optimize")
        .unwrap_or_else(|| {
            panic!(
                "no create span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let create_rpc = spans
        .iter()
        .find(|s| s.name == "RPC /innerloop.v1.OptimizerService/CreateJob")
        .expect("CreateJob span");
    let job = spans.iter().find(|s| s.name == "job").expect("a job span");
    assert_eq!(create_rpc.parent_span_id, create_http.span_id);
    assert_eq!(
        job.parent_span_id, create_rpc.span_id,
        "gRPC span → job span"
    );
    assert_eq!(job.trace_id, create_http.trace_id);

    // The finished job: edge span → gRPC span → job span → iteration span → provider call.
    let attr = |s: &Span, key: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
    };
    let judged = spans
        .iter()
        .find(|s| s.name == "job" && attr(s, "job_id").is_some_and(|v| v.contains(&judged_job)))
        .unwrap_or_else(|| panic!("no span for job {judged_job}"));
    let rpc = spans
        .iter()
        .find(|s| s.span_id == judged.parent_span_id)
        .expect("the job's parent span");
    assert_eq!(rpc.name, "RPC /innerloop.v1.OptimizerService/CreateJob");
    let http = spans
        .iter()
        .find(|s| s.span_id == rpc.parent_span_id)
        .expect("the gRPC span's parent span");
    assert_eq!(http.name, "POST /v1/optimize");
    let iteration = spans
        .iter()
        .find(|s| s.name == "iteration" && s.parent_span_id == judged.span_id)
        .expect("an iteration span under the job span");
    let call = spans
        .iter()
        .find(|s| s.name == "provider_call" && s.parent_span_id == iteration.span_id)
        .expect("a provider-call span under the iteration span");
    for s in [judged, rpc, iteration, call] {
        assert_eq!(s.trace_id, http.trace_id, "one trace: {}", s.name);
    }
    assert!(
        attr(call, "model").is_some(),
        "the call names its model: {:?}",
        call.attributes
    );
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
    stop.cancel();
}
