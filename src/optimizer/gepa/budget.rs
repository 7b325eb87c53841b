//! Hard budgets. Metric calls are RESERVED before dispatch (the engine asks for exactly the
//! uncached evaluations it is about to run), so `max_metric_calls` is never exceeded, not even
//! by one call. Cost (USD over task + reflection + judge) and tokens are recorded as answers
//! arrive and gate every further dispatch; generations and wall time are checked per iteration.
//! Also holds the model price table (`MODEL_PRICES_JSON`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::gepa::BudgetUsage;
use crate::provider::Usage;

/// Limits in force for one job (`None` = unlimited).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_metric_calls: Option<u64>,
    pub max_generations: Option<u32>,
    pub max_cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    /// The engine stops starting iterations after this instant.
    pub deadline: Option<Instant>,
    /// When the job's wall time runs out (`deadline` is a share of it): no iteration starts
    /// unless one as slow as the slowest so far would end before this instant.
    pub hard_deadline: Option<Instant>,
}

/// What has been spent; checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    pub metric_calls: u64,
    pub cost_usd: f64,
    pub tokens: u64,
}

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxMetricCalls,
    MaxGenerations,
    MaxCost,
    MaxTokens,
    WallTime,
    /// Every recent iteration was idle (perfect parents or repeated proposals, all cached).
    Converged,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxMetricCalls => "max_metric_calls",
            StopReason::MaxGenerations => "max_generations",
            StopReason::MaxCost => "max_cost",
            StopReason::MaxTokens => "max_tokens",
            StopReason::WallTime => "wall_time",
            StopReason::Converged => "converged",
        }
    }
}

/// The budget of one job.
#[derive(Debug, Clone)]
pub struct Budget {
    pub limits: Limits,
    pub spent: Spent,
    /// The slowest iteration so far (not checkpointed: a resumed run learns it again).
    slowest_iteration: Duration,
}

impl Budget {
    pub fn new(limits: Limits, spent: Spent) -> Self {
        Budget {
            limits,
            spent,
            slowest_iteration: Duration::ZERO,
        }
    }

    /// Metric calls still available (`None` = unlimited).
    pub fn metric_calls_left(&self) -> Option<u64> {
        self.limits
            .max_metric_calls
            .map(|max| max.saturating_sub(self.spent.metric_calls))
    }

    /// True when `n` more metric calls fit.
    pub fn can_afford(&self, n: u64) -> bool {
        self.metric_calls_left().is_none_or(|left| left >= n) && self.spending_stop().is_none()
    }

    /// Reserves `n` metric calls before they are dispatched; refuses (reserving nothing) when
    /// they do not all fit or cost/tokens are already used up.
    pub fn reserve(&mut self, n: u64) -> Result<(), StopReason> {
        if let Some(reason) = self.spending_stop() {
            return Err(reason);
        }
        if self.metric_calls_left().is_some_and(|left| left < n) {
            return Err(StopReason::MaxMetricCalls);
        }
        self.spent.metric_calls += n;
        Ok(())
    }

    /// Records a model answer's spend.
    pub fn record(&mut self, cost_usd: f64, tokens: u64) {
        self.spent.cost_usd += cost_usd;
        self.spent.tokens += tokens;
    }

    /// Cost or tokens used up.
    pub fn spending_stop(&self) -> Option<StopReason> {
        if self
            .limits
            .max_cost_usd
            .is_some_and(|max| self.spent.cost_usd >= max)
        {
            return Some(StopReason::MaxCost);
        }
        if self
            .limits
            .max_tokens
            .is_some_and(|max| self.spent.tokens >= max)
        {
            return Some(StopReason::MaxTokens);
        }
        None
    }

    /// Records how long an iteration took (see [`Limits::hard_deadline`]).
    pub fn observe_iteration(&mut self, took: Duration) {
        self.slowest_iteration = self.slowest_iteration.max(took);
    }

    /// Checked at the top of each iteration: `generation` iterations have completed and the next
    /// one needs at least `needed` metric calls.
    pub fn stop_before_iteration(&self, generation: u32, needed: u64) -> Option<StopReason> {
        if self
            .limits
            .max_generations
            .is_some_and(|max| generation >= max)
        {
            return Some(StopReason::MaxGenerations);
        }
        let now = Instant::now();
        if self.limits.deadline.is_some_and(|d| now >= d)
            || self
                .limits
                .hard_deadline
                .is_some_and(|d| now + self.slowest_iteration >= d)
        {
            return Some(StopReason::WallTime);
        }
        if let Some(reason) = self.spending_stop() {
            return Some(reason);
        }
        if self.metric_calls_left().is_some_and(|left| left < needed) {
            return Some(StopReason::MaxMetricCalls);
        }
        None
    }

