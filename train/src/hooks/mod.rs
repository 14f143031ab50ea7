//! Hooks: code that runs around every training step, in the life cycle of TensorFlow's
//! `SessionRunHook`: [`Hook::begin`] once before the first step, [`Hook::before_step`] and
//! [`Hook::after_step`] around each step, [`Hook::after_evaluation`] after each evaluation of
//! `train_and_evaluate`, and [`Hook::end`] once after the last step. Any of them may ask
//! training to stop ([`RunContext::request_stop`]); the current step completes, then `end`
//! runs for every hook.
//!
//! Hooks run in the order given; the trainer's own hooks (made from the
//! [`RunConfig`](crate::RunConfig): summary saver, step counter, logging, then the
//! checkpoint saver) run after the caller's, so a checkpoint of a step sees that step's
//! hooks done and its summaries written.

mod checkpoint;
mod early_stopping;
mod logging;
mod nan_guard;
mod progress;
mod step_counter;
mod stop;
pub(crate) mod summary;

pub use checkpoint::CheckpointSaverHook;
pub use early_stopping::{EarlyStoppingHook, Goal, MetricTargetHook};
pub use logging::{LogSink, LoggingHook};
pub use nan_guard::NanGuardHook;
pub use progress::ProgressBarHook;
pub use step_counter::StepCounterHook;
pub use stop::{StopAfterSecondsHook, StopAtStepHook};
pub(crate) use summary::summary_step;
pub use summary::SummarySaverHook;

use crate::model::{StepOutput, Trainable};
use crate::summary::SummaryWriter;
use crate::Evaluation;
use couplet_modules::{CheckpointManager, Result};
use std::time::Instant;

/// What a hook sees: the global step, the run's bounds and clock, the model's state (for
/// checks and checkpoints), the checkpoint manager and the summary writer.
pub struct RunContext<'a> {
    /// The global step: steps completed so far (in `before_step`, the step about to run is
    /// `global_step + 1`).
    pub global_step: u64,
    /// The global step this `train` call started from (the restored checkpoint's, or 0).
    pub start_step: u64,
    /// The step this call trains up to, if bounded.
    pub max_steps: Option<u64>,
    /// When this `train` call started.
    pub started: Instant,
    /// The model's variables and optimizers.
    pub model: &'a dyn Trainable,
    /// The checkpoints of `model_dir`.
    pub checkpoints: &'a CheckpointManager,
    /// The training summary writer (`model_dir`).
    pub summary: &'a SummaryWriter,
    pub(crate) stop: &'a mut Option<String>,
}

impl RunContext<'_> {
    /// Asks training to stop after this step, saying why (the first reason is kept and
    /// reported in [`TrainReport::stop_reason`](crate::TrainReport)).
    pub fn request_stop(&mut self, reason: impl Into<String>) {
        if self.stop.is_none() {
            *self.stop = Some(reason.into());
        }
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.is_some()
    }
}

/// Code that runs around training steps. Every method has a default that does nothing.
pub trait Hook {
    /// Once, before the first step of a `train` call (after the checkpoint is restored).
    ///
    /// # Errors
    /// Any error; it ends training before the first step.
    fn begin(&mut self, _ctx: &mut RunContext) -> Result<()> {
        Ok(())
    }

    /// Before each step (`ctx.global_step + 1` is the step about to run).
    ///
    /// # Errors
    /// Any error; it ends training.
    fn before_step(&mut self, _ctx: &mut RunContext) -> Result<()> {
        Ok(())
    }

    /// After each step (`ctx.global_step` is the step just taken), with what it reported.
    ///
    /// # Errors
    /// Any error; it ends training at once (without `end`, so no checkpoint of a broken
    /// state is written).
    fn after_step(&mut self, _ctx: &mut RunContext, _output: &StepOutput) -> Result<()> {
        Ok(())
    }

    /// After each evaluation of `train_and_evaluate`, with its metrics.
    ///
    /// # Errors
    /// Any error; it ends training.
    fn after_evaluation(&mut self, _ctx: &mut RunContext, _evaluation: &Evaluation) -> Result<()> {
        Ok(())
    }

    /// Once, after the last step (also when a hook asked to stop or the input ran out).
    ///
    /// # Errors
    /// Any error; it is returned after every hook's `end` ran.
    fn end(&mut self, _ctx: &mut RunContext) -> Result<()> {
        Ok(())
    }
}
