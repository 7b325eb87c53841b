//! The original's default-mode optimizer (placeholder until the faithful port lands).

use async_trait::async_trait;

use super::{JobContext, OptimizeError, Optimizer};
use crate::domain::job::DefaultResult;
use crate::domain::{EventPayload, JobResult, ObjectiveScores};

/// The cheap deterministic mutate/rank loop.
#[derive(Debug, Default)]
pub struct DefaultOptimizer;

#[async_trait]
impl Optimizer for DefaultOptimizer {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        let spec = &ctx.spec;
        let target_model = spec
            .target_model_id
            .clone()
            .unwrap_or_else(|| ctx.settings.target_model_default.clone());
        let scores = ObjectiveScores::default();
        for i in 0..spec.iterations {
            ctx.events.emit(EventPayload::Mutation { count: 0 }).await?;
            ctx.events
                .emit(EventPayload::Progress {
                    iteration: i + 1,
                    proposal: spec.prompt.clone(),
                    target_model: target_model.clone(),
                    rubric: spec.evaluation_rubric.clone(),
                    scores: scores.clone(),
                })
                .await?;
            ctx.events
                .emit(EventPayload::Selected {
                    candidate: spec.prompt.clone(),
                    scores: scores.clone(),
                })
                .await?;
        }
        Ok(JobResult::Default(DefaultResult {
            proposal: spec.prompt.clone(),
            lessons: Vec::new(),
            scores,
            target_model,
            rubric: spec.evaluation_rubric.clone(),
        }))
    }
}
