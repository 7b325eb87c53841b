//! Word-level variation of prompts: the three mutation operators and one-point crossover.
//! Words are whitespace-separated; results are re-joined with single spaces, as in the original.
//! All randomness comes from a [`SeededRng`] seeded per round, so a seed fixes every proposal.

use crate::optimizer::rng::SeededRng;

/// One word-level edit of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Exchanges two distinct words (needs at least two).
    SwapTwoWords,
    /// Removes one word.
    DropWord,
    /// Reverses the word order.
    ReverseOrder,
}

impl Operator {
    /// The order the operators take turns in.
    pub const CYCLE: [Operator; 3] = [
        Operator::SwapTwoWords,
        Operator::DropWord,
        Operator::ReverseOrder,
    ];

    /// Applies the operator; text it cannot change comes back re-joined but otherwise intact.
    pub fn apply(self, text: &str, rng: &mut SeededRng) -> String {
        let mut words: Vec<&str> = text.split_whitespace().collect();
        match self {
            Operator::SwapTwoWords => {
                if let Some((i, j)) = two_distinct(words.len(), rng) {
                    words.swap(i, j);
                }
            }
            Operator::DropWord => {
                if !words.is_empty() {
                    words.remove(rng.below(words.len()));
                }
            }
            Operator::ReverseOrder => words.reverse(),
        }
        words.join(" ")
    }
}

/// Two different indices below `n`, or `None` when `n < 2`.
fn two_distinct(n: usize, rng: &mut SeededRng) -> Option<(usize, usize)> {
    if n < 2 {
        return None;
    }
    let i = rng.below(n);
    let mut j = rng.below(n - 1);
    if j >= i {
        j += 1;
    }
    Some((i, j))
}

/// Up to `max` mutants of `base` from a generator seeded with `seed`, operators taking turns.
/// Empty results, duplicates and `base` itself are dropped, so fewer may come back.
pub fn mutate(base: &str, max: usize, seed: i64) -> Vec<String> {
    let mut rng = SeededRng::from_seed(seed);
    let mut out: Vec<String> = Vec::with_capacity(max);
    for op in Operator::CYCLE.iter().cycle().take(max) {
        let mutant = op.apply(base, &mut rng);
        if !mutant.is_empty() && mutant != base && !out.contains(&mutant) {
            out.push(mutant);
        }
    }
    out
}

/// One-point word crossover: a prefix of `a`'s words followed by a suffix of `b`'s, each cut
/// leaving at least one word on both sides. With fewer than two words in either parent, `a`
/// (or `b` when `a` is empty) comes back unchanged.
pub fn crossover(a: &str, b: &str, seed: i64) -> String {
    let wa: Vec<&str> = a.split_whitespace().collect();
    let wb: Vec<&str> = b.split_whitespace().collect();
    if wa.len() < 2 || wb.len() < 2 {
        return if a.is_empty() { b } else { a }.to_string();
    }
    let mut rng = SeededRng::from_seed(seed);
    let cut_a = 1 + rng.below(wa.len() - 1);
    let cut_b = 1 + rng.below(wb.len() - 1);
    wa[..cut_a]
        .iter()
        .chain(&wb[cut_b..])
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Children of pairs drawn from `pool` (the previous round's ranked candidates): ⌊len × rate⌋
/// pairs, at least one, none when `rate` is 0 or the pool has fewer than two members.
pub fn recombine(pool: &[String], rate: f64, seed: i64) -> Vec<String> {
    if rate.is_nan() || rate <= 0.0 || pool.len() < 2 {
        return Vec::new();
    }
    let mut rng = SeededRng::from_seed(seed);
    let pairs = ((pool.len() as f64 * rate) as usize).max(1);
    (0..pairs)
        .map(|k| {
            let (i, j) = two_distinct(pool.len(), &mut rng).unwrap_or((0, 1));
            crossover(&pool[i], &pool[j], seed.wrapping_add(k as i64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "Write a short friendly greeting for new users";

    #[test]
    fn same_seed_gives_same_mutants_and_other_seeds_differ() {
        let a = mutate(BASE, 4, 13);
        assert_eq!(a, mutate(BASE, 4, 13));
        assert!(!a.is_empty());
        let differs = (14..24).any(|seed| mutate(BASE, 4, seed) != a);
        assert!(differs, "ten other seeds all gave the same mutants");
    }

    #[test]
    fn mutants_exclude_base_empties_and_duplicates_and_respect_the_cap() {
        let mutants = mutate(BASE, 9, 7);
        assert!(mutants.len() <= 9);
        assert!(mutants.iter().all(|m| !m.is_empty() && m != BASE));
        let mut unique = mutants.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), mutants.len());
        // One word: swap and reverse change nothing, drop leaves nothing.
        assert!(mutate("hello", 4, 1).is_empty());
    }

    #[test]
    fn operators_cycle_swap_drop_reverse() {
        let mut rng = SeededRng::new(3);
        let swapped = Operator::SwapTwoWords.apply("a b c d", &mut rng);
        let mut sorted: Vec<&str> = swapped.split(' ').collect();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c", "d"]);
        assert_ne!(swapped, "a b c d");
        assert_eq!(
            Operator::DropWord
                .apply("a b c d", &mut rng)
                .split(' ')
                .count(),
            3
        );
        assert_eq!(Operator::ReverseOrder.apply("a  b c", &mut rng), "c b a");
        assert_eq!(mutate("a b c", 3, 5)[2..], ["c b a".to_string()][..]);
    }

    #[test]
    fn crossover_joins_a_prefix_of_one_parent_to_a_suffix_of_the_other() {
        let child = crossover("a1 a2 a3 a4", "b1 b2 b3 b4", 11);
        assert_eq!(child, crossover("a1 a2 a3 a4", "b1 b2 b3 b4", 11));
        let words: Vec<&str> = child.split(' ').collect();
        let cut = words.iter().position(|w| w.starts_with('b')).unwrap();
        assert!((1..=3).contains(&cut), "{child}");
        assert!(
            words[..cut]
                .iter()
                .enumerate()
                .all(|(i, w)| *w == format!("a{}", i + 1))
        );
        assert_eq!(words.last(), Some(&"b4"));
        assert_eq!(crossover("solo", "b1 b2", 1), "solo");
        assert_eq!(crossover("", "b1", 1), "b1");
    }

    #[test]
    fn recombination_needs_a_pool_of_two_and_a_positive_rate() {
        let pool = vec![
            "a b c".to_string(),
            "d e f".to_string(),
            "g h i".to_string(),
        ];
        assert!(recombine(&pool[..1], 1.0, 1).is_empty());
        assert!(recombine(&pool, 0.0, 1).is_empty());
        assert_eq!(recombine(&pool, 0.1, 1).len(), 1);
        let children = recombine(&pool, 1.0, 1);
        assert_eq!(children.len(), 3);
        assert_eq!(children, recombine(&pool, 1.0, 1));
    }
}
