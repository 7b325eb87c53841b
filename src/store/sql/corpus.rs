//! SQLite's in-process copy of the `examples` table.
//!
//! Default-mode jobs read the whole example corpus on every job (retrieval scans it), which on
//! SQLite cost a reader round trip (and a connection ping) per job even when the table is empty.
//! An embedded SQLite database has one writer, this process, and every write to `examples` goes
//! through this store, so a copy invalidated by those writes is never stale. (Postgres is shared
//! between replicas; it is always read.) Corpora above [`MAX_CACHED`] rows are read from the
//! table every time, as before (the store remembers that, so it does not re-read the whole table
//! to find out again until the next write).

use std::sync::{Arc, Mutex};

use crate::domain::Example;

/// Largest corpus kept in memory.
pub(super) const MAX_CACHED: usize = 10_000;

#[derive(Default)]
pub(super) struct Corpus {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every committed write, so a copy read before it is never kept.
    generation: u64,
    snapshot: Snapshot,
}

/// What the store knows about the table since the last write.
#[derive(Clone, Default)]
pub(super) enum Snapshot {
    /// Nothing: read it (and tag the read with `generation`).
    #[default]
    Unread,
    /// The whole table, in id order.
    Cached(Arc<Vec<Example>>),
    /// More than [`MAX_CACHED`] rows: page through the table.
    TooBig,
}

impl Corpus {
    /// What is known, and the generation a fresh read must be tagged with.
    pub fn get(&self) -> (Snapshot, u64) {
        let state = self.lock();
        (state.snapshot.clone(), state.generation)
    }

    /// Keeps what a read made while the table was at `generation` found, unless a write
    /// committed since.
    pub fn fill(&self, generation: u64, snapshot: Snapshot) {
        let mut state = self.lock();
        if state.generation == generation {
            state.snapshot = snapshot;
        }
    }

    /// Forgets the copy; called after a write to `examples` committed.
    pub fn invalidate(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.snapshot = Snapshot::Unread;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(corpus: &Corpus) -> bool {
        matches!(corpus.get().0, Snapshot::Cached(_))
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let corpus = Corpus::default();
        let (_, generation) = corpus.get();
        corpus.invalidate();
        corpus.fill(generation, Snapshot::Cached(Arc::new(Vec::new())));
        assert!(!cached(&corpus), "stale read dropped");
        let (_, generation) = corpus.get();
        corpus.fill(generation, Snapshot::Cached(Arc::new(Vec::new())));
        assert!(cached(&corpus));
        corpus.invalidate();
        assert!(!cached(&corpus));
    }

    #[test]
    fn a_table_too_big_to_keep_is_remembered_until_the_next_write() {
        let corpus = Corpus::default();
        let (_, generation) = corpus.get();
        corpus.fill(generation, Snapshot::TooBig);
        assert!(matches!(corpus.get().0, Snapshot::TooBig));
        corpus.invalidate();
        assert!(matches!(corpus.get().0, Snapshot::Unread));
    }
}