    pub fn usage(&self, generation: u32) -> BudgetUsage {
        BudgetUsage {
            generation,
            metric_calls_used: self.spent.metric_calls,
            metric_calls_left: self.metric_calls_left(),
            cost_usd: self.spent.cost_usd,
            cost_left_usd: self
                .limits
                .max_cost_usd
                .map(|max| (max - self.spent.cost_usd).max(0.0)),
            tokens_used: self.spent.tokens,
            tokens_left: self
                .limits
                .max_tokens
                .map(|max| max.saturating_sub(self.spent.tokens)),
            rollouts: self.spent.metric_calls,
        }
    }
}

/// USD per million input and output tokens, by model (`MODEL_PRICES_JSON`:
/// `{"model": {"input": 0.15, "output": 0.6}}`). Unknown models cost nothing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Prices(HashMap<String, Price>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Price {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

impl Prices {
    /// Parses `MODEL_PRICES_JSON`; a malformed table is an error the caller reports.
    pub fn parse(json: Option<&str>) -> Result<Prices, serde_json::Error> {
        match json.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(Prices::default()),
            Some(text) => serde_json::from_str(text),
        }
    }

    /// Whether the table has a price for `model`.
    pub fn has(&self, model: &str) -> bool {
        self.0.contains_key(model)
    }

    pub fn cost(&self, model: &str, usage: Usage) -> f64 {
        self.0.get(model).map_or(0.0, |p| {
            usage.prompt_tokens as f64 * p.input / 1e6
                + usage.completion_tokens as f64 * p.output / 1e6
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_never_exceeds_the_metric_call_budget() {
        let mut budget = Budget::new(
            Limits {
                max_metric_calls: Some(10),
                ..Limits::default()
            },
            Spent::default(),
        );
        assert!(budget.reserve(6).is_ok());
        // 5 do not fit: nothing is reserved.
        assert_eq!(budget.reserve(5), Err(StopReason::MaxMetricCalls));
        assert_eq!(budget.spent.metric_calls, 6);
        assert!(budget.reserve(4).is_ok());
        assert_eq!(budget.metric_calls_left(), Some(0));
        assert_eq!(budget.reserve(1), Err(StopReason::MaxMetricCalls));
        assert!(budget.reserve(0).is_ok());
    }

    #[test]
    fn cost_and_tokens_gate_further_dispatch() {
        let mut budget = Budget::new(
            Limits {
                max_cost_usd: Some(1.0),
                max_tokens: Some(100),
                ..Limits::default()
            },
            Spent::default(),
        );
        budget.record(0.5, 10);
        assert!(budget.reserve(1).is_ok());
        budget.record(0.6, 10);
        assert_eq!(budget.reserve(1), Err(StopReason::MaxCost));
        assert_eq!(budget.usage(1).cost_left_usd, Some(0.0));
    }

    #[test]
    fn iterations_start_only_when_their_worst_case_fits() {
        let budget = Budget::new(
            Limits {
                max_metric_calls: Some(10),
                max_generations: Some(3),
                ..Limits::default()
            },
            Spent {
                metric_calls: 4,
                ..Spent::default()
            },
        );
        assert_eq!(budget.stop_before_iteration(0, 6), None);
        assert_eq!(
            budget.stop_before_iteration(0, 7),
            Some(StopReason::MaxMetricCalls)
        );
        assert_eq!(
            budget.stop_before_iteration(3, 1),
            Some(StopReason::MaxGenerations)
        );
    }

    #[test]
    fn prices_turn_usage_into_usd() {
        let prices = Prices::parse(Some(r#"{"m": {"input": 1.0, "output": 2.0}}"#)).unwrap();
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
        };
        assert_eq!(prices.cost("m", usage), 2.0);
        assert_eq!(prices.cost("other", usage), 0.0);
    }

    #[test]
    fn no_iteration_starts_that_the_slowest_so_far_says_would_overrun_the_wall_time() {
        let mut budget = Budget::new(
            Limits {
                hard_deadline: Some(Instant::now() + Duration::from_secs(10)),
                ..Limits::default()
            },
            Spent::default(),
        );
        assert_eq!(budget.stop_before_iteration(0, 1), None);
        budget.observe_iteration(Duration::from_secs(3));
        assert_eq!(budget.stop_before_iteration(1, 1), None);
        budget.observe_iteration(Duration::from_secs(11));
        assert_eq!(
            budget.stop_before_iteration(2, 1),
            Some(StopReason::WallTime)
        );
    }
}
