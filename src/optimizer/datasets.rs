//! Example data for GEPA and eval jobs: the built-in packs (`toy_qa`, `toy_clf`, embedded in the
//! binary; the `world_*` packs of the offline world, generated deterministically), inline
//! examples and stored examples, and the split into a feedback (train) set that feeds
//! minibatches, a Pareto (validation) set that tracks the frontier, and an optional held-out
//! `test` set the search never sees.

use serde::Deserialize;

use crate::domain::Example;
use crate::optimizer::rng::SeededRng;
use crate::provider::offline_world::{Case, Join, Style, Wrap};

/// A built-in pack: its examples and the metric it is scored with by default.
pub struct Pack {
    pub name: &'static str,
    pub default_metric: &'static str,
    source: Source,
}

enum Source {
    Jsonl(&'static str),
    /// An offline-world task: each category's hidden formatting of the answers.
    World(&'static [(&'static str, Style)]),
}

const fn style(case: Case, wrap: Wrap, join: Join, period: bool) -> Style {
    Style {
        case,
        wrap,
        join,
        period,
    }
}

pub const PACKS: &[Pack] = &[
    Pack {
        name: "toy_qa",
        default_metric: "exact_match",
        source: Source::Jsonl(include_str!("packs/toy_qa.jsonl")),
    },
    Pack {
        name: "toy_clf",
        default_metric: "exact_match",
        source: Source::Jsonl(include_str!("packs/toy_clf.jsonl")),
    },
    Pack {
        name: "world_case",
        default_metric: "strict_match",
        source: Source::World(&[
            ("city", style(Case::Upper, Wrap::None, Join::Space, false)),
            ("animal", style(Case::Title, Wrap::None, Join::Space, false)),
            (
                "tool",
                style(Case::AsGiven, Wrap::Brackets, Join::Space, false),
            ),
            ("planet", style(Case::Upper, Wrap::None, Join::Space, true)),
        ]),
    },
    Pack {
        name: "world_wrap",
        default_metric: "strict_match",
        source: Source::World(&[
            (
                "fruit",
                style(Case::AsGiven, Wrap::Quotes, Join::Space, false),
            ),
            (
                "river",
                style(Case::Title, Wrap::Parens, Join::Space, false),
            ),
            (
                "metal",
                style(Case::Upper, Wrap::Brackets, Join::Space, false),
            ),
            (
                "bird",
                style(Case::AsGiven, Wrap::None, Join::Hyphen, false),
            ),
        ]),
    },
    Pack {
        name: "world_join",
        default_metric: "strict_match",
        source: Source::World(&[
            (
                "game",
                style(Case::AsGiven, Wrap::None, Join::Underscore, false),
            ),
            ("dish", style(Case::Title, Wrap::None, Join::Hyphen, false)),
            (
                "song",
                style(Case::AsGiven, Wrap::Quotes, Join::Space, true),
            ),
            (
                "ship",
                style(Case::Upper, Wrap::None, Join::Underscore, false),
            ),
        ]),
    },
    Pack {
        name: "world_mixed",
        default_metric: "strict_match",
        source: Source::World(&[
            ("city", style(Case::Title, Wrap::None, Join::Space, true)),
            ("drug", style(Case::Upper, Wrap::Parens, Join::Space, false)),
            ("tree", style(Case::AsGiven, Wrap::None, Join::Hyphen, true)),
            (
                "star",
                style(Case::Title, Wrap::Quotes, Join::Underscore, false),
            ),
            (
                "coin",
                style(Case::Upper, Wrap::Brackets, Join::Hyphen, false),
            ),
            ("lake", style(Case::AsGiven, Wrap::None, Join::Space, false)),
        ]),
    },
];

/// Examples per split of a world pack.
const WORLD_SPLITS: [(&str, usize); 3] = [("train", 30), ("val", 50), ("test", 100)];

const ADJECTIVES: &[&str] = &[
    "red", "quiet", "north", "old", "bright", "little", "silver", "wild", "deep", "golden",
    "hidden", "early", "royal", "frozen", "lucky", "green", "swift", "broken", "iron", "lazy",
];
const NOUNS: &[&str] = &[
    "harbor", "valley", "stone", "river", "crown", "garden", "tower", "forest", "bridge", "meadow",
    "castle", "island", "lantern", "mirror", "market", "canyon", "orchard", "beacon", "temple",
    "glacier",
];

/// A world pack's examples: `"<category>: <content>"` with the category's hidden formatting of
/// the content as the expected answer, categories in rotation, content from a seeded draw.
fn world_examples(name: &str, categories: &[(&str, Style)]) -> Vec<Example> {
    let mut rng = SeededRng::new(super::gepa::state::fnv1a(&[name]));
    let mut out = Vec::new();
    for (split, count) in WORLD_SPLITS {
        for i in 0..count {
            let (category, hidden) =
                categories[(i + rng.below(categories.len())) % categories.len()];
            let mut words = vec![
                ADJECTIVES[rng.below(ADJECTIVES.len())],
                NOUNS[rng.below(NOUNS.len())],
            ];
            if rng.below(3) == 0 {
                words.insert(0, ADJECTIVES[rng.below(ADJECTIVES.len())]);
            }
            let content = words.join(" ");
            let mut meta = serde_json::Map::new();
            meta.insert("split".into(), split.into());
            meta.insert("category".into(), category.into());
            out.push(Example {
                id: format!("{split}-{i:03}"),
                input: format!("{category}: {content}"),
                expected: Some(hidden.apply(&content)),
                meta,
            });
        }
    }
    out
}

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
        let jsonl = match self.source {
            Source::Jsonl(text) => text,
            Source::World(categories) => return world_examples(self.name, categories),
        };
        jsonl
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

/// Feedback (train), Pareto (validation) and held-out (test) sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    /// `meta.split: "test"`: never seen by the search; the result reports seed vs best on it.
    pub test: Vec<Example>,
}

/// Sets aside `meta.split: "test"` examples, then splits by `meta.split` (`train` / `val`) when
/// examples carry it, else by alternation (every second example validates). With a single
/// example, both sets are that example (the reference's inference-time search mode).
pub fn split(examples: Vec<Example>) -> Split {
    let tagged =
        |e: &Example, want: &str| e.meta.get("split").and_then(|v| v.as_str()) == Some(want);
    let (test, examples): (Vec<_>, Vec<_>) = examples.into_iter().partition(|e| tagged(e, "test"));
    if examples.iter().any(|e| tagged(e, "val")) && examples.iter().any(|e| !tagged(e, "val")) {
        let (val, train): (Vec<_>, Vec<_>) = examples.into_iter().partition(|e| tagged(e, "val"));
        return Split { train, val, test };
    }
    if examples.len() < 2 {
        return Split {
            train: examples.clone(),
            val: examples,
            test,
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
    Split { train, val, test }
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
    fn world_packs_hold_out_a_test_split_the_seed_prompt_gets_wrong() {
        let p = pack("world_mixed").unwrap();
        let s = split(p.examples());
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (30, 50, 100));
        let wrong = s
            .test
            .iter()
            .filter(|e| {
                crate::provider::offline_world::answer("Answer.", &e.input)
                    != *e.expected.as_ref().unwrap()
            })
            .count();
        // Only `lake` keeps the raw content.
        assert!(wrong > 60, "{wrong}");
        assert_eq!(p.examples(), p.examples(), "deterministic");
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
