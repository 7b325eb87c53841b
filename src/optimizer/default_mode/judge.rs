//! The judge of the default loop: per-objective scores (0–10) for the chosen candidate, a
//! ranking of the Pareto front (Pareto v2) and pairwise duels for the tournament. The stub is
//! the original's deterministic formulas; the model judge asks a [`ModelProvider`] with the
//! original's prompts and reads its JSON defensively — an unreadable answer, a provider error or
//! a timeout gives empty scores (or the length fallback for a duel), never a failed job.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::domain::{Example, Objective};
use crate::optimizer::Stopped;
use crate::provider::{ChatMessage, CompletionRequest, ModelProvider};

/// Judge scores by objective name.
pub type JudgeScores = BTreeMap<String, f64>;

/// Who won a duel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    A,
    B,
}

/// Which judge default-mode jobs get: the stub (`USE_JUDGE_STUB`, or `JUDGE_PROVIDER=stub`)
/// or a model asked with a timeout.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeChoice {
    Stub,
    Model { model: String, timeout: Duration },
}

/// The judge in force for a job.
#[derive(Clone)]
pub enum Judge {
    /// Deterministic and offline (`USE_JUDGE_STUB`, or `JUDGE_PROVIDER=stub`), with the job's
    /// reference tokens computed once.
    Stub(Arc<StubReference>),
    /// A model behind a provider.
    Model {
        provider: Arc<dyn ModelProvider>,
        model: String,
        timeout: Duration,
    },
}

/// The original's pairwise prompt, filled in one pass (text in `task` or `a` that looks like a
/// placeholder stays as it is).
fn pairwise_prompt(task: &str, a: &str, b: &str) -> String {
    format!(
        r#"You are GPT-5 acting as a deterministic evaluation judge.
Evaluate which candidate best satisfies the task below.
Ignore style; reward clarity, faithfulness, and specificity.
If tied, prefer the shorter candidate.

TASK:
{task}

CANDIDATE A:
{a}

CANDIDATE B:
{b}

Output EXACTLY one JSON object on a single line (no prose):
{{"winner":"A","confidence":0.00,"justification":"<=12 words"}}
Rules:
- "winner" MUST be "A" or "B".
- "confidence" MUST be a number in [0,1].
- "justification" MUST be <=12 words; no chain-of-thought.
Example:
{{"winner":"A","confidence":0.73,"justification":"clear, specific, follows instructions"}}"#
    )
}

impl Judge {
    /// The stub (with `reference`) unless `choice` is a model judge behind `provider`.
    pub fn new(
        choice: &JudgeChoice,
        provider: Arc<dyn ModelProvider>,
        reference: StubReference,
    ) -> Judge {
        match choice {
            JudgeChoice::Stub => Judge::Stub(Arc::new(reference)),
            JudgeChoice::Model { model, timeout } => Judge::Model {
                provider,
                model: model.clone(),
                timeout: *timeout,
            },
        }
    }

