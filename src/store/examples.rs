//! The example seam: the stored corpus jobs without inline examples or a pack train on, and
//! default-mode retrieval reads.

use async_trait::async_trait;

use super::StoreFailure;
use crate::domain::Example;

/// Why reading or writing stored examples failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ExampleStoreError(#[from] pub StoreFailure);

/// Stored examples.
#[async_trait]
pub trait ExampleStore: Send + Sync + 'static {
    /// Inserts or replaces examples by id. Returns how many were written.
    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize, ExampleStoreError>;
    /// Examples ordered by id.
    async fn list_examples(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Example>, ExampleStoreError>;
    async fn delete_example(&self, id: &str) -> Result<bool, ExampleStoreError>;
}
