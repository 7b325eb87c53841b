//! What `run --wait` and `watch` show while a job runs: a [`Progress`] folds the job's events
//! (live or replayed) into metric calls / budget, best score, cost and an ETA, and renders one
//! line. In a terminal the line is redrawn in place; in a pipe a plain line is printed each time
//! the search moves (a generation ends, or the job ends).

use crate::domain::{Event, EventPayload, JobResult, JobStatus};

/// The state of one job as its events tell it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Progress {
    pub generation: u32,
    pub metric_calls: u64,
    /// Metric calls left, when the job has a metric-call budget.
    pub metric_calls_left: Option<u64>,
    pub cost_usd: f64,
    pub best_score: Option<f64>,
    pub candidates: u32,
    /// Default-mode iteration (the default loop has no metric calls).
    pub iteration: u32,
    pub first_ts: Option<f64>,
    pub last_ts: f64,
    pub last_event_id: u64,
    pub status: Option<JobStatus>,
    /// Eval jobs: cases scored and how many there are.
    pub eval_cases: u32,
    pub eval_total: u32,
}

impl Progress {
    /// Folds one event in. Returns true when a plain (pipe) line is due.
    pub fn observe(&mut self, event: &Event) -> bool {
        self.last_event_id = self.last_event_id.max(event.id);
        self.first_ts.get_or_insert(event.ts);
        self.last_ts = event.ts;
        if let Some(status) = event.payload.terminal_status() {
            self.status = Some(status);
        }
        match &event.payload {
            EventPayload::BudgetProgress(b) => {
                self.generation = b.generation;
                self.metric_calls = b.metric_calls_used;
                self.metric_calls_left = b.metric_calls_left;
                self.cost_usd = b.cost_usd;
                true
            }
            EventPayload::FrontierUpdated(f) => {
                self.best_score = Some(f.best_score);
                false
            }
            EventPayload::CandidateScored(_) => {
                self.candidates += 1;
                false
            }
            EventPayload::Progress { iteration, .. } => {
                self.iteration = *iteration;
                true
            }
            EventPayload::EvalStarted(e) => {
                self.eval_total = e.total;
                false
            }
            EventPayload::EvalCase(_) => {
                self.eval_cases += 1;
                false
            }
            EventPayload::Finished(result) => {
                match result {
                    JobResult::Gepa(g) => {
                        self.best_score = Some(g.best_score);
                        self.metric_calls = g.budget.metric_calls_used;
                        self.cost_usd = g.budget.cost_usd;
                    }
                    JobResult::Eval(e) => {
                        self.best_score = Some(e.score);
                        self.metric_calls = e.metric_calls_used;
                        self.cost_usd = e.cost_usd;
                    }
                    JobResult::Default(_) | JobResult::Error(_) => {}
                }
                true
            }
            payload => payload.terminal_status().is_some(),
        }
    }

    /// Seconds until the metric-call budget runs out at the pace so far.
    pub fn eta_s(&self) -> Option<f64> {
        let left = self.metric_calls_left?;
        let elapsed = self.last_ts - self.first_ts?;
        if self.metric_calls == 0 || elapsed <= 0.0 || self.status.is_some() {
            return None;
        }
        Some(elapsed / self.metric_calls as f64 * left as f64)
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(status.as_str().to_string());
        }
        if self.eval_total > 0 {
            parts.push(format!("cases {}/{}", self.eval_cases, self.eval_total));
        } else if self.iteration > 0 && self.metric_calls == 0 {
            parts.push(format!("iteration {}", self.iteration));
        } else {
            parts.push(format!("gen {}", self.generation));
            let budget = self
                .metric_calls_left
                .map(|left| format!("/{}", self.metric_calls + left))
                .unwrap_or_default();
            parts.push(format!("calls {}{budget}", self.metric_calls));
            parts.push(format!("candidates {}", self.candidates));
        }
        match self.best_score {
            Some(best) => parts.push(format!("best {best:.3}")),
            None => parts.push("best -".into()),
        }
        parts.push(format!("cost ${:.4}", self.cost_usd));
        if let Some(eta) = self.eta_s() {
            parts.push(format!("eta {}", human_duration(eta)));
        }
        parts.join(" | ")
    }

    /// A `[####----]` bar of metric calls against the budget, when there is one.
    pub fn bar(&self, width: usize) -> Option<String> {
        let left = self.metric_calls_left?;
        let total = self.metric_calls + left;
        if total == 0 {
            return None;
        }
        let filled = ((self.metric_calls as f64 / total as f64) * width as f64).round() as usize;
        let filled = filled.min(width);
        Some(format!(
            "[{}{}]",
            "#".repeat(filled),
            "-".repeat(width - filled)
        ))
    }
}

/// `75s` → `1m15s`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gepa::{BudgetUsage, FrontierEntry, FrontierUpdated};

    fn event(id: u64, ts: f64, payload: EventPayload) -> Event {
        Event {
            id,
            job_id: "j".into(),
            ts,
            payload,
        }
    }

    fn budget(generation: u32, used: u64, left: u64, cost: f64) -> EventPayload {
        EventPayload::BudgetProgress(BudgetUsage {
            generation,
            metric_calls_used: used,
            metric_calls_left: Some(left),
            cost_usd: cost,
            ..BudgetUsage::default()
        })
    }

    #[test]
    fn progress_line_shows_calls_of_budget_best_cost_and_eta() {
        let mut p = Progress::default();
        assert!(p.observe(&event(1, 100.0, budget(0, 10, 90, 0.01))));
        assert!(!p.observe(&event(
            2,
            101.0,
            EventPayload::FrontierUpdated(FrontierUpdated {
                frontier: vec![FrontierEntry { id: 0, score: 0.5 }],
                best_id: 0,
                best_score: 0.5,
                r#gen: 1,
                size: 1,
                best: 0.5,
            })
        )));
        assert!(p.observe(&event(3, 110.0, budget(1, 20, 80, 0.02))));
        // 20 calls in 10 s → 80 calls left take 40 s.
        assert_eq!(
            p.line(),
            "gen 1 | calls 20/100 | candidates 0 | best 0.500 | cost $0.0200 | eta 40s"
        );
        assert_eq!(p.bar(10).as_deref(), Some("[##--------]"));
        assert!(p.observe(&event(4, 111.0, EventPayload::Cancelled {})));
        assert!(p.line().starts_with("cancelled | gen 1"), "{}", p.line());
        assert_eq!(p.last_event_id, 4);
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(5.4), "5s");
        assert_eq!(human_duration(75.0), "1m15s");
        assert_eq!(human_duration(7260.0), "2h01m");
    }
}
