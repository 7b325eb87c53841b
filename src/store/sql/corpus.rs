//! SQLite's in-process copy of the `examples` table.
//!
//! Default-mode jobs read the whole example corpus on every job (retrieval scans it), which on
//! SQLite cost a reader round trip (and a connection ping) per job even when the table is empty.
//! An embedded SQLite database has one writer, this process, and every write to `examples` goes
//! through this store, so a copy invalidated by those writes is never stale. (Postgres is shared
//! between replicas; it is always read.) Corpora above [`MAX_CACHED`] rows are read from the
//! table every time, as before.

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
    rows: Option<Arc<Vec<Example>>>,
}

impl Corpus {
    /// The cached copy, or the generation a fresh read must be tagged with.
    pub fn get(&self) -> Result<Arc<Vec<Example>>, u64> {
        let state = self.lock();
        state.rows.clone().ok_or(state.generation)
    }

    /// Keeps `rows`, read while the table was at `generation`, unless a write committed since.
    pub fn fill(&self, generation: u64, rows: Arc<Vec<Example>>) {
        let mut state = self.lock();
        if state.generation == generation {
            state.rows = Some(rows);
        }
    }

    /// Drops the copy; called after a write to `examples` committed.
    pub fn invalidate(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let corpus = Corpus::default();
        let generation = corpus.get().unwrap_err();
        corpus.invalidate();
        corpus.fill(generation, Arc::new(Vec::new()));
        assert!(corpus.get().is_err(), "stale read dropped");
        let generation = corpus.get().unwrap_err();
        corpus.fill(generation, Arc::new(Vec::new()));
        assert!(corpus.get().is_ok());
        corpus.invalidate();
        assert!(corpus.get().is_err());
    }
}
