//! A small seeded PRNG (SplitMix64) whose whole state is one `u64`, so engines can checkpoint
//! and restore it exactly. Not for cryptography.

use serde::{Deserialize, Serialize};

/// Deterministic random numbers from a seed; `Clone` + serde for exact resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    /// From a signed seed as requests carry it.
    pub fn from_seed(seed: i64) -> Self {
        SeededRng::new(seed as u64)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`; `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        // Lemire's multiply-shift; the bias for n << 2^64 is negligible here.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Picks an index with probability proportional to `weights` (all ≥ 0, not all 0).
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let mut target = self.next_f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            if target < *w {
                return Some(i);
            }
            target -= w;
        }
        weights.iter().rposition(|w| *w > 0.0)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_state_round_trips() {
        let mut a = SeededRng::new(13);
        let mut b = SeededRng::new(13);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let saved = serde_json::to_string(&a).unwrap();
        let mut restored: SeededRng = serde_json::from_str(&saved).unwrap();
        assert_eq!(a.next_u64(), restored.next_u64());
    }

    #[test]
    fn below_and_weighted_stay_in_range() {
        let mut rng = SeededRng::new(1);
        for n in 1..50 {
            assert!(rng.below(n) < n);
        }
        assert_eq!(rng.weighted(&[0.0, 0.0]), None);
        for _ in 0..100 {
            assert_eq!(rng.weighted(&[0.0, 2.0, 0.0]), Some(1));
        }
    }
}
