use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Settings;
use crate::domain::{Example, JobSpec};
use crate::optimizer::EventSink;
use crate::store::{ExampleStore, JobStore, MemoryStore};

/// Records events; answers `Stopped` once `stop_after` events were taken.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<EventPayload>>,
    stop_after: Option<usize>,
}

#[async_trait]
impl EventSink for Recorder {
    async fn emit(&self, payload: EventPayload) -> Result<u64, Stopped> {
        let mut events = self.events.lock().unwrap();
        if self.stop_after.is_some_and(|n| events.len() >= n) {
            return Err(Stopped);
        }
        events.push(payload);
        Ok(events.len() as u64)
    }
}

struct Run {
    result: Result<JobResult, OptimizeError>,
    events: Vec<EventPayload>,
}

impl Run {
    fn types(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.type_name()).collect()
    }
    fn proposals(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EventPayload::Progress { proposal, .. } => Some(proposal.clone()),
                _ => None,
            })
            .collect()
    }
    fn result(&self) -> &DefaultResult {
        match &self.result {
            Ok(JobResult::Default(r)) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn run_with(
    spec: JobSpec,
    settings: Settings,
    store: Arc<dyn JobStore>,
    stop_after: Option<usize>,
) -> Run {
    let sink = Arc::new(Recorder {
        events: Mutex::default(),
        stop_after,
    });
    let ctx = JobContext {
        steering: Default::default(),
        job_id: "job".into(),
        spec: Arc::new(spec),
        events: sink.clone(),
        cancel: CancellationToken::new(),
        halt: CancellationToken::new(),
        checkpoints: store.clone(),
        examples: store,
    };
    let judge_provider = Arc::new(crate::provider::LocalEcho::with_latency(
        std::time::Duration::from_millis(settings.local_echo_latency_ms),
    ));
    let result = DefaultOptimizer::new(judge_provider, settings.default_mode())
        .run(ctx)
        .await;
    let events = sink.events.lock().unwrap().clone();
    Run { result, events }
}

async fn run(spec: JobSpec) -> Run {
    run_with(
        spec,
        Settings::default(),
        Arc::new(MemoryStore::new()),
        None,
    )
    .await
}

fn spec(prompt: &str, iterations: u32) -> JobSpec {
    let mut spec = JobSpec::from_prompt(prompt);
    spec.iterations = iterations;
    spec
}

const PROMPT: &str = "Write a short and friendly greeting for new users of the product today";

#[tokio::test]
async fn early_stop_fires_after_patience_rounds_without_gain() {
    let mut s = spec("alpha beta", 4);
    s.early_stop_patience = Some(1);
    let run = run(s).await;
    // Round 1 drops a word; round 2 has nothing left to mutate, so no gain.
    assert_eq!(
        run.types(),
        [
            "mutation",
            "progress",
            "selected",
            "mutation",
            "progress",
            "selected",
            "early_stop"
        ]
    );
    let result = run.result();
    assert!(matches!(&run.events[6], EventPayload::EarlyStop { best } if *best == result.proposal));
    assert_eq!(result.proposal.split_whitespace().count(), 1);
    assert_eq!(
        result.scores.brevity,
        Some(-(result.proposal.chars().count() as i64))
    );
}

#[tokio::test]
async fn every_round_reports_mutation_progress_selected_and_shortens_the_prompt() {
    let run = run(spec(PROMPT, 3)).await;
    assert_eq!(run.types(), ["mutation", "progress", "selected"].repeat(3));
    let proposals = run.proposals();
    assert!(
        proposals.windows(2).all(|w| w[1].len() <= w[0].len()),
        "{proposals:?}"
    );
    assert!(proposals[0].len() < PROMPT.len());
    let result = run.result();
    assert_eq!(
        result.target_model,
        Settings::default().target_model_default
    );
    let judge: Vec<&str> = result.scores.judge.keys().map(String::as_str).collect();
    assert_eq!(judge, ["brevity", "coverage", "diversity"]);
}

#[tokio::test]
async fn same_seed_gives_same_proposals() {
    let mut s = spec(PROMPT, 4);
    s.seed = Some(99);
    let (a, b) = (run(s.clone()).await, run(s.clone()).await);
    assert_eq!(a.proposals(), b.proposals());
    assert_eq!(a.result(), b.result());
}

#[tokio::test]
async fn only_requested_objectives_are_scored() {
    let mut s = spec(PROMPT, 1);
    s.objectives = Some(vec![Objective::Diversity]);
    let run = run(s).await;
    let scores = &run.result().scores;
    assert_eq!((scores.brevity, scores.coverage), (None, None));
    assert!(scores.diversity.is_some());
}

#[tokio::test]
async fn stored_examples_without_expected_are_retrieved_and_scored() {
    let store = Arc::new(MemoryStore::new());
    let example = |id: &str, input: &str| Example {
        id: id.into(),
        input: input.into(),
        expected: None,
        meta: Default::default(),
    };
    store
        .upsert_examples(&[
            example("1", "friendly greeting users"),
            example("2", "tax forms"),
        ])
        .await
        .unwrap();
    let run = run_with(spec(PROMPT, 2), Settings::default(), store, None).await;
    let coverage = run.result().scores.coverage.unwrap();
    assert!(coverage > 0.0, "retrieved example not used: {coverage}");
}

#[tokio::test]
async fn tournament_mode_selects_real_candidates() {
    let settings = Settings {
        enable_pareto_v2: false,
        ..Settings::default()
    };
    let mut s = spec(PROMPT, 3);
    s.tournament_size = Some(2);
    let run = run_with(s, settings, Arc::new(MemoryStore::new()), None).await;
    for proposal in run.proposals() {
        assert!(proposal.split_whitespace().count() > 1, "{proposal}");
        let mut words: Vec<&str> = proposal.split_whitespace().collect();
        words.retain(|w| !PROMPT.split_whitespace().any(|p| p == *w));
        assert!(words.is_empty(), "not derived from the prompt: {proposal}");
    }
}

#[tokio::test]
async fn a_model_judge_with_unreadable_answers_leaves_judge_scores_empty() {
    let settings = Settings {
        use_judge_stub: false,
        judge_provider: "local_echo".into(),
        ..Settings::default()
    };
    let run = run_with(
        spec(PROMPT, 2),
        settings,
        Arc::new(MemoryStore::new()),
        None,
    )
    .await;
    assert_eq!(run.types(), ["mutation", "progress", "selected"].repeat(2));
    assert!(run.result().scores.judge.values().all(|v| *v == 0.0));
}

#[tokio::test]
async fn a_stopped_job_ends_the_loop() {
    let run = run_with(
        spec(PROMPT, 4),
        Settings::default(),
        Arc::new(MemoryStore::new()),
        Some(4),
    )
    .await;
    assert_eq!(run.result, Err(OptimizeError::Stopped));
    assert_eq!(run.events.len(), 4);
}

#[tokio::test]
async fn big_prompts_and_examples_run_and_stay_reproducible() {
    let words: Vec<String> = (0..4_000).map(|i| format!("w{}", i % 700)).collect();
    let prompt = words.join(" ");
    assert!(prompt.len() > INLINE_BYTES);
    let store = Arc::new(MemoryStore::new());
    let stored: Vec<Example> = (0..20)
        .map(|i| Example {
            id: format!("{i:02}"),
            input: words[i * 100..i * 100 + 1_000].join(" "),
            expected: (i % 2 == 0).then(|| "w1 w2".to_string()),
            meta: Default::default(),
        })
        .collect();
    store.upsert_examples(&stored).await.unwrap();
    let mut s = spec(&prompt, 3);
    s.seed = Some(5);
    let a = run_with(s.clone(), Settings::default(), store.clone(), None).await;
    let b = run_with(s, Settings::default(), store, None).await;
    assert_eq!(a.types(), ["mutation", "progress", "selected"].repeat(3));
    assert_eq!(a.proposals(), b.proposals());
    assert!(a.result().scores.coverage.unwrap() > 0.0);
}
