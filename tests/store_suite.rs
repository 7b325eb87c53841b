//! One `JobStore` test suite, run against memory, SQLite and PostgreSQL. Every store must behave
//! the same; the SQL stores must also keep everything across a reopen.
//!
//! Postgres: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each test works in
//! its own fresh schema, dropped at the end, so tests run in parallel. `.ci/ensure-postgres.sh`
//! starts a server when none is running.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use innerloop::domain::job::DefaultResult;
use innerloop::domain::{
    Event, EventPayload, Example, JobRecord, JobResult, JobSpec, JobStatus, ObjectiveScores,
};
use innerloop::store::{
    IdempotencyClaim, JobStore, JobUpdate, ListJobsQuery, MemoryStore, PendingEvent, SqlStore,
    WriteBatch,
};
use support::postgres::PgSchema;

/// A store under test and whatever keeps its data alive. Fields drop in declaration order: the
/// store first, then its data (temporary directory or Postgres schema).
struct Fixture {
    store: Arc<dyn JobStore>,
    backend: Backend,
}

enum Backend {
    Memory,
    Sqlite(tempfile::TempDir),
    Postgres(PgSchema),
}

impl Fixture {
    async fn memory() -> Fixture {
        Fixture {
            store: Arc::new(MemoryStore::new()),
            backend: Backend::Memory,
        }
    }

    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        Fixture {
            store: Arc::new(store),
            backend: Backend::Sqlite(dir),
        }
    }

    async fn postgres() -> Fixture {
        let schema = PgSchema::create("t").await;
        let store = SqlStore::open_postgres(&schema.url()).await.unwrap();
        Fixture {
            store: Arc::new(store),
            backend: Backend::Postgres(schema),
        }
    }

    /// A second store over the same data (SQL backends only), as after a restart.
    async fn reopen(&self) -> Arc<dyn JobStore> {
        match &self.backend {
            Backend::Memory => unreachable!("memory does not persist"),
            Backend::Sqlite(dir) => Arc::new(
                SqlStore::open_sqlite(&dir.path().join("jobs.db"))
                    .await
                    .unwrap(),
            ),
            Backend::Postgres(schema) => {
                Arc::new(SqlStore::open_postgres(&schema.url()).await.unwrap())
            }
        }
    }
}

fn spec(prompt: &str) -> JobSpec {
    let mut spec = JobSpec::from_prompt(prompt);
    spec.iterations = 3;
    spec.evaluation_rubric = Some("be brief".into());
    spec
}

fn job(id: &str, status: JobStatus, created_at: f64) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        status,
        created_at,
        updated_at: created_at,
        spec: spec(&format!("prompt of {id}")),
        result: None,
        last_event_id: 0,
        progress: Default::default(),
    }
}

fn scores() -> ObjectiveScores {
    ObjectiveScores {
        brevity: Some(7),
        diversity: Some(0.25),
        coverage: Some(0.125),
        judge: BTreeMap::from([("clarity".to_string(), 8.5)]),
    }
}

fn result() -> JobResult {
    JobResult::Default(DefaultResult {
        proposal: "Be concise.".into(),
        lessons: vec!["shorter is better".into()],
        scores: scores(),
        target_model: "openai/gpt-4o-mini".into(),
        rubric: None,
    })
}

/// A varied, non-terminal payload for event `id`.
fn payload(id: u64) -> EventPayload {
    match id % 4 {
        0 => EventPayload::Mutation { count: id as u32 },
        1 => EventPayload::Progress {
            iteration: id as u32,
            proposal: format!("proposal {id} with \"quotes\" and ünïcode"),
            target_model: "m".into(),
            rubric: None,
            scores: scores(),
        },
        2 => EventPayload::Selected {
            candidate: format!("candidate {id}"),
            scores: ObjectiveScores::default(),
        },
        _ => EventPayload::EarlyStop {
            best: format!("best {id}"),
        },
    }
}

fn event(job_id: &str, id: u64, payload: EventPayload) -> Event {
    Event {
        id,
        job_id: job_id.to_string(),
        ts: 1_700_000_000.0 + id as f64 / 1000.0,
        payload,
    }
}

