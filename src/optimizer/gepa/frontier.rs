//! Per-instance Pareto frontier: which candidates are best on each validation example, the
//! reference's set-cover dominance pruning, and the parent selectors built on them
//! (frequency-weighted Pareto sampling, `current_best`, epsilon-greedy).

use std::collections::BTreeSet;

use crate::optimizer::rng::SeededRng;

/// For each validation instance, the candidates reaching that instance's best score (ties kept).
/// `val_scores[candidate][instance]`.
pub fn instance_fronts(val_scores: &[Vec<f64>]) -> Vec<BTreeSet<usize>> {
    let instances = val_scores.first().map_or(0, Vec::len);
    (0..instances)
        .map(|i| {
            let best = val_scores
                .iter()
                .map(|s| s[i])
                .fold(f64::NEG_INFINITY, f64::max);
            val_scores
                .iter()
                .enumerate()
                .filter(|(_, s)| s[i] == best)
                .map(|(c, _)| c)
                .collect()
        })
        .collect()
}

/// Mean of a candidate's per-instance scores (0 when there are none).
pub fn mean(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

/// The survivors of dominance pruning, as the reference does it: candidate `y` is dominated when
/// every front containing `y` also contains another surviving candidate. Candidates are tried
/// from the lowest aggregate score upwards, one removal at a time, until nothing changes.
///
/// One pass in that order gives the same survivors: removing a candidate only shrinks the other
/// fronts' survivors, so a candidate that could not be removed never can later, and the
/// reference's restart after each removal finds nothing before the last one removed. With a
/// count of survivors per front, `y` can go when each of its fronts has at least two:
/// O(front memberships) instead of the reference's O(pool² × instances).
pub fn dominators(fronts: &[BTreeSet<usize>], aggregate: &[f64]) -> BTreeSet<usize> {
    let fronts: Vec<Vec<usize>> = fronts.iter().map(|f| f.iter().copied().collect()).collect();
    let slices: Vec<&[usize]> = fronts.iter().map(Vec::as_slice).collect();
    prune(&slices, aggregate)
}

/// [`dominators`] over fronts given as member lists (each without repeats). A front repeated
/// for several instances may be given once: pruning only asks whether each of a candidate's
/// fronts keeps another survivor, which repeats do not change.
pub fn prune(fronts: &[&[usize]], aggregate: &[f64]) -> BTreeSet<usize> {
    let pool = fronts
        .iter()
        .flat_map(|f| f.iter())
        .max()
        .map_or(0, |max| max + 1);
    let mut fronts_of: Vec<Vec<usize>> = vec![Vec::new(); pool];
    for (f, front) in fronts.iter().enumerate() {
        for c in *front {
            fronts_of[*c].push(f);
        }
    }
    let mut survivors: Vec<usize> = fronts.iter().map(|f| f.len()).collect();
    let mut members: Vec<usize> = (0..pool).filter(|c| !fronts_of[*c].is_empty()).collect();
    // Stable: ties keep id order.
    members.sort_by(|a, b| aggregate[*a].total_cmp(&aggregate[*b]));
    let mut alive: BTreeSet<usize> = members.iter().copied().collect();
    for y in members {
        if fronts_of[y].iter().all(|f| survivors[*f] >= 2) {
            alive.remove(&y);
            for f in &fronts_of[y] {
                survivors[*f] -= 1;
            }
        }
    }
    alive
}

/// Frequency weights of the survivors: how many instance fronts each belongs to.
pub fn frequencies(fronts: &[BTreeSet<usize>], alive: &BTreeSet<usize>) -> Vec<(usize, usize)> {
    alive
        .iter()
        .map(|c| (*c, fronts.iter().filter(|f| f.contains(c)).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Samples a parent from the pruned per-instance frontier with probability ∝ frequency.
pub fn sample_pareto(val_scores: &[Vec<f64>], rng: &mut SeededRng) -> usize {
    let fronts = instance_fronts(val_scores);
    let aggregate: Vec<f64> = val_scores.iter().map(|s| mean(s)).collect();
    let alive = dominators(&fronts, &aggregate);
    let weights = frequencies(&fronts, &alive);
    if weights.is_empty() {
        return best(val_scores);
    }
    let w: Vec<f64> = weights.iter().map(|(_, n)| *n as f64).collect();
    rng.weighted(&w).map_or(weights[0].0, |i| weights[i].0)
}

/// The candidate with the best mean validation score (lowest id on ties).
pub fn best(val_scores: &[Vec<f64>]) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (c, scores) in val_scores.iter().enumerate() {
        let m = mean(scores);
        if m > best_score {
            best = c;
            best_score = m;
        }
    }
    best
}

/// Best with probability 1 - `epsilon`, otherwise a uniformly random candidate.
pub fn epsilon_greedy(val_scores: &[Vec<f64>], epsilon: f64, rng: &mut SeededRng) -> usize {
    if val_scores.is_empty() {
        return 0;
    }
    if rng.next_f64() < epsilon {
        rng.below(val_scores.len())
    } else {
        best(val_scores)
    }
}

/// The per-instance fronts and the aggregates of a pool, kept up to date as candidates join
/// instead of rebuilt (pool × instances sets) on every selection. The pool is append-only and a
/// candidate's scores never change once it is in it, so indexing the new rows is enough.
/// Instances whose fronts are the same set share one entry with a count of its instances
/// (with exact-match metrics most instances share a few fronts). Answers exactly what
/// [`instance_fronts`], [`dominators`], [`frequencies`] and [`best`] give on the same scores
/// (a unit test compares them on random pools).
#[derive(Debug, Default, Clone)]
pub struct FrontIndex {
    /// Candidates indexed so far (a prefix of the pool).
    covered: usize,
    /// Per instance: its best score and the entry of `fronts` that is its front.
    best: Vec<f64>,
    front_of: Vec<usize>,
    /// Distinct fronts (members in id order) and how many instances have each (0: unused).
    fronts: Vec<Vec<usize>>,
    uses: Vec<usize>,
    /// Per candidate, its mean score (summed in the order [`mean`] sums).
    aggregate: Vec<f64>,
    /// The first candidate with the best mean so far.
    best_candidate: usize,
    best_aggregate: f64,
}

impl FrontIndex {
    /// Whether every candidate of `val_scores` is indexed.
    pub fn is_current(&self, val_scores: &[Vec<f64>]) -> bool {
        self.covered == val_scores.len() && self.covered > 0
    }

    /// Indexes the candidates of `val_scores` not indexed yet. A row that is not whole (the
    /// seed's, before its validation) stops the catch-up there.
    pub fn sync(&mut self, val_scores: &[Vec<f64>]) {
        if val_scores.len() < self.covered {
            *self = FrontIndex::default();
        }
        while let Some(row) = val_scores.get(self.covered) {
            if self.covered == 0 {
                if row.is_empty() {
                    return;
                }
                *self = FrontIndex {
                    best: vec![f64::NEG_INFINITY; row.len()],
                    front_of: vec![0; row.len()],
                    fronts: vec![Vec::new()],
                    uses: vec![row.len()],
                    best_aggregate: f64::NEG_INFINITY,
                    ..FrontIndex::default()
                };
            } else if row.len() != self.best.len() {
                return;
            }
            self.add(row);
        }
    }

    fn add(&mut self, scores: &[f64]) {
        let c = self.covered;
        // (front it had, whether `c` joins it rather than replaces it) → its new front.
        let mut moved: std::collections::HashMap<(usize, bool), usize> =
            std::collections::HashMap::new();
        for (i, s) in scores.iter().enumerate() {
            let old = self.front_of[i];
            let key = if *s > self.best[i] {
                self.best[i] = *s;
                (usize::MAX, false)
            } else if *s == self.best[i] {
                (old, true)
            } else {
                continue;
            };
            let new = match moved.get(&key) {
                Some(new) => *new,
                None => {
                    let members = if key.1 {
                        let mut members = Vec::with_capacity(self.fronts[old].len() + 1);
                        members.extend_from_slice(&self.fronts[old]);
                        members.push(c);
                        members
                    } else {
                        vec![c]
                    };
                    self.fronts.push(members);
                    self.uses.push(0);
                    moved.insert(key, self.fronts.len() - 1);
                    self.fronts.len() - 1
                }
            };
            self.uses[old] -= 1;
            self.uses[new] += 1;
            self.front_of[i] = new;
        }
        let aggregate = mean(scores);
        if aggregate > self.best_aggregate {
            self.best_aggregate = aggregate;
            self.best_candidate = c;
        }
        self.aggregate.push(aggregate);
        self.covered += 1;
        let live = self.uses.iter().filter(|n| **n > 0).count();
        if self.fronts.len() > 2 * live + 64 {
            self.compact();
        }
    }

    /// Drops the fronts no instance has any more.
    fn compact(&mut self) {
        let mut renumber = vec![usize::MAX; self.fronts.len()];
        let mut fronts = Vec::new();
        let mut uses = Vec::new();
        for (f, members) in std::mem::take(&mut self.fronts).into_iter().enumerate() {
            if self.uses[f] > 0 {
                renumber[f] = fronts.len();
                fronts.push(members);
                uses.push(self.uses[f]);
            }
        }
        for f in &mut self.front_of {
            *f = renumber[*f];
        }
        self.fronts = fronts;
        self.uses = uses;
    }

    /// The distinct non-empty fronts, each with how many instances have it.
    fn live(&self) -> impl Iterator<Item = (&[usize], usize)> {
        self.fronts
            .iter()
            .zip(&self.uses)
            .filter(|(members, n)| **n > 0 && !members.is_empty())
            .map(|(members, n)| (members.as_slice(), *n))
    }

    /// Per-candidate mean scores.
    pub fn aggregates(&self) -> &[f64] {
        &self.aggregate
    }

    /// [`best`].
    pub fn best(&self) -> usize {
        self.best_candidate
    }

    /// [`dominators`] of the per-instance fronts.
    pub fn dominators(&self) -> BTreeSet<usize> {
        let fronts: Vec<&[usize]> = self.live().map(|(members, _)| members).collect();
        prune(&fronts, &self.aggregate)
    }

    /// [`frequencies`] of `alive`.
    pub fn frequencies(&self, alive: &BTreeSet<usize>) -> Vec<(usize, usize)> {
        let mut count = vec![0usize; self.covered];
        for (members, n) in self.live() {
            for c in members {
                count[*c] += n;
            }
        }
        alive
            .iter()
            .map(|c| (*c, count[*c]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// [`sample_pareto`].
    pub fn sample_pareto(&self, rng: &mut SeededRng) -> usize {
        let alive = self.dominators();
        let weights = self.frequencies(&alive);
        if weights.is_empty() {
            return self.best();
        }
        let w: Vec<f64> = weights.iter().map(|(_, n)| *n as f64).collect();
        rng.weighted(&w).map_or(weights[0].0, |i| weights[i].0)
    }

    /// [`epsilon_greedy`].
    pub fn epsilon_greedy(&self, epsilon: f64, rng: &mut SeededRng) -> usize {
        if self.covered == 0 {
            return 0;
        }
        if rng.next_f64() < epsilon {
            rng.below(self.covered)
        } else {
            self.best()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_keep_ties_per_instance() {
        let scores = vec![vec![1.0, 0.0, 0.5], vec![1.0, 1.0, 0.0]];
        let fronts = instance_fronts(&scores);
        assert_eq!(fronts[0], BTreeSet::from([0, 1]));
        assert_eq!(fronts[1], BTreeSet::from([1]));
        assert_eq!(fronts[2], BTreeSet::from([0]));
    }

    #[test]
    fn a_candidate_covered_everywhere_by_others_is_pruned() {
        // 0 is best only where 1 is too; 1 and 2 each own an instance.
        let scores = vec![
            vec![1.0, 0.0, 0.0],
            vec![1.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let fronts = instance_fronts(&scores);
        let agg: Vec<f64> = scores.iter().map(|s| mean(s)).collect();
        assert_eq!(dominators(&fronts, &agg), BTreeSet::from([1, 2]));
    }

    #[test]
    fn identical_candidates_keep_exactly_one_the_higher_id_on_equal_aggregate() {
        let scores = vec![vec![1.0, 1.0], vec![1.0, 1.0]];
        let fronts = instance_fronts(&scores);
        let agg: Vec<f64> = scores.iter().map(|s| mean(s)).collect();
        // Lowest aggregate first, ties in id order: 0 is tried first and removed.
        assert_eq!(dominators(&fronts, &agg), BTreeSet::from([1]));
    }

    /// The reference's pruning, one removal per scan (kept to check the one-pass version).
    fn dominators_by_rescanning(fronts: &[BTreeSet<usize>], aggregate: &[f64]) -> BTreeSet<usize> {
        let mut members: Vec<usize> = fronts
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        members.sort_by(|a, b| aggregate[*a].total_cmp(&aggregate[*b]));
        let mut alive: BTreeSet<usize> = members.iter().copied().collect();
        loop {
            let removed = members.iter().copied().find(|&y| {
                alive.contains(&y)
                    && fronts
                        .iter()
                        .filter(|f| f.contains(&y))
                        .all(|f| f.iter().any(|c| *c != y && alive.contains(c)))
            });
            match removed {
                Some(y) => {
                    alive.remove(&y);
                }
                None => return alive,
            }
        }
    }

    #[test]
    fn one_pass_pruning_keeps_the_same_survivors_as_rescanning() {
        let mut rng = SeededRng::new(11);
        for _ in 0..500 {
            let pool = 1 + rng.below(12);
            let instances = 1 + rng.below(10);
            // Few distinct scores: many ties, as with exact-match metrics.
            let scores: Vec<Vec<f64>> = (0..pool)
                .map(|_| (0..instances).map(|_| rng.below(3) as f64 / 2.0).collect())
                .collect();
            let fronts = instance_fronts(&scores);
            let agg: Vec<f64> = scores.iter().map(|s| mean(s)).collect();
            assert_eq!(
                dominators(&fronts, &agg),
                dominators_by_rescanning(&fronts, &agg),
                "{scores:?}"
            );
        }
    }

    #[test]
    fn the_index_answers_what_rebuilding_the_fronts_answers() {
        let mut rng = SeededRng::new(5);
        for _ in 0..300 {
            let pool = 1 + rng.below(40);
            let instances = 1 + rng.below(12);
            let levels = 2 + rng.below(3);
            let scores: Vec<Vec<f64>> = (0..pool)
                .map(|_| {
                    (0..instances)
                        .map(|_| rng.below(levels) as f64 / (levels - 1) as f64)
                        .collect()
                })
                .collect();
            let mut index = FrontIndex::default();
            // Grown in steps, as the pool grows.
            let mut upto = 0;
            while upto < pool {
                upto = (upto + 1 + rng.below(4)).min(pool);
                index.sync(&scores[..upto]);
                let part = &scores[..upto];
                assert!(index.is_current(part));
                let fronts = instance_fronts(part);
                let agg: Vec<f64> = part.iter().map(|s| mean(s)).collect();
                let alive = dominators(&fronts, &agg);
                assert_eq!(index.dominators(), alive, "{part:?}");
                assert_eq!(index.frequencies(&alive), frequencies(&fronts, &alive));
                assert_eq!(index.best(), best(part));
                assert_eq!(index.aggregates(), agg.as_slice());
                let seed = rng.below(1000) as u64;
                assert_eq!(
                    index.sample_pareto(&mut SeededRng::new(seed)),
                    sample_pareto(part, &mut SeededRng::new(seed))
                );
            }
        }
    }

    #[test]
    fn pareto_sampling_is_frequency_weighted_and_never_picks_dominated() {
        // 1 owns two instances, 2 owns one, 0 owns none.
        let scores = vec![
            vec![0.0, 0.0, 0.0],
            vec![1.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let mut rng = SeededRng::new(7);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[sample_pareto(&scores, &mut rng)] += 1;
        }
        assert_eq!(counts[0], 0);
        let ratio = counts[1] as f64 / counts[2] as f64;
        assert!((1.7..2.3).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn current_best_and_epsilon_greedy() {
        let scores = vec![vec![0.2, 0.2], vec![0.9, 0.1], vec![0.1, 0.1]];
        assert_eq!(best(&scores), 1);
        let mut rng = SeededRng::new(3);
        let picks: Vec<usize> = (0..1000)
            .map(|_| epsilon_greedy(&scores, 0.1, &mut rng))
            .collect();
        let not_best = picks.iter().filter(|p| **p != 1).count();
        assert!(not_best > 20 && not_best < 150, "not_best {not_best}");
    }
}
