//! Several `innerloop serve` replicas on one Postgres (issue 19): three real processes of the
//! compiled binary, each on its own ports, sharing a fresh schema per test, with GEPA jobs against
//! the fake OpenAI-compatible server of `tests/support/fake_llm.rs`. Leases are short here (2 s, heartbeat
//! 0.5 s) so takeovers happen within a test's patience.
//!
//! - jobs created on one replica run on the others (load spreads by claims);
//! - a watcher on C receives every event of a job run by A;
//! - a cancel sent to B stops a job run by A, and B answers with the job `cancelled`;
//! - a pause sent to B and a resume sent to C reach the job run by A (same result as never paused);
//! - kill -9 of the owner: the job resumes elsewhere and ends with the uninterrupted result;
//! - a graceful stop hands the job over at once (no wait for the lease to expire);
//! - two creates with one idempotency key on two replicas make one job;
//! - a stale owner's late write is rejected, events and checkpoint alike (store level, two store
//!   handles).

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::store::{
    Claim, EventStore, Fence, JobRows, LeaseStore, PendingEvent, SqlStore, WriteBatch,
};
use support::gepa::{count, gepa_request, gepa_result, wait_until};
use support::postgres::PgSchema;
use support::process::{Process, serve};

const LEASE_S: &str = "2";
const HEARTBEAT_S: &str = "0.5";

type Replica = Process;

/// Starts one replica named `name` on `db_url`, its models at `llm_url`, and waits until its
/// gRPC port answers. `env` overrides settings.
async fn start(
    dir: &Path,
    name: &str,
    db_url: &str,
    llm_url: &str,
    env: &[(&str, &str)],
) -> Replica {
    let mut settings = vec![
        ("JOB_STORE", "postgres"),
        ("DATABASE_URL", db_url),
        ("REPLICA_ID", name),
        ("JOB_LEASE_S", LEASE_S),
        ("JOB_LEASE_HEARTBEAT_S", HEARTBEAT_S),
        ("EVAL_MAX_CONCURRENCY", "2"),
    ];
    settings.extend_from_slice(env);
    serve(dir, name, llm_url, &settings).await
}

fn assert_dense(events: &[pb::JobEvent]) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "ids are 1..n: none lost, none duplicated"
    );
    let terminals = events
        .iter()
        .filter(|e| ["finished", "failed", "cancelled", "shutdown"].contains(&e.r#type.as_str()))
        .count();
    assert_eq!(terminals, 1, "exactly one terminal event");
}

/// A fresh Postgres schema for one test (its replicas share it), dropped at the end, and a
/// temporary directory for the replicas' logs (kept when the test fails).
struct Cluster {
    schema: PgSchema,
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    async fn new() -> Cluster {
        let schema = PgSchema::create("rep").await;
        let dir = tempfile::Builder::new()
            .prefix("innerloop-replicas-")
            .tempdir()
            .unwrap();
        Cluster {
            schema,
            dir: Some(dir),
        }
    }

    fn url(&self) -> String {
        self.schema.url()
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    async fn replica(&self, name: &str, llm_url: &str, env: &[(&str, &str)]) -> Replica {
        start(self.dir(), name, &self.url(), llm_url, env).await
    }

    /// Who holds (or last held) each job's lease.
    async fn owner(&self, job_id: &str) -> Option<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url()).await.unwrap();
        sqlx::query_scalar("SELECT owner FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept replica logs in {}", dir.keep().display());
        }
        // The schema drops itself after this.
    }
}

