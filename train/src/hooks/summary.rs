//! [`SummarySaverHook`]: the step's reported scalars as TensorBoard scalars `train/<name>`
//! every N steps (TensorFlow's `SummarySaverHook`).

use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};

/// Writes every scalar a step reported as `train/<name>` at the global step, every
/// `every_steps` steps, to the training summary writer. The trainer adds one for
/// [`RunConfig::save_summary_steps`](crate::RunConfig) and writes a `SessionLog` START at
/// the first step of each `train` call, so TensorBoard drops the events a killed run wrote
/// after the checkpoint it resumes from.
#[derive(Debug)]
pub struct SummarySaverHook {
    every_steps: u64,
}

impl SummarySaverHook {
    /// Writes every `every_steps` steps.
    ///
    /// # Errors
    /// [`Error::Config`] naming `summary_saver_hook` if `every_steps` is 0.
    pub fn new(every_steps: u64) -> Result<Self> {
        if every_steps == 0 {
            return Err(Error::config("summary_saver_hook", "every_steps must be >= 1, got 0"));
        }
        Ok(SummarySaverHook { every_steps })
    }
}

/// A global step as the summary writer's `i64`.
pub(crate) fn summary_step(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| Error::invalid("summary", format!("global step {step} exceeds i64")))
}

impl Hook for SummarySaverHook {
    fn after_step(&mut self, ctx: &mut RunContext, output: &StepOutput) -> Result<()> {
        if ctx.global_step % self.every_steps != 0 {
            return Ok(());
        }
        let step = summary_step(ctx.global_step)?;
        for (name, value) in output.scalars()? {
            ctx.summary.add_scalar(&format!("train/{name}"), *value, step)?;
        }
        Ok(())
    }
}