async fn all_events(store: &Arc<dyn JobStore>, job_id: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map(|e: &Event| e.id).unwrap_or(0);
        let page = store.events_after(job_id, after, 100).await.unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

async fn jobs_round_trip_and_updates_keep_the_spec(store: Arc<dyn JobStore>) {
    let mut record = job("job-1", JobStatus::Pending, 1000.5);
    store.insert_job(&record).await.unwrap();
    assert_eq!(store.get_job("job-1").await.unwrap(), Some(record.clone()));

    record.status = JobStatus::Finished;
    record.updated_at = 1001.25;
    record.result = Some(result());
    record.last_event_id = 42;
    let mut changed_spec = record.clone();
    changed_spec.spec = spec("ignored by update_job");
    store.update_job(&changed_spec).await.unwrap();
    assert_eq!(store.get_job("job-1").await.unwrap(), Some(record.clone()));

    record.status = JobStatus::Failed;
    record.result = Some(JobResult::Error(innerloop::domain::job::ErrorResult {
        error: "provider_error".into(),
    }));
    store.update_job(&record).await.unwrap();
    assert_eq!(store.get_job("job-1").await.unwrap(), Some(record));
    assert_eq!(store.get_job("missing").await.unwrap(), None);
}

async fn list_jobs_is_newest_first_filtered_and_paged(store: Arc<dyn JobStore>) {
    let jobs = [
        job("a", JobStatus::Finished, 10.0),
        job("b", JobStatus::Running, 30.0),
        job("c", JobStatus::Failed, 20.0),
        job("d", JobStatus::Pending, 30.0),
        job("e", JobStatus::Finished, 40.0),
    ];
    for j in &jobs {
        store.insert_job(j).await.unwrap();
    }
    let page = |statuses: Vec<JobStatus>, limit, offset| ListJobsQuery {
        statuses,
        limit,
        offset,
    };
    let all = store.list_jobs(&page(vec![], 10, 0)).await.unwrap();
    // Equal created_at: the larger id first.
    assert_eq!(ids(&all), ["e", "d", "b", "c", "a"]);
    assert_eq!(all[0], jobs[4]);
    let second = store.list_jobs(&page(vec![], 2, 2)).await.unwrap();
    assert_eq!(ids(&second), ["b", "c"]);
    let done = store
        .list_jobs(&page(vec![JobStatus::Finished, JobStatus::Failed], 10, 0))
        .await
        .unwrap();
    assert_eq!(ids(&done), ["e", "c", "a"]);
    let one = store
        .list_jobs(&page(vec![JobStatus::Finished], 1, 1))
        .await
        .unwrap();
    assert_eq!(ids(&one), ["a"]);
    let live = store
        .jobs_with_status(&[JobStatus::Pending, JobStatus::Running])
        .await
        .unwrap();
    assert_eq!(ids(&live), ["d", "b"]);
    assert!(store.jobs_with_status(&[]).await.unwrap().is_empty());
    let beyond = store.list_jobs(&page(vec![], 10, 5)).await.unwrap();
    assert!(beyond.is_empty());
}

async fn batched_events_of_many_jobs_page_back_in_id_order(store: Arc<dyn JobStore>) {
    // Two batches, each interleaving two jobs, as the group-committing writer sends them. On
    // SQLite job-a's chunks are big enough to be stored compressed, job-b's first one is not.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for id in 1..=300 {
        first.push(event("job-a", id, payload(id)));
        if id <= 5 {
            first.push(event("job-b", id, payload(id + 1)));
        }
    }
    for id in 301..=600 {
        second.push(event("job-a", id, payload(id)));
    }
    second.push(event("job-b", 6, EventPayload::Finished(result())));
    store.append_events(&first).await.unwrap();
    store.append_events(&second).await.unwrap();
    store.append_events(&[]).await.unwrap();

    let a = all_events(&store, "job-a").await;
    assert_eq!(a.len(), 600);
    assert!(a.iter().zip(1..).all(|(e, id)| e.id == id));
    assert_eq!(
        a[..300],
        first
            .iter()
            .filter(|e| e.job_id == "job-a")
            .cloned()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(a[300..], second[..300]);

    let b = all_events(&store, "job-b").await;
    assert_eq!(b.len(), 6);
    assert_eq!(b[5].payload, EventPayload::Finished(result()));
    assert!(b[5].is_terminal());

    let tail = store.events_after("job-a", 598, 10).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), [599, 600]);
    let limited = store.events_after("job-a", 10, 3).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        [11, 12, 13]
    );
    assert!(
        store
            .events_after("job-a", 600, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .events_after("nobody", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Logs written in batches of several events per job (one chunk per job per batch on SQL
/// stores) read back whole, from inside a chunk, and in pages that cross chunk boundaries.
async fn many_jobs_logs_stay_ordered_across_many_chunks(store: Arc<dyn JobStore>) {
    let jobs: Vec<String> = (0..80).map(|j| format!("job-{j:02}")).collect();
    // Batch sizes per job 1, 2, 3, 1, 2, 3, … up to id 60, jobs interleaved within a batch.
    let mut next = 1;
    let mut width = 1;
    while next <= 60 {
        let last = (next + width - 1).min(60);
        let mut batch = Vec::new();
        for id in next..=last {
            batch.extend(jobs.iter().map(|job| event(job, id, payload(id))));
        }
        store.append_events(&batch).await.unwrap();
        next = last + 1;
        width = width % 3 + 1;
    }
    for job in &jobs {
        let events = all_events(&store, job).await;
        let expected: Vec<Event> = (1..=60).map(|id| event(job, id, payload(id))).collect();
        assert_eq!(events, expected, "{job}");
        for after in [0, 1, 2, 50, 58] {
            let page = store.events_after(job, after, 5).await.unwrap();
            let end = (after as usize + 5).min(60);
            assert_eq!(page, expected[after as usize..end], "{job} after {after}");
        }
    }
    // No job row: deleting still removes its events.
    assert!(!store.delete_job("job-07").await.unwrap());
    assert!(all_events(&store, "job-07").await.is_empty());
    assert_eq!(all_events(&store, "job-08").await.len(), 60);
}

/// One group commit with more rows of each kind than one statement binds: new jobs, their
/// events and updates (a job updated twice keeps the later one) all land.
async fn one_write_batch_commits_jobs_events_and_updates_together(store: Arc<dyn JobStore>) {
    let jobs: Vec<JobRecord> = (0..300)
        .map(|j| job(&format!("batch-{j:03}"), JobStatus::Pending, j as f64))
        .collect();
    let mut batch = WriteBatch {
        inserts: jobs.clone(),
        ..WriteBatch::default()
    };
    for record in &jobs {
        for id in 1..=2 {
            batch.events.push(PendingEvent::rendered(Arc::new(event(
                &record.id,
                id,
                payload(id),
            ))));
        }
        let mut running = record.clone();
        running.status = JobStatus::Running;
        running.last_event_id = 1;
        batch.updates.push(JobUpdate::of(&running));
    }
    let mut finished = jobs[7].clone();
    finished.status = JobStatus::Finished;
    finished.last_event_id = 2;
    finished.updated_at = 99.0;
    finished.result = Some(JobResult::Default(DefaultResult {
        proposal: "done".into(),
        lessons: vec!["l".into()],
        scores: ObjectiveScores::default(),
        target_model: "m".into(),
        rubric: None,
    }));
    batch.updates.push(JobUpdate::of(&finished));
    store.write(&batch).await.unwrap();

    for (j, record) in jobs.iter().enumerate() {
        let stored = store.get_job(&record.id).await.unwrap().unwrap();
        if j == 7 {
            assert_eq!(stored, finished);
        } else {
            assert_eq!(stored.status, JobStatus::Running, "{}", record.id);
            assert_eq!(stored.last_event_id, 1);
            assert_eq!(stored.spec, record.spec);
        }
        assert_eq!(all_events(&store, &record.id).await.len(), 2);
    }
}

/// SQL stores only: a batch that fails (here a duplicate job id) leaves nothing behind.
async fn a_failed_write_batch_leaves_nothing(fixture: &Fixture) {
    let store = &fixture.store;
    store
        .insert_job(&job("taken", JobStatus::Pending, 1.0))
        .await
        .unwrap();
    let batch = WriteBatch {
        inserts: vec![
            job("fresh", JobStatus::Pending, 2.0),
            job("taken", JobStatus::Pending, 3.0),
        ],
        events: vec![PendingEvent::rendered(Arc::new(event(
            "fresh",
            1,
            EventPayload::Started {},
        )))],
        updates: Vec::new(),
        ..WriteBatch::default()
    };
    assert!(store.write(&batch).await.is_err());
    assert_eq!(store.get_job("fresh").await.unwrap(), None);
    assert!(all_events(store, "fresh").await.is_empty());
    assert_eq!(
        store.get_job("taken").await.unwrap().unwrap().created_at,
        1.0
    );
    // One statement (a batch of inserts only) fails as a whole too: the row before the
    // duplicate is not kept.
    let lone = WriteBatch {
        inserts: vec![
            job("fresh", JobStatus::Pending, 2.0),
            job("taken", JobStatus::Pending, 3.0),
        ],
        ..WriteBatch::default()
    };
    assert!(store.write(&lone).await.is_err());
    assert_eq!(store.get_job("fresh").await.unwrap(), None);
    // And the store is not left inside a transaction: the next batch commits and is read back,
    // and so does a write on the writer connection outside the group commit (an idempotency
    // claim).
    let mut retry = batch.clone();
    retry.inserts.retain(|job| job.id == "fresh");
    store.write(&retry).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency_key("after-failure", "fresh", 10.0, 1e12)
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
    let reopened = fixture.reopen().await;
    assert_eq!(
        reopened
            .get_job("fresh")
            .await
            .unwrap()
            .map(|j| j.created_at),
        Some(2.0)
    );
    assert_eq!(
        reopened
            .claim_idempotency_key("after-failure", "other", 11.0, 1e12)
            .await
            .unwrap(),
        IdempotencyClaim::Existing("fresh".into())
    );
    assert_eq!(all_events(store, "fresh").await.len(), 1);
}

async fn concurrent_idempotency_claims_have_exactly_one_winner(store: Arc<dyn JobStore>) {
    let now = 1000.0;
    let claims = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let job_id = format!("job-{i}");
            let claim = store
                .claim_idempotency_key("key", &job_id, now, now + 60.0)
                .await
                .unwrap();
            (job_id, claim)
        })
    });
    let outcomes: Vec<_> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, c)| *c == IdempotencyClaim::Claimed)
        .map(|(job, _)| job)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].clone();
    for (job, claim) in &outcomes {
        if *job != winner {
            assert_eq!(*claim, IdempotencyClaim::Existing(winner.clone()));
        }
    }
    // Still held a second before expiry; free (and taken over) at expiry.
    let later = store
        .claim_idempotency_key("key", "late", now + 59.0, now + 120.0)
        .await
        .unwrap();
    assert_eq!(later, IdempotencyClaim::Existing(winner));
    let expired = store
        .claim_idempotency_key("key", "next", now + 60.0, now + 120.0)
        .await
        .unwrap();
    assert_eq!(expired, IdempotencyClaim::Claimed);
    let again = store
        .claim_idempotency_key("key", "other", now + 61.0, now + 120.0)
        .await
        .unwrap();
    assert_eq!(again, IdempotencyClaim::Existing("next".into()));
}

