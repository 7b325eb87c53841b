use async_trait::async_trait;

use super::*;
use crate::provider::{Completion, ProviderError, Usage};

/// Answers every call with the same text (or an error).
struct Scripted(Result<String, ProviderError>);

#[async_trait]
impl ModelProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn complete(&self, _: CompletionRequest) -> Result<Completion, ProviderError> {
        self.0.clone().map(|text| Completion {
            text,
            usage: Usage::default(),
        })
    }
}

fn model(answer: Result<&str, ProviderError>) -> Judge {
    Judge::Model {
        provider: Arc::new(Scripted(answer.map(String::from))),
        model: "judge".into(),
        timeout: Duration::from_secs(5),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn tournament_returns_the_winning_proposal_not_a_label() {
    let cancel = CancellationToken::new();
    let cands = strings(&["a much longer candidate", "short one", "mid size one"]);
    // The stub prefers the shorter candidate.
    let ranked = Judge::Stub(Default::default())
        .tournament("t", &cands, 2, &cancel)
        .await
        .unwrap();
    assert_eq!(
        ranked,
        strings(&["short one", "a much longer candidate", "mid size one"])
    );
    // A model that always says "B": the last challenger wins, as text.
    let ranked = model(Ok(r#"{"winner":"B","confidence":0.9}"#))
        .tournament("t", &cands, 4, &cancel)
        .await
        .unwrap();
    assert_eq!(ranked[0], "mid size one");
    assert_eq!(ranked.len(), 3);
}

#[tokio::test]
async fn duel_falls_back_to_length_when_the_answer_is_unusable() {
    let cancel = CancellationToken::new();
    for judge in [
        model(Ok("I think A")),
        model(Ok(r#"{"winner":"C"}"#)),
        model(Err(ProviderError::Timeout)),
    ] {
        assert_eq!(
            judge.duel("t", "long text", "short", &cancel).await,
            Ok(Winner::B)
        );
    }
    let fenced = model(Ok("```json\n{\"winner\": \"a\"}\n```"));
    assert_eq!(
        fenced.duel("t", "long text", "short", &cancel).await,
        Ok(Winner::A)
    );
}

#[tokio::test]
async fn model_scores_are_read_defensively() {
    let cancel = CancellationToken::new();
    let objectives = [Objective::Brevity, Objective::Coverage];
    let judge = model(Ok(
        r#"Sure: {"scores":{"brevity":12,"coverage":"7.5","diversity":3},"justification":"ok"}"#,
    ));
    let scores = judge
        .scores("t", "c", &[], &objectives, None, &cancel)
        .await
        .unwrap();
    assert_eq!(
        scores,
        [("brevity".to_string(), 10.0), ("coverage".to_string(), 7.5)].into()
    );
    for broken in [
        Ok("not json"),
        Ok(r#"{"scores": 5}"#),
        Err(ProviderError::Http { status: 500 }),
    ] {
        let scores = model(broken)
            .scores("t", "c", &[], &objectives, None, &cancel)
            .await
            .unwrap();
        assert!(scores.values().all(|v| *v == 0.0), "{scores:?}");
    }
    let unreadable = model(Ok("nope"))
        .scores("t", "c", &[], &objectives, None, &cancel)
        .await;
    assert_eq!(unreadable, Ok(JudgeScores::new()));
}

#[tokio::test]
async fn a_cancelled_job_stops_a_pending_judge_call() {
    struct Never;
    #[async_trait]
    impl ModelProvider for Never {
        fn name(&self) -> &str {
            "never"
        }
        async fn complete(&self, _: CompletionRequest) -> Result<Completion, ProviderError> {
            std::future::pending().await
        }
    }
    let judge = Judge::Model {
        provider: Arc::new(Never),
        model: "judge".into(),
        timeout: Duration::from_secs(3600),
    };
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert_eq!(judge.duel("t", "a", "b", &cancel).await, Err(Stopped));
}

#[test]
fn stub_scores_follow_the_original_formulas() {
    let examples = [Example {
        id: "1".into(),
        input: "greet the user".into(),
        expected: None,
        meta: Default::default(),
    }];
    // 15 code points → brevity 10 − 5; 3 of 3 words distinct → 10; reference tokens
    // {Say, hello, greet, the, user} ∩ {Say, hello, user!} = 2 → ⌊20 / 5⌋ = 4.
    let scores = stub_scores(
        &StubReference::new("Say hello", &examples),
        "Say hello user!",
    );
    assert_eq!(scores["brevity"], 5.0);
    assert_eq!(scores["diversity"], 10.0);
    assert_eq!(scores["coverage"], 4.0);
    assert_eq!(stub_scores(&StubReference::default(), "")["diversity"], 0.0);
    assert_eq!(stub_rank_score("A a b"), 97.0);
}

#[test]
fn pairwise_prompt_fills_each_placeholder_once() {
    let prompt = pairwise_prompt("task with {a} inside", "first", "second");
    assert!(prompt.contains("TASK:\ntask with {a} inside\n"));
    assert!(prompt.contains("CANDIDATE A:\nfirst\n\nCANDIDATE B:\nsecond\n"));
    assert!(prompt.contains(r#"{"winner":"A","confidence":0.73,"#));
}
