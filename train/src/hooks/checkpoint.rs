//! [`CheckpointSaverHook`]: numbered checkpoints of the model and its optimizers every N
//! steps or seconds, and at the end (TensorFlow's `CheckpointSaverHook`).

use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Saves the model's variables and every optimizer's state with
/// [`CheckpointManager::save_with_optimizers`](couplet_modules::CheckpointManager::save_with_optimizers)
/// at every multiple of `every_steps` of the global step, or when `every_secs` have passed
/// since the last save, and at the end of training (unless that step is already saved).
/// The summary writer is flushed before each save.
/// The trainer adds one made from its [`RunConfig`](crate::RunConfig).
#[derive(Debug)]
pub struct CheckpointSaverHook {
    every_steps: Option<u64>,
    every: Option<Duration>,
    last_save: Instant,
    last_step: Option<u64>,
    saved: Vec<PathBuf>,
}

impl CheckpointSaverHook {
    /// Saves every `steps` global steps (and at the end).
    ///
    /// # Errors
    /// [`Error::Config`] naming `checkpoint_saver_hook` if `steps` is 0.
    pub fn every_steps(steps: u64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::config("checkpoint_saver_hook", "every_steps must be >= 1, got 0"));
        }
        Ok(Self::new(Some(steps), None))
    }

    /// Saves when `secs` seconds have passed since the last save (and at the end).
    ///
    /// # Errors
    /// [`Error::Config`] naming `checkpoint_saver_hook` unless `secs` is finite and > 0.
    pub fn every_secs(secs: f64) -> Result<Self> {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(Error::config(
                "checkpoint_saver_hook",
                format!("every_secs must be finite and > 0, got {secs}"),
            ));
        }
        Ok(Self::new(None, Some(Duration::from_secs_f64(secs))))
    }

    /// Saves only at the end of training.
    pub fn at_end() -> Self {
        Self::new(None, None)
    }

    fn new(every_steps: Option<u64>, every: Option<Duration>) -> Self {
        CheckpointSaverHook {
            every_steps,
            every,
            last_save: Instant::now(),
            last_step: None,
            saved: Vec::new(),
        }
    }

    /// The checkpoints this hook wrote, oldest first (some may have been pruned since).
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }

    fn save(&mut self, ctx: &RunContext) -> Result<()> {
        let step = ctx.global_step;
        // Summaries up to this step reach the file first: a run killed after this checkpoint
        // and resumed from it then has every step's events exactly once.
        ctx.summary.flush()?;
        let path = ctx.checkpoints.save_with_optimizers(ctx.model.store(), &ctx.model.optimizers(), step)?;
        self.saved.push(path);
        self.last_step = Some(step);
        self.last_save = Instant::now();
        Ok(())
    }
}

impl Hook for CheckpointSaverHook {
    fn begin(&mut self, ctx: &mut RunContext) -> Result<()> {
        // The restored checkpoint (if any) is this step's: no need to write it again.
        self.last_step = Some(ctx.global_step);
        self.last_save = Instant::now();
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, _output: &StepOutput) -> Result<()> {
        let by_steps = self.every_steps.is_some_and(|n| ctx.global_step % n == 0);
        let by_time = self.every.is_some_and(|d| self.last_save.elapsed() >= d);
        if by_steps || by_time {
            self.save(ctx)?;
        }
        Ok(())
    }

    fn end(&mut self, ctx: &mut RunContext) -> Result<()> {
        if self.last_step != Some(ctx.global_step) || ctx.checkpoints.latest_step()? != Some(ctx.global_step)
        {
            self.save(ctx)?;
        }
        Ok(())
    }
}