async fn reap_deletes_expired_terminal_jobs_with_their_events(store: Arc<dyn JobStore>) {
    let mut old_finished = job("old-finished", JobStatus::Finished, 50.0);
    old_finished.updated_at = 100.0;
    let mut young_failed = job("young-failed", JobStatus::Failed, 50.0);
    young_failed.updated_at = 195.0;
    let old_running = job("old-running", JobStatus::Running, 0.0);
    let old_cancelled = job("old-cancelled", JobStatus::Cancelled, 0.0);
    for j in [&old_finished, &young_failed, &old_running, &old_cancelled] {
        store.insert_job(j).await.unwrap();
        store
            .append_events(&[event(&j.id, 1, EventPayload::Started {})])
            .await
            .unwrap();
        store
            .put_checkpoint(&j.id, &serde_json::json!({"gen": 1}))
            .await
            .unwrap();
    }
    store
        .claim_idempotency_key("stale", "old-finished", 0.0, 150.0)
        .await
        .unwrap();
    store
        .claim_idempotency_key("fresh", "young-failed", 0.0, 300.0)
        .await
        .unwrap();

    let ttl = |status: JobStatus| match status {
        JobStatus::Finished | JobStatus::Failed => Some(10.0),
        _ => None,
    };
    let reaped = store.reap(200.0, &ttl).await.unwrap();
    assert_eq!(reaped, ["old-finished"]);
    assert_eq!(store.get_job("old-finished").await.unwrap(), None);
    assert!(all_events(&store, "old-finished").await.is_empty());
    assert_eq!(store.get_checkpoint("old-finished").await.unwrap(), None);
    for kept in ["young-failed", "old-running", "old-cancelled"] {
        assert!(store.get_job(kept).await.unwrap().is_some(), "{kept}");
        assert_eq!(all_events(&store, kept).await.len(), 1, "{kept}");
        assert!(
            store.get_checkpoint(kept).await.unwrap().is_some(),
            "{kept}"
        );
    }
    let stale = store
        .claim_idempotency_key("stale", "new", 200.0, 400.0)
        .await
        .unwrap();
    assert_eq!(stale, IdempotencyClaim::Claimed);
    let fresh = store
        .claim_idempotency_key("fresh", "new", 200.0, 400.0)
        .await
        .unwrap();
    assert_eq!(fresh, IdempotencyClaim::Existing("young-failed".into()));
    assert!(store.reap(200.0, &ttl).await.unwrap().is_empty());
}