    /// Scores `candidate` for `task` on each objective. The stub always scores all three
    /// (as the original's did) against its reference (built from the same task and examples);
    /// a model scores the requested ones.
    pub async fn scores(
        &self,
        task: &str,
        candidate: &str,
        examples: &[Example],
        objectives: &[Objective],
        rubric: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<JudgeScores, Stopped> {
        match self {
            Judge::Stub(reference) => Ok(stub_scores(reference, candidate)),
            Judge::Model { .. } => {
                let prompt = score_prompt(task, candidate, examples, objectives, rubric);
                let answer = self.ask(prompt, 128, cancel).await?;
                Ok(answer
                    .as_deref()
                    .and_then(first_json_object)
                    .map(|v| read_scores(&v, objectives))
                    .unwrap_or_default())
            }
        }
    }

    /// Orders `proposals` best first (Pareto v2). Stable: equal scores keep their order.
    pub async fn rank(
        &self,
        task: &str,
        proposals: &[String],
        objectives: &[Objective],
        rubric: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, Stopped> {
        if let Judge::Stub(_) = self {
            return Ok(stub_rank(proposals));
        }
        let mut scored = Vec::with_capacity(proposals.len());
        for p in proposals {
            let scores = self
                .scores(task, p, &[], objectives, rubric, cancel)
                .await?;
            scored.push((scores.values().sum(), p.clone()));
        }
        Ok(by_score_desc(scored))
    }

    /// Which of two candidates better serves `task`.
    pub async fn duel(
        &self,
        task: &str,
        a: &str,
        b: &str,
        cancel: &CancellationToken,
    ) -> Result<Winner, Stopped> {
        let by_length = if a.chars().count() <= b.chars().count() {
            Winner::A
        } else {
            Winner::B
        };
        match self {
            Judge::Stub(_) => Ok(if (a.chars().count(), a) <= (b.chars().count(), b) {
                Winner::A
            } else {
                Winner::B
            }),
            Judge::Model { .. } => {
                let prompt = pairwise_prompt(task, a, b);
                let answer = self.ask(prompt, 64, cancel).await?;
                let label = answer.as_deref().and_then(first_json_object).and_then(|v| {
                    v.get("winner")
                        .and_then(Value::as_str)
                        .map(|w| w.trim().to_ascii_uppercase())
                });
                Ok(match label.as_deref() {
                    Some("A") => Winner::A,
                    Some("B") => Winner::B,
                    _ => by_length,
                })
            }
        }
    }

    /// Single-elimination tournament in groups of `k`: the winning proposal first, then the
    /// others in their original order. With `k < 2` or fewer than two candidates, unchanged.
    pub async fn tournament(
        &self,
        task: &str,
        candidates: &[String],
        k: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, Stopped> {
        if k < 2 || candidates.len() < 2 {
            return Ok(candidates.to_vec());
        }
        let mut pool: Vec<&String> = candidates.iter().collect();
        while pool.len() > 1 {
            let mut next = Vec::with_capacity(pool.len().div_ceil(k));
            for group in pool.chunks(k) {
                let mut champion = group[0];
                for challenger in &group[1..] {
                    if self.duel(task, champion, challenger, cancel).await? == Winner::B {
                        champion = challenger;
                    }
                }
                next.push(champion);
            }
            pool = next;
        }
        let champion = pool[0].clone();
        let rest = candidates.iter().filter(|c| **c != champion).cloned();
        Ok(std::iter::once(champion.clone()).chain(rest).collect())
    }

    /// One model call; `None` when it failed or timed out, `Err` when the job stopped.
    async fn ask(
        &self,
        prompt: String,
        max_tokens: u32,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, Stopped> {
        let Judge::Model {
            provider,
            model,
            timeout,
        } = self
        else {
            return Ok(None);
        };
        let request = CompletionRequest {
            model: model.as_str().into(),
            messages: vec![ChatMessage::user(prompt)],
            temperature: Some(0.0),
            max_tokens: Some(max_tokens),
            seed: Some(0),
        };
        tokio::select! {
            _ = cancel.cancelled() => Err(Stopped),
            answer = tokio::time::timeout(*timeout, provider.complete(request)) => Ok(match answer {
                Ok(Ok(completion)) => Some(completion.text),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "judge call failed");
                    None
                }
                Err(_) => {
                    tracing::warn!("judge call timed out");
                    None
                }
            }),
        }
    }
}

/// The stub's reference: the distinct (case-sensitive) tokens of the task and of the examples'
/// inputs and expected outputs (an absent `expected` adds nothing).
#[derive(Debug, Default)]
pub struct StubReference(HashSet<String>);

impl StubReference {
    pub fn new(task: &str, examples: &[Example]) -> Self {
        let expected = examples.iter().filter_map(|e| e.expected.as_deref());
        let texts = std::iter::once(task)
            .chain(examples.iter().map(|e| e.input.as_str()))
            .chain(expected);
        StubReference(
            texts
                .flat_map(str::split_whitespace)
                .map(String::from)
                .collect(),
        )
    }
}

/// The original stub's formulas, case-sensitive tokens, each clamped to 0–10.
fn stub_scores(reference: &StubReference, candidate: &str) -> JudgeScores {
    let reference = &reference.0;
    let words: Vec<&str> = candidate.split_whitespace().collect();
    let distinct: HashSet<&str> = words.iter().copied().collect();
    let brevity = 10 - (candidate.chars().count() % 10) as i64;
    let diversity = if words.is_empty() {
        0
    } else {
        (10 * distinct.len() / words.len()) as i64
    };
    let overlap = distinct.iter().filter(|w| reference.contains(**w)).count();
    let coverage = (10 * overlap / reference.len().max(1)) as i64;
    [
        ("brevity", brevity),
        ("diversity", diversity),
        ("coverage", coverage),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clamp(0, 10) as f64))
    .collect()
}

/// The stub's Pareto v2 ranking, best first: pure CPU, so callers may run it off the async
/// workers for big proposals.
pub fn stub_rank(proposals: &[String]) -> Vec<String> {
    by_score_desc(
        proposals
            .iter()
            .map(|p| (stub_rank_score(p), p.clone()))
            .collect(),
    )
}

/// Highest score first; equal scores keep their order.
fn by_score_desc(mut scored: Vec<(f64, String)>) -> Vec<String> {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, p)| p).collect()
}

