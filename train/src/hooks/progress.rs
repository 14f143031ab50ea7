//! [`ProgressBarHook`]: a terminal progress bar with the steps, their rate, the ETA and the
//! latest reported values (indicatif).

use super::logging::format_value;
use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Shows `[elapsed] [bar] step/max_steps, steps/s, eta | name value, …`, updated every
/// step; the message (reported values) every `message_every` steps, so the host reads of
/// the values stay rare. Without `max_steps` the bar is a counter. Hidden when made with
/// [`ProgressBarHook::hidden`] (quiet runs, tests). Other output should go through
/// [`LogSink::Bar`](super::LogSink::Bar) with [`ProgressBarHook::bar`] so the bar stays whole.
#[derive(Debug)]
pub struct ProgressBarHook {
    bar: ProgressBar,
    message_every: u64,
}

impl ProgressBarHook {
    /// A bar on standard error, its message refreshed every `message_every` steps.
    ///
    /// # Errors
    /// [`Error::Config`] naming `progress_bar_hook` if `message_every` is 0.
    pub fn new(message_every: u64) -> Result<Self> {
        Self::with_bar(ProgressBar::new(0), message_every)
    }

    /// A bar that draws nothing (it still counts).
    pub fn hidden() -> Self {
        ProgressBarHook { bar: ProgressBar::hidden(), message_every: u64::MAX }
    }

    fn with_bar(bar: ProgressBar, message_every: u64) -> Result<Self> {
        if message_every == 0 {
            return Err(Error::config("progress_bar_hook", "message_every must be >= 1, got 0"));
        }
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:25}] {pos}/{len} steps, {per_sec}, eta {eta} | {msg}",
        )
        .map_err(|e| Error::config("progress_bar_hook", format!("template: {e}")))?
        .progress_chars("=> ");
        bar.set_style(style);
        Ok(ProgressBarHook { bar, message_every })
    }

    /// The bar (a handle: clones draw on the same bar), e.g. for [`LogSink::Bar`](super::LogSink::Bar).
    pub fn bar(&self) -> ProgressBar {
        self.bar.clone()
    }
}

impl Hook for ProgressBarHook {
    fn begin(&mut self, ctx: &mut RunContext) -> Result<()> {
        self.bar.set_length(ctx.max_steps.unwrap_or(ctx.global_step).max(ctx.global_step));
        self.bar.set_position(ctx.global_step);
        self.bar.reset_eta();
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, output: &StepOutput) -> Result<()> {
        if ctx.max_steps.is_none() {
            self.bar.set_length(ctx.global_step);
        }
        self.bar.set_position(ctx.global_step);
        if ctx.global_step % self.message_every == 0 {
            let values: Vec<String> =
                output.scalars()?.iter().map(|(name, v)| format!("{name} {}", format_value(*v))).collect();
            self.bar.set_message(values.join(", "));
        }
        Ok(())
    }

    fn end(&mut self, _ctx: &mut RunContext) -> Result<()> {
        self.bar.finish_and_clear();
        Ok(())
    }
}