/// Keys left by a crash between claim and insert are forgotten once old enough; keys of existing
/// jobs and recent claims are kept.
async fn dangling_idempotency_keys_are_forgotten_once_old(store: Arc<dyn JobStore>) {
    store
        .insert_job(&job("exists", JobStatus::Running, 1.0))
        .await
        .unwrap();
    for (key, job_id, expires_at) in [
        ("kept-job", "exists", 100.0),
        ("dangling-old", "never-written", 100.0),
        ("dangling-recent", "in-flight", 500.0),
    ] {
        let claim = store
            .claim_idempotency_key(key, job_id, 0.0, expires_at)
            .await
            .unwrap();
        assert_eq!(claim, IdempotencyClaim::Claimed);
    }
    assert_eq!(store.forget_dangling_keys(200.0).await.unwrap(), 1);
    let holder = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency_key(key, "retry", 1.0, 1e12)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        holder("kept-job").await,
        IdempotencyClaim::Existing("exists".into())
    );
    assert_eq!(holder("dangling-old").await, IdempotencyClaim::Claimed);
    assert_eq!(
        holder("dangling-recent").await,
        IdempotencyClaim::Existing("in-flight".into())
    );
}

async fn delete_job_removes_its_events_checkpoint_and_keys(store: Arc<dyn JobStore>) {
    for id in ["gone", "kept"] {
        store
            .insert_job(&job(id, JobStatus::Finished, 1.0))
            .await
            .unwrap();
        store
            .append_events(&[
                event(id, 1, EventPayload::Started {}),
                event(id, 2, EventPayload::Finished(result())),
            ])
            .await
            .unwrap();
        store
            .put_checkpoint(id, &serde_json::json!([1, 2]))
            .await
            .unwrap();
        store
            .claim_idempotency_key(&format!("key-{id}"), id, 0.0, 1e12)
            .await
            .unwrap();
    }
    assert!(store.delete_job("gone").await.unwrap());
    assert!(!store.delete_job("gone").await.unwrap());
    assert_eq!(store.get_job("gone").await.unwrap(), None);
    assert!(all_events(&store, "gone").await.is_empty());
    assert_eq!(store.get_checkpoint("gone").await.unwrap(), None);
    let reclaimed = store
        .claim_idempotency_key("key-gone", "new", 1.0, 1e12)
        .await
        .unwrap();
    assert_eq!(reclaimed, IdempotencyClaim::Claimed);

    assert_eq!(all_events(&store, "kept").await.len(), 2);
    let kept = store
        .claim_idempotency_key("key-kept", "new", 1.0, 1e12)
        .await
        .unwrap();
    assert_eq!(kept, IdempotencyClaim::Existing("kept".into()));
}

