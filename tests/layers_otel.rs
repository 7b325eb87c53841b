//! OpenTelemetry end to end: an in-process OTLP collector receives one trace in which the
//! edge's HTTP span is the parent of the core's gRPC span, and the edge's span continues the
//! client's W3C `traceparent`.

mod layers_support;

use std::time::Duration;

use layers_support::{TOKEN, settings, start_core};
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
    let core = start_core(settings()).await;
    let edge_addr = core.http;

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
    // A job: created through the edge, cancelled so its span ends.
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{edge_addr}/v1/optimize"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"prompt": "p"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let cancelled = reqwest::Client::new()
        .delete(format!("http://{edge_addr}/v1/optimize/{job_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
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
    core.stop.cancel();
}