async fn fake_llm(latency_ms: u64) -> (String, Arc<support::fake_llm::Fake>) {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(latency_ms);
    (url, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_created_on_one_replica_run_on_the_others() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(10).await;
    let room = [("REPLICA_MAX_JOBS", "2")];
    let a = cluster.replica("a", &llm, &room).await;
    let b = cluster.replica("b", &llm, &room).await;
    let c = cluster.replica("c", &llm, &room).await;
    let mut ids = Vec::new();
    for seed in 0..6 {
        ids.push(a.create(gepa_request(seed, 40)).await);
    }
    let mut owners = HashSet::new();
    for id in &ids {
        let history = b.history(id).await;
        assert_dense(&history);
        assert_eq!(history.last().unwrap().r#type, "finished", "{id}");
        assert_eq!(
            history[0].r#type, "started",
            "{id}: a queued job starts fresh"
        );
        owners.insert(cluster.owner(id).await.expect("an owner ran it"));
    }
    assert!(
        owners.len() >= 2,
        "six jobs created on a (room for two) ran on {owners:?}"
    );
    assert!(owners.iter().any(|o| o != "a"), "{owners:?}");
    for replica in [a, b, c] {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_c_receives_every_event_of_a_job_run_by_a() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(10).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let c = cluster.replica("c", &llm, &[]).await;
    let job_id = a.create(gepa_request(3, 60)).await;
    let on_c = Arc::new(Mutex::new(Vec::new()));
    let on_a = Arc::new(Mutex::new(Vec::new()));
    let watch_c = c.record(&job_id, 0, on_c.clone());
    let watch_a = a.record(&job_id, 0, on_a.clone());
    // A second watcher on C joins mid-run, from the id it last saw.
    wait_until("progress", || count(&on_c, "budget_progress") >= 1).await;
    let seen = on_c.lock().unwrap().last().unwrap().id;
    let late = Arc::new(Mutex::new(Vec::new()));
    let watch_late = c.record(&job_id, seen, late.clone());
    for watcher in [watch_c, watch_a, watch_late] {
        tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .expect("the watch ends with the job")
            .unwrap();
    }
    assert_eq!(cluster.owner(&job_id).await.as_deref(), Some("a"));
    let on_a = on_a.lock().unwrap().clone();
    let on_c = on_c.lock().unwrap().clone();
    assert_dense(&on_a);
    assert_eq!(on_c, on_a, "C streams exactly what A streams");
    assert_eq!(late.lock().unwrap()[..], on_a[seen as usize..]);
    assert_eq!(on_c.last().unwrap().r#type, "finished");
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_b_stops_a_job_run_by_a() {
    let cluster = Cluster::new().await;
    // Slow answers, so the job (which converges on this fake) is still running when the
    // cancel reaches a, however loaded the machine.
    let (llm, _fake) = fake_llm(150).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let b = cluster.replica("b", &llm, &[]).await;
    let job_id = a.create(gepa_request(5, 100_000)).await;
    let on_a = Arc::new(Mutex::new(Vec::new()));
    let watcher = a.record(&job_id, 0, on_a.clone());
    wait_until("progress", || count(&on_a, "budget_progress") >= 1).await;
    let started = Instant::now();
    let job = b
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    eprintln!("cancel through b answered in {:?}", started.elapsed());
    assert_eq!(
        job.status(),
        pb::JobStatus::Cancelled,
        "b answers with the job cancelled"
    );
    tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("a's watcher ends")
        .unwrap();
    let events = on_a.lock().unwrap().clone();
    assert_dense(&events);
    assert_eq!(events.last().unwrap().r#type, "cancelled");
    assert_eq!(
        cluster.owner(&job_id).await.as_deref(),
        Some("a"),
        "a ended it"
    );
    // A second cancel, anywhere, says it is over.
    let again = b
        .jobs()
        .cancel_job(pb::CancelJobRequest { job_id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_sent_to_b_and_a_resume_sent_to_c_reach_the_job_run_by_a() {
    let cluster = Cluster::new().await;
    // Slow enough that the job is still running when the pause reaches a.
    let (llm, _fake) = fake_llm(100).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let b = cluster.replica("b", &llm, &[]).await;
    let c = cluster.replica("c", &llm, &[]).await;
    let job_id = a.create(gepa_request(11, 60)).await;
    let on_a = Arc::new(Mutex::new(Vec::new()));
    let watcher = a.record(&job_id, 0, on_a.clone());
    wait_until("progress", || count(&on_a, "budget_progress") >= 1).await;
    let paused = b.pause(&job_id).await;
    assert_eq!(
        paused.status(),
        pb::JobStatus::Paused,
        "b answers once the owner has paused it"
    );
    // Durable before b answered; a's watcher sees it as soon as a publishes it.
    wait_until("a's watcher sees the pause", || count(&on_a, "paused") == 1).await;
    assert_eq!(c.get(&job_id).await.status(), pb::JobStatus::Paused);
    assert_eq!(cluster.owner(&job_id).await.as_deref(), Some("a"));
    let resumed = c.resume(&job_id).await;
    assert_eq!(resumed.status(), pb::JobStatus::Running);
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the resumed job ends")
        .unwrap();
    let events = on_a.lock().unwrap().clone();
    assert_dense(&events);
    assert_eq!(events.last().unwrap().r#type, "finished");
    assert_eq!(count(&on_a, "resumed"), 1);
    assert_eq!(
        cluster.owner(&job_id).await.as_deref(),
        Some("a"),
        "a ran it all along"
    );
    // The same request, never paused.
    let reference = b.create(gepa_request(11, 60)).await;
    b.history(&reference).await;
    assert_eq!(
        gepa_result(&a.get(&job_id).await),
        gepa_result(&b.get(&reference).await),
        "pause and resume through other replicas change nothing in the result"
    );
    for replica in [a, b, c] {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_resumes_the_job_elsewhere_with_the_uninterrupted_result() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(15).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let b = cluster.replica("b", &llm, &[]).await;
    let c = cluster.replica("c", &llm, &[]).await;
    // The same request, uninterrupted, on b.
    let reference = b.create(gepa_request(7, 60)).await;
    let job_id = a.create(gepa_request(7, 60)).await;
    let on_c = Arc::new(Mutex::new(Vec::new()));
    let watcher = c.record(&job_id, 0, on_c.clone());
    wait_until("two iterations", || count(&on_c, "budget_progress") >= 2).await;
    a.kill().await;
    let killed = Instant::now();
    wait_until("the takeover", || count(&on_c, "resumed") >= 1).await;
    let takeover = killed.elapsed();
    eprintln!("takeover {takeover:?} after kill -9 (lease {LEASE_S} s)");
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the resumed job ends")
        .unwrap();
    let events = on_c.lock().unwrap().clone();
    assert_dense(&events);
    assert_eq!(events.last().unwrap().r#type, "finished");
    let owner = cluster.owner(&job_id).await.unwrap();
    assert!(owner == "b" || owner == "c", "resumed by {owner}");
    b.history(&reference).await;
    assert_eq!(
        gepa_result(&c.get(&job_id).await),
        gepa_result(&b.get(&reference).await),
        "the resumed run ends with the uninterrupted result"
    );
    assert!(
        takeover < Duration::from_secs(30),
        "takeover took {takeover:?}"
    );
    b.stop().await;
    c.stop().await;
}

/// Steering sent to b reaches the job a runs: the job is paused (nothing is taken before the
/// steering is there), b queues feedback and a hand-written candidate, the job resumes and its
/// pool holds the `human` candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_sent_to_b_reaches_the_job_run_by_a() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(100).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let b = cluster.replica("b", &llm, &[]).await;
    let job_id = a.create(gepa_request(11, 200)).await;
    let on_a = Arc::new(Mutex::new(Vec::new()));
    let watcher = a.record(&job_id, 0, on_a.clone());
    wait_until("progress", || count(&on_a, "budget_progress") >= 1).await;
    assert_eq!(a.pause(&job_id).await.status(), pb::JobStatus::Paused);
    let human_text = "Answer with the expected label only, as written by a human.";
    let steered = b
        .workbench()
        .steer_job(pb::SteerJobRequest {
            job_id: job_id.clone(),
            feedback: "Shorter answers.".into(),
            component: String::new(),
            candidate: Some(pb::HumanCandidate {
                parent_id: 0,
                components: [("system_prompt".to_string(), human_text.to_string())].into(),
            }),
        })
        .await
        .expect("b takes steering for a job a runs")
        .into_inner();
    assert!(steered.feedback_queued && steered.candidate_queued);
    assert_eq!(b.resume(&job_id).await.status(), pb::JobStatus::Running);
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the steered job ends")
        .unwrap();
    assert_eq!(on_a.lock().unwrap().last().unwrap().r#type, "finished");
    let lineage = a
        .workbench()
        .list_candidates(pb::ListCandidatesRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let human: Vec<&pb::CandidateInfo> = lineage
        .candidates
        .iter()
        .filter(|c| c.origin == "human")
        .collect();
    assert_eq!(human.len(), 1, "{:?}", lineage.candidates);
    assert_eq!(human[0].components["system_prompt"], human_text);
    assert_eq!(cluster.owner(&job_id).await.as_deref(), Some("a"));
    // A finished job takes no more steering, through any replica.
    let late = b
        .workbench()
        .steer_job(pb::SteerJobRequest {
            job_id,
            feedback: "Too late.".into(),
            ..Default::default()
        })
        .await
        .expect_err("the job is finished");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    a.stop().await;
    b.stop().await;
}

/// A command left on another replica reaches the owner through its notification, not at the
/// owner's next heartbeat (30 s here, so only the notification explains a quick answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reaches_the_owner_at_once_not_at_its_next_heartbeat() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(100).await;
    let slow_beat = [("JOB_LEASE_S", "90"), ("JOB_LEASE_HEARTBEAT_S", "30")];
    let a = cluster.replica("a", &llm, &slow_beat).await;
    let b = cluster.replica("b", &llm, &slow_beat).await;
    let job_id = a.create(gepa_request(11, 200)).await;
    let on_a = Arc::new(Mutex::new(Vec::new()));
    let watcher = a.record(&job_id, 0, on_a.clone());
    wait_until("progress", || count(&on_a, "budget_progress") >= 1).await;
    let asked = Instant::now();
    let paused = b.pause(&job_id).await;
    let took = asked.elapsed();
    eprintln!("pause through b answered in {took:?} (heartbeat 30 s)");
    assert_eq!(paused.status(), pb::JobStatus::Paused);
    assert!(took < Duration::from_secs(10), "the pause took {took:?}");
    let asked = Instant::now();
    assert_eq!(b.resume(&job_id).await.status(), pb::JobStatus::Running);
    assert!(asked.elapsed() < Duration::from_secs(10));
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the resumed job ends")
        .unwrap();
    assert_eq!(on_a.lock().unwrap().last().unwrap().r#type, "finished");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_the_job_over_at_once() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(15).await;
    // A lease far longer than the test's bound: only the release can explain a fast takeover.
    let long = [("JOB_LEASE_S", "60"), ("JOB_LEASE_HEARTBEAT_S", "1")];
    let a = cluster.replica("a", &llm, &long).await;
    let b = cluster.replica("b", &llm, &long).await;
    let job_id = a.create(gepa_request(11, 60)).await;
    let on_b = Arc::new(Mutex::new(Vec::new()));
    let watcher = b.record(&job_id, 0, on_b.clone());
    wait_until("two iterations", || count(&on_b, "budget_progress") >= 2).await;
    let stopping = Instant::now();
    a.stop().await;
    wait_until("the hand-over", || count(&on_b, "resumed") >= 1).await;
    let handover = stopping.elapsed();
    eprintln!("hand-over {handover:?} after SIGTERM (lease 60 s)");
    assert!(
        handover < Duration::from_secs(15),
        "hand-over took {handover:?}"
    );
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the job ends on b")
        .unwrap();
    let events = on_b.lock().unwrap().clone();
    assert_dense(&events);
    let suspended = events.iter().position(|e| e.r#type == "suspended").unwrap();
    assert_eq!(events[suspended + 1].r#type, "resumed");
    assert_eq!(events.last().unwrap().r#type, "finished");
    assert_eq!(cluster.owner(&job_id).await.as_deref(), Some("b"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_on_two_replicas_makes_one_job() {
    let cluster = Cluster::new().await;
    let (llm, _fake) = fake_llm(5).await;
    let a = cluster.replica("a", &llm, &[]).await;
    let b = cluster.replica("b", &llm, &[]).await;
    for round in 0..10 {
        let request = pb::OptimizeRequest {
            idempotency_key: format!("race-{round}"),
            ..gepa_request(round, 20)
        };
        let (x, y) = tokio::join!(a.create(request.clone()), b.create(request));
        assert_eq!(x, y, "round {round}: one key, one job");
    }
    a.stop().await;
    b.stop().await;
}

/// Two store handles on one schema: a replica that lost its lease (another claimed the job
/// after it expired) cannot append to the job's log or change its row any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_late_write_is_rejected() {
    use innerloop::domain::{Event, EventPayload, JobRecord, JobSpec, JobStatus};
    use innerloop::store::JobUpdate;
    let cluster = Cluster::new().await;
    let a = SqlStore::open_postgres(&cluster.url()).await.unwrap();
    let b = SqlStore::open_postgres(&cluster.url()).await.unwrap();
    let record = JobRecord {
        id: "job".into(),
        status: JobStatus::Pending,
        created_at: 1.0,
        updated_at: 1.0,
        spec: JobSpec::from_prompt("p"),
        result: None,
        last_event_id: 0,
        progress: Default::default(),
    };
    a.insert_job(&record).await.unwrap();
    let claim = |owner: &'static str, now: f64| Claim {
        owner,
        now,
        lease_s: 10.0,
        limit: 10,
        job_id: None,
        steal: false,
        reclaim_own: false,
    };
    let now = innerloop::domain::now_epoch_s();
    let by_a = a.claim_jobs(&claim("a", now)).await.unwrap();
    assert_eq!(by_a.len(), 1);
    assert_eq!(by_a[0].epoch, 1);
    assert!(
        b.claim_jobs(&claim("b", now)).await.unwrap().is_empty(),
        "a's lease holds"
    );
    // a stops renewing; after expiry b claims it.
    let by_b = b.claim_jobs(&claim("b", now + 11.0)).await.unwrap();
    assert_eq!(by_b.len(), 1);
    assert_eq!(by_b[0].epoch, 2);
    let batch = |id: u64, epoch: u64, status: JobStatus| {
        let event = Arc::new(Event {
            id,
            job_id: "job".into(),
            ts: 2.0,
            payload: EventPayload::Started {},
        });
        WriteBatch {
            events: vec![PendingEvent::rendered(event)],
            updates: vec![JobUpdate {
                id: "job".into(),
                status,
                updated_at: 2.0,
                result: None,
                last_event_id: id,
            }],
            fences: vec![Fence {
                job_id: "job".into(),
                epoch,
            }],
            ..WriteBatch::default()
        }
    };
    let ready = || -> innerloop::store::Turn { Box::pin(std::future::ready(())) };
    let late = a
        .write_fenced(&batch(1, 1, JobStatus::Finished), ready())
        .await
        .unwrap();
    assert_eq!(late, vec!["job".to_string()], "a's write is fenced");
    // Its checkpoint writes are fenced the same way: a part or a base from a is refused.
    use innerloop::store::CheckpointStore;
    assert!(
        a.append_checkpoint_part("job", r#"{"from":"a"}"#)
            .await
            .is_err()
    );
    assert!(
        a.put_checkpoint_text("job", r#"{"from":"a"}"#.into())
            .await
            .is_err()
    );
    assert!(b.checkpoint_parts("job").await.unwrap().is_empty());
    assert_eq!(b.get_checkpoint("job").await.unwrap(), None);
    assert!(b.events_after("job", 0, 10).await.unwrap().is_empty());
    assert_eq!(
        b.get_job("job").await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    let current = b
        .write_fenced(&batch(1, 2, JobStatus::Running), ready())
        .await
        .unwrap();
    assert!(current.is_empty(), "the owner's write goes through");
    b.append_checkpoint_part("job", r#"{"from":"b"}"#)
        .await
        .unwrap();
    assert_eq!(
        b.checkpoint_parts("job").await.unwrap(),
        vec![r#"{"from":"b"}"#]
    );
    assert!(
        a.append_checkpoint_part("job", r#"{"from":"a"}"#)
            .await
            .is_err()
    );
    assert_eq!(b.events_after("job", 0, 10).await.unwrap().len(), 1);
    assert_eq!(
        b.get_job("job").await.unwrap().unwrap().status,
        JobStatus::Running
    );
    a.close().await;
    b.close().await;
}
