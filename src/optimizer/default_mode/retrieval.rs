//! Retrieval of stored examples similar to a job's task, by TF-IDF over lowercased whitespace
//! tokens of `input` and `expected` (absent `expected` counts as empty). An example's score is
//! the summed IDF of the distinct tokens it shares with the query; only examples sharing at
//! least one token are returned, best first, ties in store (id) order.

use std::collections::{HashMap, HashSet};

use crate::domain::Example;
use crate::store::ExampleStore;

/// At most this many stored examples are scanned per job (memory and CPU bound).
pub const SCAN_LIMIT: usize = 5_000;
const PAGE: usize = 500;

fn tokens(example: &Example) -> HashSet<String> {
    let expected = example.expected.as_deref().unwrap_or("");
    example
        .input
        .split_whitespace()
        .chain(expected.split_whitespace())
        .map(str::to_lowercase)
        .collect()
}

/// The `k` examples of `corpus` most similar to `query`. Pure CPU; callers with a large corpus
/// run it off the async workers.
pub fn most_similar(query: &str, corpus: &[Example], k: usize) -> Vec<Example> {
    if k == 0 || corpus.is_empty() {
        return Vec::new();
    }
    let docs: Vec<HashSet<String>> = corpus.iter().map(tokens).collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for doc in &docs {
        for t in doc {
            *df.entry(t.as_str()).or_default() += 1;
        }
    }
    // Smoothed IDF: always positive, so any shared token counts (the original's
    // ln(N / (1 + df)) went negative for tokens in every example).
    let n = corpus.len() as f64;
    let idf = |t: &str| {
        df.get(t)
            .map_or(0.0, |&d| ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0)
    };
    let query: HashSet<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(f64, usize)> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            (
                query
                    .iter()
                    .filter(|t| doc.contains(*t))
                    .map(|t| idf(t))
                    .sum(),
                i,
            )
        })
        .filter(|(score, _)| *score > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, i)| corpus[i].clone())
        .collect()
}

/// Up to `k` stored examples most similar to `query`. A store error means no retrieved
/// examples (the job goes on with its inline ones), as in the original.
pub async fn retrieve(store: &dyn ExampleStore, query: &str, k: usize) -> Vec<Example> {
    if k == 0 {
        return Vec::new();
    }
    let mut corpus = Vec::new();
    while corpus.len() < SCAN_LIMIT {
        match store.list_examples(PAGE, corpus.len()).await {
            Ok(page) => {
                let done = page.len() < PAGE;
                corpus.extend(page);
                if done {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "example retrieval failed; using inline examples only");
                return Vec::new();
            }
        }
    }
    if corpus.is_empty() {
        return Vec::new();
    }
    let query = query.to_string();
    match tokio::task::spawn_blocking(move || most_similar(&query, &corpus, k)).await {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "example retrieval task failed");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str, input: &str, expected: Option<&str>) -> Example {
        Example {
            id: id.into(),
            input: input.into(),
            expected: expected.map(Into::into),
            meta: Default::default(),
        }
    }

    #[test]
    fn picks_the_most_similar_examples_first() {
        let corpus = vec![
            example("1", "translate this sentence to french", Some("traduire")),
            example("2", "summarize the article in one line", None),
            example(
                "3",
                "summarize the quarterly article for investors",
                Some("a summary"),
            ),
            example("4", "the weather today", None),
        ];
        let got = most_similar("Summarize this quarterly article", &corpus, 2);
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["3", "2"]);
    }

    #[test]
    fn unrelated_examples_and_k_zero_give_nothing() {
        let corpus = vec![example("1", "alpha beta", None)];
        assert!(most_similar("gamma", &corpus, 3).is_empty());
        assert!(most_similar("alpha", &corpus, 0).is_empty());
        assert_eq!(most_similar("ALPHA", &corpus, 3).len(), 1);
    }
}
