//! Cost up front: what a GEPA request will spend before it runs. Metric calls follow the
//! engine's budget rules (the seed's validation, then iterations until the budget, the
//! generation cap or convergence); reflection calls are one per iteration; tokens are estimated
//! from the texts (4 characters a token) and priced with `MODEL_PRICES_JSON`. A prediction, not
//! a promise: acceptance rates depend on the task, so it assumes one accepted child in
//! `ACCEPT_EVERY` iterations.

use super::budget::Prices;
use super::engine::MERGE_SUBSAMPLE;
use crate::domain::Example;
use crate::domain::gepa::ValidationPolicy;
use crate::provider::Usage;

/// One accepted (and fully validated) child in this many iterations.
const ACCEPT_EVERY: f64 = 4.0;
/// The reflection meta-prompt's own length in tokens (roughly).
const META_PROMPT_TOKENS: f64 = 260.0;
/// Assumed answer length when examples carry no expected answer.
const DEFAULT_ANSWER_TOKENS: f64 = 20.0;

/// What a request is predicted to spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub metric_calls: u64,
    pub reflection_calls: u64,
    pub iterations: u64,
    pub task_tokens: u64,
    pub reflection_tokens: u64,
    pub cost_usd: f64,
    pub train_examples: u32,
    pub val_examples: u32,
}

/// Inputs of an estimate.
pub struct Request<'a> {
    pub prompt: &'a str,
    pub train: &'a [Example],
    pub val: &'a [Example],
    pub max_metric_calls: u64,
    pub max_generations: Option<u32>,
    pub minibatch: usize,
    pub validation: ValidationPolicy,
    pub task_model: &'a str,
    pub reflection_model: &'a str,
}

fn tokens(text: &str) -> f64 {
    (text.chars().count() as f64 / 4.0).ceil()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

pub fn estimate(r: &Request<'_>, prices: &Prices) -> Estimate {
    let v = r.val.len() as f64;
    let b = r.minibatch.clamp(1, r.train.len().max(1)) as f64;
    let all = || r.train.iter().chain(r.val);
    let input = mean(all().map(|e| tokens(&e.input)));
    let answer = mean(all().map(|e| e.expected.as_deref().map_or(DEFAULT_ANSWER_TOKENS, tokens)));
    // Each accepted child's validation: a subsample first, the rest when promoted (assume
    // half are); rejected children cost nothing on validation.
    let validation = match r.validation {
        ValidationPolicy::Full => v,
        ValidationPolicy::Subsample => {
            let sub = (v / 5.0).ceil().max(MERGE_SUBSAMPLE as f64).min(v);
            sub + 0.5 * (v - sub)
        }
    };
    let per_iteration = 2.0 * b + validation / ACCEPT_EVERY;
    let left = r.max_metric_calls.saturating_sub(r.val.len() as u64) as f64;
    let mut iterations = if left >= 2.0 {
        (left / per_iteration).ceil().max(1.0)
    } else {
        0.0
    };
    if let Some(g) = r.max_generations {
        iterations = iterations.min(f64::from(g));
    }
    let metric_calls = (v + iterations * per_iteration).min(r.max_metric_calls as f64);
    // The prompt grows as reflection adds to it: assume it doubles over the run.
    let prompt = tokens(r.prompt).max(10.0) * 1.5;
    let task_in = (prompt + input).ceil() as u64;
    let task_out = answer.ceil() as u64;
    let calls = metric_calls.round() as u64;
    let reflect_in =
        (META_PROMPT_TOKENS + prompt + b * (input + 2.0 * answer + 20.0)).ceil() as u64;
    let reflect_out = (prompt * 1.2).ceil() as u64;
    let reflections = iterations as u64;
    let task_usage = Usage {
        prompt_tokens: task_in * calls,
        completion_tokens: task_out * calls,
    };
    let reflect_usage = Usage {
        prompt_tokens: reflect_in * reflections,
        completion_tokens: reflect_out * reflections,
    };
    Estimate {
        metric_calls: calls,
        reflection_calls: reflections,
        iterations: reflections,
        task_tokens: task_usage.prompt_tokens + task_usage.completion_tokens,
        reflection_tokens: reflect_usage.prompt_tokens + reflect_usage.completion_tokens,
        cost_usd: prices.cost(r.task_model, task_usage)
            + prices.cost(r.reflection_model, reflect_usage),
        train_examples: r.train.len() as u32,
        val_examples: r.val.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                id: i.to_string(),
                input: "city: new york".into(),
                expected: Some("NEW YORK".into()),
                meta: Default::default(),
            })
            .collect()
    }

    #[test]
    fn the_estimate_follows_the_budget_rules_and_prices() {
        let (train, val) = (ex(30), ex(50));
        let prices = Prices::parse(Some(r#"{"t": {"input": 1.0, "output": 1.0}}"#)).unwrap();
        let request = Request {
            prompt: "Answer.",
            train: &train,
            val: &val,
            max_metric_calls: 300,
            max_generations: None,
            minibatch: 3,
            validation: ValidationPolicy::Full,
            task_model: "t",
            reflection_model: "r",
        };
        let e = estimate(&request, &prices);
        assert!(e.metric_calls <= 300 && e.metric_calls >= 250, "{e:?}");
        // 250 calls left, 6 per minibatch pair + 50/4 per iteration on validation.
        assert_eq!(e.iterations, 14);
        assert_eq!(e.reflection_calls, e.iterations);
        assert!(e.cost_usd > 0.0 && e.task_tokens > 0 && e.reflection_tokens > 0);
        // Only the task model is priced here: cost = task tokens / 1e6.
        assert!((e.cost_usd - e.task_tokens as f64 / 1e6).abs() < 1e-12);
        let capped = estimate(
            &Request {
                max_generations: Some(2),
                ..request
            },
            &prices,
        );
        assert_eq!(capped.reflection_calls, 2);
        assert!(capped.metric_calls < e.metric_calls);
        let tiny = estimate(
            &Request {
                max_metric_calls: 50,
                ..request
            },
            &prices,
        );
        assert_eq!((tiny.metric_calls, tiny.reflection_calls), (50, 0));
    }
}
