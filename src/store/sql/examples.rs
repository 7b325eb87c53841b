//! Stored examples in SQL, read through SQLite's in-process copy ([`super::corpus`]).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Connection, SqliteConnection};

use super::rows::to_json;
use super::{Pools, Result, SqlStore, closed, corpus};
use crate::domain::Example;
use crate::store::{ExampleStore, ExampleStoreError};

#[async_trait]
impl ExampleStore for SqlStore {
    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize, ExampleStoreError> {
        let metas = examples
            .iter()
            .map(|e| to_json(&e.meta))
            .collect::<Result<Vec<_>>>()?;
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            for (example, meta) in examples.iter().zip(&metas) {
                sqlx::query(
                    "INSERT INTO examples (id, input, expected, meta) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET input = excluded.input, \
                     expected = excluded.expected, meta = excluded.meta",
                )
                .bind(&example.id)
                .bind(&example.input)
                .bind(&example.expected)
                .bind(meta)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.examples_changed();
        Ok(examples.len())
    }

    async fn list_examples(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Example>, ExampleStoreError> {
        if let Pools::Sqlite { corpus, .. } = &self.pools {
            let all = match corpus.get() {
                (corpus::Snapshot::Cached(all), _) => Some(all),
                (corpus::Snapshot::TooBig, _) => None,
                (corpus::Snapshot::Unread, generation) => {
                    let all = self.examples_page(corpus::MAX_CACHED + 1, 0).await?;
                    if all.len() > corpus::MAX_CACHED {
                        corpus.fill(generation, corpus::Snapshot::TooBig);
                        None
                    } else {
                        let all = Arc::new(all);
                        corpus.fill(generation, corpus::Snapshot::Cached(all.clone()));
                        Some(all)
                    }
                }
            };
            if let Some(all) = all {
                return Ok(all.iter().skip(offset).take(limit).cloned().collect());
            }
        }
        Ok(self.examples_page(limit, offset).await?)
    }

    async fn delete_example(&self, id: &str) -> Result<bool, ExampleStoreError> {
        let done = with_pool!(self, write, |pool| sqlx::query(
            "DELETE FROM examples WHERE id = $1"
        )
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        self.examples_changed();
        Ok(done > 0)
    }
}
