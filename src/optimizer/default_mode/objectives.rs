//! The three deterministic objectives of the default loop, all "higher is better":
//! `brevity` = −length in code points, `diversity` = distinct lowercased tokens ÷ tokens,
//! `coverage` = share of the examples' distinct lowercased input tokens present in the text.

use std::collections::HashSet;

use crate::domain::{Example, Objective, ObjectiveScores};

/// Lowercased whitespace tokens.
pub fn lower_tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().map(str::to_lowercase)
}

/// `−len(text)` in code points.
pub fn brevity(text: &str) -> i64 {
    -(text.chars().count() as i64)
}

/// Distinct lowercased tokens ÷ tokens (0 for empty text).
pub fn diversity(text: &str) -> f64 {
    let tokens: Vec<String> = lower_tokens(text).collect();
    if tokens.is_empty() {
        return 0.0;
    }
    let distinct: HashSet<&String> = tokens.iter().collect();
    distinct.len() as f64 / tokens.len() as f64
}

/// Scores texts against a fixed set of objectives and examples.
#[derive(Debug, Clone)]
pub struct ObjectiveSet {
    objectives: Vec<Objective>,
    /// Distinct lowercased tokens of the examples' inputs.
    example_tokens: HashSet<String>,
}

impl ObjectiveSet {
    pub fn new(objectives: Vec<Objective>, examples: &[Example]) -> Self {
        let example_tokens = examples
            .iter()
            .flat_map(|e| lower_tokens(&e.input))
            .collect();
        ObjectiveSet {
            objectives,
            example_tokens,
        }
    }

    pub fn objectives(&self) -> &[Objective] {
        &self.objectives
    }

    /// Share of the example tokens present in `text` (0 without examples).
    pub fn coverage(&self, text: &str) -> f64 {
        if self.example_tokens.is_empty() {
            return 0.0;
        }
        let present: HashSet<String> = lower_tokens(text)
            .filter(|t| self.example_tokens.contains(t))
            .collect();
        present.len() as f64 / self.example_tokens.len() as f64
    }

    /// One value per objective, in order, for Pareto comparison (higher is better).
    pub fn vector(&self, text: &str) -> Vec<f64> {
        self.objectives
            .iter()
            .map(|o| match o {
                Objective::Brevity => brevity(text) as f64,
                Objective::Diversity => diversity(text),
                Objective::Coverage => self.coverage(text),
            })
            .collect()
    }

    /// The requested objectives' scores of `text` (judge scores left empty).
    pub fn scores(&self, text: &str) -> ObjectiveScores {
        let mut scores = ObjectiveScores::default();
        for o in &self.objectives {
            match o {
                Objective::Brevity => scores.brevity = Some(brevity(text)),
                Objective::Diversity => scores.diversity = Some(diversity(text)),
                Objective::Coverage => scores.coverage = Some(self.coverage(text)),
            }
        }
        scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(input: &str) -> Example {
        Example {
            id: input.into(),
            input: input.into(),
            expected: None,
            meta: Default::default(),
        }
    }

    #[test]
    fn scores_follow_the_definitions_and_only_requested_objectives_appear() {
        let set = ObjectiveSet::new(
            vec![Objective::Brevity, Objective::Coverage],
            &[example("Greet the USER"), example("user name")],
        );
        let scores = set.scores("greet user héllo");
        assert_eq!(scores.brevity, Some(-16));
        assert_eq!(scores.diversity, None);
        // {greet, the, user, name}: greet and user present.
        assert_eq!(scores.coverage, Some(0.5));
        assert_eq!(diversity("a A b b"), 0.5);
        assert_eq!(diversity(""), 0.0);
        assert_eq!(
            ObjectiveSet::new(vec![Objective::Coverage], &[]).coverage("x"),
            0.0
        );
    }
}
