//! Pareto v1: keep the candidates no other candidate dominates, every criterion "higher is
//! better" (the original minimised such scores, so it preferred longer, more repetitive
//! prompts; we do not copy that). The front is ordered by its score vectors, best first, then by
//! text, so the order never depends on input order.

use std::cmp::Ordering;
use std::collections::HashSet;

/// `a` dominates `b`: at least as good on every criterion and better on one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x >= y) && a.iter().zip(b).any(|(x, y)| x > y)
}

/// The v1 criteria when no objectives are given: shorter is better (−code points), more
/// distinct lowercased tokens is better.
pub fn default_criteria(text: &str) -> Vec<f64> {
    let distinct: HashSet<String> = text.split_whitespace().map(str::to_lowercase).collect();
    vec![-(text.chars().count() as f64), distinct.len() as f64]
}

/// The non-dominated `texts` under `criteria`, at most `n`, best first. Ties on every criterion
/// are broken by the text itself (lexicographic), so the result is deterministic.
pub fn front(texts: &[String], n: usize, criteria: impl Fn(&str) -> Vec<f64>) -> Vec<String> {
    let scored: Vec<(&String, Vec<f64>)> = texts.iter().map(|t| (t, criteria(t))).collect();
    let mut kept: Vec<&(&String, Vec<f64>)> = scored
        .iter()
        .filter(|(_, mine)| !scored.iter().any(|(_, other)| dominates(other, mine)))
        .collect();
    kept.sort_by(|(ta, a), (tb, b)| compare_desc(a, b).then_with(|| ta.cmp(tb)));
    kept.into_iter()
        .take(n)
        .map(|(t, _)| (*t).clone())
        .collect()
}

/// Lexicographic order of score vectors, higher first.
fn compare_desc(a: &[f64], b: &[f64]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| y.total_cmp(x))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dominance_prefers_higher_scores() {
        assert!(dominates(&[2.0, 1.0], &[1.0, 1.0]));
        assert!(!dominates(&[1.0, 1.0], &[2.0, 1.0]));
        assert!(!dominates(&[1.0, 1.0], &[1.0, 1.0]));
        assert!(!dominates(&[2.0, 0.0], &[1.0, 1.0]));
    }

    #[test]
    fn front_keeps_shorter_and_more_diverse_candidates() {
        // "a b" beats "a a b" (shorter, same distinct count) and "b a a a" (shorter).
        // "a b c d" has more distinct tokens, so it stays on the front, ranked after "a b".
        let got = front(
            &texts(&["a a b", "a b c d", "b a a a", "a b"]),
            8,
            default_criteria,
        );
        assert_eq!(got, texts(&["a b", "a b c d"]));
    }

    #[test]
    fn ties_break_by_text_whatever_the_input_order() {
        let forward = front(&texts(&["b a", "a b", "c d"]), 8, default_criteria);
        let backward = front(&texts(&["c d", "a b", "b a"]), 8, default_criteria);
        assert_eq!(forward, texts(&["a b", "b a", "c d"]));
        assert_eq!(forward, backward);
        assert_eq!(
            front(&texts(&["b a", "a b"]), 1, default_criteria),
            texts(&["a b"])
        );
    }

    #[test]
    fn front_ranks_by_the_given_criteria_best_first() {
        let score = |t: &str| vec![t.len() as f64];
        assert_eq!(
            front(&texts(&["aa", "a", "aaa"]), 8, score),
            texts(&["aaa"])
        );
        assert!(front(&[], 8, score).is_empty());
    }
}