/// The stub's ranking score: up to 100 for shortness plus distinct lowercased tokens.
fn stub_rank_score(proposal: &str) -> f64 {
    let distinct: HashSet<String> = proposal.split_whitespace().map(str::to_lowercase).collect();
    (100.0 - proposal.chars().count() as f64).max(0.0) + distinct.len() as f64
}

fn score_prompt(
    task: &str,
    candidate: &str,
    examples: &[Example],
    objectives: &[Objective],
    rubric: Option<&str>,
) -> String {
    let names = if objectives.is_empty() {
        "brevity, diversity, coverage".to_string()
    } else {
        objectives
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = vec![
        "You are a strict judge. Score the candidate answer for each objective (0-10).".into(),
        r#"Return JSON on one line: {"scores":{...},"justification":"<=12 words"}."#.into(),
        "No chain-of-thought beyond the short justification.".into(),
        format!("Objectives: {names}."),
        format!("Prompt: {task}"),
        format!("Candidate: {candidate}"),
    ];
    if let Some(rubric) = rubric {
        parts.push(format!("Rubric: {rubric}"));
    }
    if !examples.is_empty() {
        let listed: Vec<String> = examples
            .iter()
            .map(|e| {
                let expected = e.expected.as_deref().unwrap_or("");
                format!("input: {}, expected: {expected}", e.input)
            })
            .collect();
        parts.push(format!("Examples: {}.", listed.join("; ")));
        parts.push(
            "Coverage should reflect how well candidate addresses prompt and examples.".into(),
        );
    }
    parts.join("\n")
}

/// The first JSON object in `text`, skipping any prose or code fences around it.
fn first_json_object(text: &str) -> Option<Value> {
    text.match_indices('{').find_map(|(start, _)| {
        serde_json::Deserializer::from_str(&text[start..])
            .into_iter::<Value>()
            .next()
            .and_then(Result::ok)
            .filter(Value::is_object)
    })
}

/// `{"scores": {name: number}}` → the requested objectives, each clamped to 0–10; missing or
/// non-numeric values count 0 (numbers sent as strings are accepted).
fn read_scores(answer: &Value, objectives: &[Objective]) -> JudgeScores {
    let scores = answer.get("scores");
    objectives
        .iter()
        .map(|o| {
            let value = scores
                .and_then(|s| s.get(o.as_str()))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                });
            let value = value.filter(|v| v.is_finite()).unwrap_or(0.0);
            (o.as_str().to_string(), value.clamp(0.0, 10.0))
        })
        .collect()
}

#[cfg(test)]
mod tests;
