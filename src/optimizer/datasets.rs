//! Example data for GEPA and eval jobs: the built-in packs (`toy_qa`, `toy_clf`, embedded in the
//! binary), inline examples and stored examples, and the split into a feedback (train) set that
//! feeds minibatches and a Pareto (validation) set that tracks the frontier.

use serde::Deserialize;

use crate::domain::Example;

/// A built-in pack: its examples and the metric it is scored with by default.
pub struct Pack {
    pub name: &'static str,
    pub default_metric: &'static str,
    jsonl: &'static str,
}

pub const PACKS: &[Pack] = &[
    Pack {
        name: "toy_qa",
        default_metric: "exact_match",
        jsonl: include_str!("packs/toy_qa.jsonl"),
    },
    Pack {
        name: "toy_clf",
        default_metric: "exact_match",
        jsonl: include_str!("packs/toy_clf.jsonl"),
    },
];

#[derive(Deserialize)]
struct Line {
    id: String,
    input: String,
    expected: Option<String>,
    split: Option<String>,
}

pub fn pack(name: &str) -> Option<&'static Pack> {
    PACKS.iter().find(|p| p.name == name)
}

impl Pack {
    /// The pack's examples; each carries its split in `meta.split`.
    pub fn examples(&self) -> Vec<Example> {
        self.jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Line>(l).ok())
            .map(|l| {
                let mut meta = serde_json::Map::new();
                if let Some(split) = l.split {
                    meta.insert("split".into(), split.into());
                }
                Example {
                    id: l.id,
                    input: l.input,
                    expected: l.expected,
                    meta,
                }
            })
            .collect()
    }
}

/// Feedback (train) and Pareto (validation) sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
}

/// Splits by `meta.split` (`train` / `val`) when examples carry it, else by alternation (every
/// second example validates). With a single example, both sets are that example (the
/// reference's inference-time search mode).
pub fn split(examples: Vec<Example>) -> Split {
    let tagged =
        |e: &Example, want: &str| e.meta.get("split").and_then(|v| v.as_str()) == Some(want);
    if examples.iter().any(|e| tagged(e, "val")) && examples.iter().any(|e| !tagged(e, "val")) {
        let (val, train): (Vec<_>, Vec<_>) = examples.into_iter().partition(|e| tagged(e, "val"));
        return Split { train, val };
    }
    if examples.len() < 2 {
        return Split {
            train: examples.clone(),
            val: examples,
        };
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, e) in examples.into_iter().enumerate() {
        if i % 2 == 1 {
            val.push(e);
        } else {
            train.push(e);
        }
    }
    Split { train, val }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_parse_and_split_into_train_and_val() {
        for p in PACKS {
            let examples = p.examples();
            assert!(examples.len() >= 10, "{}", p.name);
            let s = split(examples);
            assert!(!s.train.is_empty() && !s.val.is_empty());
            assert!(s.val.iter().all(|e| e.meta["split"] == "val"));
        }
    }

    #[test]
    fn untagged_examples_alternate() {
        let ex = |i: usize| Example {
            id: i.to_string(),
            input: format!("q{i}"),
            expected: None,
            meta: Default::default(),
        };
        let s = split((0..5).map(ex).collect());
        assert_eq!(s.train.len(), 3);
        assert_eq!(s.val.len(), 2);
        assert_eq!(split(vec![ex(0)]).val.len(), 1);
    }
}
