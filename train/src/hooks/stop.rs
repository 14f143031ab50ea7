//! [`StopAtStepHook`] and [`StopAfterSecondsHook`]: stop training at a global step, or after
//! a wall-clock budget.

use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};
use std::time::{Duration, Instant};

/// Stops training once the global step reaches `last_step` (TensorFlow's `StopAtStepHook`
/// with `last_step`), or after `num_steps` more steps than where it began.
#[derive(Debug)]
pub struct StopAtStepHook {
    num_steps: Option<u64>,
    last_step: Option<u64>,
}

impl StopAtStepHook {
    /// Stops at global step `last_step`.
    pub fn last_step(last_step: u64) -> Self {
        StopAtStepHook { num_steps: None, last_step: Some(last_step) }
    }

    /// Stops after `num_steps` steps of this `train` call.
    pub fn num_steps(num_steps: u64) -> Self {
        StopAtStepHook { num_steps: Some(num_steps), last_step: None }
    }

    fn check(&mut self, ctx: &mut RunContext) {
        if let Some(last) = self.last_step {
            if ctx.global_step >= last {
                ctx.request_stop(format!("stop_at_step: reached step {last}"));
            }
        }
    }
}

impl Hook for StopAtStepHook {
    fn begin(&mut self, ctx: &mut RunContext) -> Result<()> {
        if let Some(n) = self.num_steps.take() {
            self.last_step = Some(ctx.global_step.saturating_add(n));
        }
        self.check(ctx);
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, _output: &StepOutput) -> Result<()> {
        self.check(ctx);
        Ok(())
    }
}

/// Stops training once `seconds` of wall-clock time have passed since the hook's `begin`
/// (checked after each step, so the step running when the budget ends completes).
#[derive(Debug)]
pub struct StopAfterSecondsHook {
    budget: Duration,
    started: Instant,
}

impl StopAfterSecondsHook {
    /// A budget of `seconds`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `stop_after_seconds_hook` unless `seconds` is finite and > 0.
    pub fn new(seconds: f64) -> Result<Self> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(Error::config(
                "stop_after_seconds_hook",
                format!("seconds must be finite and > 0, got {seconds}"),
            ));
        }
        Ok(StopAfterSecondsHook { budget: Duration::from_secs_f64(seconds), started: Instant::now() })
    }

    /// Seconds left of the budget (0 once spent).
    pub fn seconds_left(&self) -> f64 {
        self.budget.saturating_sub(self.started.elapsed()).as_secs_f64()
    }
}

impl Hook for StopAfterSecondsHook {
    fn begin(&mut self, _ctx: &mut RunContext) -> Result<()> {
        self.started = Instant::now();
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, _output: &StepOutput) -> Result<()> {
        if self.started.elapsed() >= self.budget {
            ctx.request_stop(format!(
                "stop_after_seconds: the {} s budget is spent",
                self.budget.as_secs_f64()
            ));
        }
        Ok(())
    }
}
