//! The default-mode optimizer end to end: a real server on 127.0.0.1:0, a tonic client calling
//! `Optimize`, the exact event sequence and seeded reproducibility.

use std::sync::Arc;

use innerloop::api::pb;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

const PROMPT: &str = "Write a short and friendly greeting for the new users of our product today";

struct Server {
    client: OptimizerServiceClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start() -> anyhow::Result<Server> {
        let settings = Settings {
            job_store: StoreKind::Memory,
            max_iterations: 10,
            // This test is about the optimizer; auth is covered by tests/layers_*.
            require_auth: false,
            dev_mode: true,
            ..Settings::default()
        };
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let addr = grpc.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let task = tokio::spawn(server::run(
            Arc::new(settings),
            Listeners { grpc, http },
            async {
                let _ = stopped.await;
            },
        ));
        let client = OptimizerServiceClient::connect(format!("http://{addr}")).await?;
        Ok(Server {
            client,
            stop: Some(stop),
            task,
        })
    }

    /// Runs `request` through `Optimize` and collects the stream to its end.
    async fn optimize(
        &mut self,
        request: pb::OptimizeRequest,
    ) -> anyhow::Result<Vec<pb::JobEvent>> {
        let mut stream = self.client.optimize(request).await?.into_inner();
        let mut events = Vec::new();
        while let Some(event) = stream.message().await? {
            events.push(event);
        }
        Ok(events)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

fn request(prompt: &str, iterations: u32, seed: i64) -> pb::OptimizeRequest {
    pb::OptimizeRequest {
        prompt: prompt.into(),
        mode: pb::Mode::Default as i32,
        iterations: Some(iterations),
        seed: Some(seed),
        ..Default::default()
    }
}

fn types(events: &[pb::JobEvent]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

fn proposals(events: &[pb::JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::job_event::Payload::Progress(p)) => Some(p.proposal.clone()),
            _ => None,
        })
        .collect()
}

fn final_proposal(events: &[pb::JobEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.payload {
        Some(pb::job_event::Payload::Finished(f)) => match f.result.as_ref()?.kind.as_ref()? {
            pb::job_result::Kind::DefaultResult(r) => Some(r.proposal.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// `started, (mutation, progress, selected)×rounds, [early_stop], finished`.
fn expected(rounds: usize, early_stop: bool) -> Vec<&'static str> {
    let mut want = vec!["started"];
    want.extend(["mutation", "progress", "selected"].repeat(rounds));
    if early_stop {
        want.push("early_stop");
    }
    want.push("finished");
    want
}

#[tokio::test]
async fn optimize_streams_the_default_event_sequence_and_is_reproducible() -> anyhow::Result<()> {
    let mut server = Server::start().await?;

    let first = server.optimize(request(PROMPT, 6, 7)).await?;
    let rounds = proposals(&first).len();
    let stopped_early = types(&first).contains(&"early_stop");
    assert!(
        rounds >= 1 && (rounds == 6 || stopped_early),
        "{:?}",
        types(&first)
    );
    assert_eq!(types(&first), expected(rounds, stopped_early));
    let ids: Vec<u64> = first.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=first.len() as u64).collect::<Vec<_>>());
    let iterations: Vec<u32> = first
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::job_event::Payload::Progress(p)) => Some(p.iteration),
            _ => None,
        })
        .collect();
    assert_eq!(iterations, (1..=rounds as u32).collect::<Vec<_>>());
    let best = final_proposal(&first).expect("finished carries a default result");
    assert!(proposals(&first).contains(&best));
    assert!(best.len() < PROMPT.len(), "nothing improved: {best}");

    let second = server.optimize(request(PROMPT, 6, 7)).await?;
    assert_eq!(proposals(&second), proposals(&first));
    assert_eq!(final_proposal(&second), Some(best));

    // Two words: round 1 drops one, round 2 cannot improve, patience 1 stops the job.
    let mut short = request("alpha beta", 6, 7);
    short.early_stop_patience = Some(1);
    let events = server.optimize(short).await?;
    assert_eq!(types(&events), expected(2, true));
    match &events[events.len() - 2].payload {
        Some(pb::job_event::Payload::EarlyStop(stop)) => {
            assert_eq!(Some(stop.best.clone()), final_proposal(&events));
        }
        other => panic!("expected early_stop, got {other:?}"),
    }

    server.stop().await
}
