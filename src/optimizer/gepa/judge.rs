//! The server's LLM judge for `llm_judge` rubrics: one model, fixed by the server, its verdicts
//! cached and its calls QPS-limited; offline (no provider) it grades by token F1.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use super::metrics::{Scored, token_f1};
use crate::domain::Example;
use crate::provider::openai::RateLimiter;
use crate::provider::{ChatMessage, CompletionRequest, ModelProvider, ProviderError, Usage};

/// The server's judge: one model (`JUDGE_MODEL_ID`), an LRU cache of verdicts
/// (`JUDGE_CACHE_SIZE`) and a QPS limit (`JUDGE_QPS_MAX`). Without a provider
/// (`USE_JUDGE_STUB`) it grades offline by token F1 against the reference answer.
pub struct Judge {
    provider: Option<Arc<dyn ModelProvider>>,
    model: String,
    cache: Mutex<lru::LruCache<u64, (Scored, Usage)>>,
    limiter: RateLimiter,
}

impl Judge {
    pub fn new(
        provider: Option<Arc<dyn ModelProvider>>,
        model: String,
        cache_size: usize,
        qps: f64,
    ) -> Self {
        Judge {
            provider,
            model,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(cache_size.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            limiter: RateLimiter::new(qps),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Scores `output` against the rubric. Cached verdicts cost nothing (usage zero).
    pub async fn score(
        &self,
        rubric: &str,
        output: &str,
        example: &Example,
    ) -> Result<(Scored, Usage), ProviderError> {
        let key = super::state::fnv1a(&[
            rubric,
            &example.input,
            example.expected.as_deref().unwrap_or(""),
            output,
        ]);
        if let Some((hit, _)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok((hit.clone(), Usage::default()));
        }
        let Some(provider) = &self.provider else {
            let f1 = token_f1(output, example);
            let stub = Scored {
                score: f1.score,
                feedback: format!("Offline judge (token overlap): {}", f1.feedback),
            };
            return Ok((stub, Usage::default()));
        };
        self.limiter.acquire().await;
        let prompt = format!(
            "Rubric:\n{rubric}\n\nTask input:\n{}\n\nReference answer (may be empty):\n{}\n\nResponse to grade:\n{output}\n\nGrade the response against the rubric. Explain briefly what is missing or wrong, then end with a line `SCORE: N` where N is 0 to 10.",
            example.input,
            example.expected.as_deref().unwrap_or("")
        );
        let completion = provider
            .complete(CompletionRequest {
                model: self.model.as_str().into(),
                messages: vec![
                    ChatMessage::system("You are a strict grader."),
                    ChatMessage::user(prompt),
                ],
                temperature: Some(0.0),
                max_tokens: Some(300),
                seed: None,
            })
            .await?;
        let scored = parse_verdict(&completion.text);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, (scored.clone(), completion.usage));
        Ok((scored, completion.usage))
    }
}

/// Reads `SCORE: N` (0–10) from a judge's answer; feedback is the rest of the text.
pub fn parse_verdict(text: &str) -> Scored {
    let mut score = None;
    let mut feedback = Vec::new();
    for line in text.lines() {
        let upper = line.trim().to_uppercase();
        if let Some(rest) = upper.strip_prefix("SCORE:") {
            let number: String = rest
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            score = number.parse::<f64>().ok();
        } else if !line.trim().is_empty() {
            feedback.push(line.trim());
        }
    }
    match score {
        Some(s) => Scored {
            score: (s / 10.0).clamp(0.0, 1.0),
            feedback: feedback.join(" "),
        },
        None => Scored {
            score: 0.0,
            feedback: format!("The judge gave no score: {}", text.trim()),
        },
    }
}
