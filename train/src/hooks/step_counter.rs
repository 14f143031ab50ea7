//! [`StepCounterHook`]: steps per second as the TensorBoard scalar `global_step/sec`
//! (TensorFlow's `StepCounterHook`).

use super::summary::summary_step;
use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};
use std::time::Instant;

/// Every `every_steps` global steps, writes the steps per second since the previous write
/// (or since `begin`) as `global_step/sec`, and keeps the latest rate.
#[derive(Debug)]
pub struct StepCounterHook {
    every_steps: u64,
    last: Option<(Instant, u64)>,
    rate: Option<f64>,
}

impl StepCounterHook {
    /// Counts over windows of `every_steps` steps.
    ///
    /// # Errors
    /// [`Error::Config`] naming `step_counter_hook` if `every_steps` is 0.
    pub fn new(every_steps: u64) -> Result<Self> {
        if every_steps == 0 {
            return Err(Error::config("step_counter_hook", "every_steps must be >= 1, got 0"));
        }
        Ok(StepCounterHook { every_steps, last: None, rate: None })
    }

    /// The latest rate written, in steps per second.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
}

impl Hook for StepCounterHook {
    fn begin(&mut self, ctx: &mut RunContext) -> Result<()> {
        self.last = Some((Instant::now(), ctx.global_step));
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, _output: &StepOutput) -> Result<()> {
        if ctx.global_step % self.every_steps != 0 {
            return Ok(());
        }
        let now = Instant::now();
        if let Some((at, step)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 && ctx.global_step > step {
                let rate = (ctx.global_step - step) as f64 / secs;
                ctx.summary.add_scalar("global_step/sec", rate, summary_step(ctx.global_step)?)?;
                self.rate = Some(rate);
            }
        }
        self.last = Some((now, ctx.global_step));
        Ok(())
    }
}