fn example(id: &str, input: &str) -> Example {
    let mut meta = serde_json::Map::new();
    meta.insert("source".into(), serde_json::json!({"n": 1, "tags": ["x"]}));
    Example {
        id: id.into(),
        input: input.into(),
        expected: (id != "b").then(|| format!("expected {id}")),
        meta,
    }
}

async fn examples_upsert_by_id_and_list_in_id_order(store: Arc<dyn JobStore>) {
    let written = store
        .upsert_examples(&[example("b", "2"), example("a", "1"), example("c", "3")])
        .await
        .unwrap();
    assert_eq!(written, 3);
    // Read before changing it: a store that keeps the corpus in memory must see later writes.
    assert_eq!(store.list_examples(10, 0).await.unwrap().len(), 3);
    let replaced = example("a", "one");
    assert_eq!(
        store
            .upsert_examples(std::slice::from_ref(&replaced))
            .await
            .unwrap(),
        1
    );
    let all = store.list_examples(10, 0).await.unwrap();
    assert_eq!(all, [replaced, example("b", "2"), example("c", "3")]);
    let page = store.list_examples(1, 1).await.unwrap();
    assert_eq!(page, [example("b", "2")]);
    assert!(store.delete_example("b").await.unwrap());
    assert!(!store.delete_example("b").await.unwrap());
    let ids: Vec<String> = store
        .list_examples(usize::MAX, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
}

async fn checkpoints_are_replaced_per_job(store: Arc<dyn JobStore>) {
    let first = serde_json::json!({"generation": 1, "rng": [1, 2, 3], "pool": {"p": 0.5}});
    let second = serde_json::json!({"generation": 2});
    store.put_checkpoint("job", &first).await.unwrap();
    assert_eq!(store.get_checkpoint("job").await.unwrap(), Some(first));
    store.put_checkpoint("job", &second).await.unwrap();
    assert_eq!(store.get_checkpoint("job").await.unwrap(), Some(second));
    assert_eq!(store.get_checkpoint("other").await.unwrap(), None);
}

/// A base written as text (the engine's) reads back as that JSON, replaces the previous base and
/// drops its parts, as `put_checkpoint` does.
async fn a_checkpoint_written_as_text_reads_back_as_its_json(store: Arc<dyn JobStore>) {
    store
        .put_checkpoint("job", &serde_json::json!({"generation": 1}))
        .await
        .unwrap();
    store
        .append_checkpoint_part("job", r#"{"p":1}"#)
        .await
        .unwrap();
    let text = r#"{"generation":2,"memo":{"cache":{"00000000000000ab/e1":{"score":0.5}}},"x":[1.25,null]}"#;
    store.put_checkpoint_text("job", text.into()).await.unwrap();
    assert_eq!(
        store.get_checkpoint("job").await.unwrap(),
        Some(serde_json::from_str::<serde_json::Value>(text).unwrap())
    );
    assert!(store.checkpoint_parts("job").await.unwrap().is_empty());
}

async fn checkpoint_parts_append_in_order_and_a_new_base_drops_them(store: Arc<dyn JobStore>) {
    store
        .put_checkpoint("job", &serde_json::json!({"base": 1}))
        .await
        .unwrap();
    assert!(store.checkpoint_parts("job").await.unwrap().is_empty());
    for part in [r#"{"p":1}"#, r#"{"p":2}"#, r#"{"p":3}"#] {
        store.append_checkpoint_part("job", part).await.unwrap();
    }
    store
        .append_checkpoint_part("other", r#"{"q":1}"#)
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint_parts("job").await.unwrap(),
        [r#"{"p":1}"#, r#"{"p":2}"#, r#"{"p":3}"#]
    );
    store
        .put_checkpoint("job", &serde_json::json!({"base": 2}))
        .await
        .unwrap();
    assert!(store.checkpoint_parts("job").await.unwrap().is_empty());
    store
        .append_checkpoint_part("job", r#"{"p":4}"#)
        .await
        .unwrap();
    assert_eq!(store.checkpoint_parts("job").await.unwrap(), [r#"{"p":4}"#]);
    assert_eq!(store.checkpoint_parts("other").await.unwrap().len(), 1);
    store
        .insert_job(&job("job", JobStatus::Finished, 1.0))
        .await
        .unwrap();
    store.delete_job("job").await.unwrap();
    assert!(store.checkpoint_parts("job").await.unwrap().is_empty());
}

/// A key remembers the request it was claimed with: another request is a conflict, the same
/// one (or a claim without a hash) the existing job. Reaping a job takes its keys with it.
async fn idempotency_keys_remember_their_request_and_go_with_their_job(store: Arc<dyn JobStore>) {
    let claim = |key: &'static str, job: &'static str, hash: Option<&'static str>, now: f64| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency_key_for(key, job, hash, now, now + 1e6)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        claim("k", "a", Some("h1"), 1.0).await,
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        claim("k", "b", Some("h1"), 2.0).await,
        IdempotencyClaim::Existing("a".into())
    );
    assert_eq!(
        claim("k", "b", Some("h2"), 2.0).await,
        IdempotencyClaim::Conflict("a".into())
    );
    assert_eq!(
        claim("k", "b", None, 2.0).await,
        IdempotencyClaim::Existing("a".into())
    );
    let mut done = job("a", JobStatus::Finished, 1.0);
    done.updated_at = 1.0;
    store.insert_job(&done).await.unwrap();
    let ttl = |_: JobStatus| Some(10.0);
    assert_eq!(store.reap(100.0, &ttl).await.unwrap(), ["a"]);
    assert_eq!(
        claim("k", "c", Some("h2"), 100.0).await,
        IdempotencyClaim::Claimed
    );
}

/// SQL stores only: a second store on the same data sees everything the first wrote.
async fn reopened_store_keeps_jobs_events_keys_examples_and_checkpoints(fixture: &Fixture) {
    let store = &fixture.store;
    let mut record = job("durable", JobStatus::Running, 5.0);
    store.insert_job(&record).await.unwrap();
    let events: Vec<Event> = (1..=20)
        .map(|id| event("durable", id, payload(id)))
        .collect();
    store.append_events(&events).await.unwrap();
    record.last_event_id = 20;
    store.update_job(&record).await.unwrap();
    store
        .claim_idempotency_key("k", "durable", 0.0, 1e12)
        .await
        .unwrap();
    store.upsert_examples(&[example("x", "y")]).await.unwrap();
    store
        .put_checkpoint("durable", &serde_json::json!({"g": 3}))
        .await
        .unwrap();

    let reopened = fixture.reopen().await;
    assert_eq!(reopened.get_job("durable").await.unwrap(), Some(record));
    assert_eq!(all_events(&reopened, "durable").await, events);
    assert_eq!(
        reopened
            .claim_idempotency_key("k", "other", 1.0, 1e12)
            .await
            .unwrap(),
        IdempotencyClaim::Existing("durable".into())
    );
    assert_eq!(
        reopened.list_examples(10, 0).await.unwrap(),
        [example("x", "y")]
    );
    assert_eq!(
        reopened.get_checkpoint("durable").await.unwrap(),
        Some(serde_json::json!({"g": 3}))
    );
}

/// Declares every suite test for one backend, in a module named after it.
macro_rules! suite {
    ($backend:ident $(, $sql_only:ident)*) => {
        mod $backend {
            use super::*;

            suite!(@test $backend jobs_round_trip_and_updates_keep_the_spec);
            suite!(@test $backend list_jobs_is_newest_first_filtered_and_paged);
            suite!(@test $backend batched_events_of_many_jobs_page_back_in_id_order);
            suite!(@test $backend many_jobs_logs_stay_ordered_across_many_chunks);
            suite!(@test $backend one_write_batch_commits_jobs_events_and_updates_together);
            suite!(@test $backend concurrent_idempotency_claims_have_exactly_one_winner);
            suite!(@test $backend reap_deletes_expired_terminal_jobs_with_their_events);
            suite!(@test $backend delete_job_removes_its_events_checkpoint_and_keys);
            suite!(@test $backend dangling_idempotency_keys_are_forgotten_once_old);
            suite!(@test $backend examples_upsert_by_id_and_list_in_id_order);
            suite!(@test $backend checkpoints_are_replaced_per_job);
            suite!(@test $backend a_checkpoint_written_as_text_reads_back_as_its_json);
            suite!(@test $backend checkpoint_parts_append_in_order_and_a_new_base_drops_them);
            suite!(@test $backend idempotency_keys_remember_their_request_and_go_with_their_job);
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $sql_only() {
                    let fixture = Fixture::$backend().await;
                    super::$sql_only(&fixture).await;
                }
            )*
        }
    };
    (@test $backend:ident $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let fixture = Fixture::$backend().await;
            super::$name(fixture.store.clone()).await;
        }
    };
}

suite!(memory);
suite!(
    sqlite,
    reopened_store_keeps_jobs_events_keys_examples_and_checkpoints,
    a_failed_write_batch_leaves_nothing
);
suite!(
    postgres,
    reopened_store_keeps_jobs_events_keys_examples_and_checkpoints,
    a_failed_write_batch_leaves_nothing
);
