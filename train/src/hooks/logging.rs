//! [`LoggingHook`]: prints the step's reported scalars every N steps or seconds, with the
//! steps per second since the last line (TensorFlow's `LoggingTensorHook`).

use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result};
use indicatif::ProgressBar;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where log lines go.
#[derive(Clone, Debug)]
pub enum LogSink {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Above a progress bar ([`ProgressBarHook::bar`](super::ProgressBarHook::bar)), so the
    /// bar stays intact; standard output while the bar is hidden.
    Bar(ProgressBar),
    /// Appended to a shared list (tests, or a program that shows them itself).
    Lines(Arc<Mutex<Vec<String>>>),
}

impl LogSink {
    /// Writes one line.
    pub fn line(&self, text: &str) {
        match self {
            LogSink::Stdout => println!("{text}"),
            LogSink::Stderr => eprintln!("{text}"),
            LogSink::Bar(bar) if bar.is_hidden() => println!("{text}"),
            LogSink::Bar(bar) => bar.println(text),
            LogSink::Lines(lines) => {
                // A poisoned list only means another thread panicked while pushing; the
                // lines pushed so far are still valid.
                let mut lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                lines.push(text.to_string());
            }
        }
    }
}

/// Logs `step {step}: {name} = {value}, … ({steps/s} steps/s)` after every `every_steps`-th
/// global step, or when `every_secs` have passed since the last line. Values are printed
/// with 6 significant digits (`{:.6}` below 1e5, else scientific). The first line of a run
/// has no rate; later ones have the steps since the previous line over its elapsed time.
#[derive(Debug)]
pub struct LoggingHook {
    every_steps: Option<u64>,
    every: Option<Duration>,
    sink: LogSink,
    last: Option<(Instant, u64)>,
}

impl LoggingHook {
    /// Logs every `steps` global steps.
    ///
    /// # Errors
    /// [`Error::Config`] naming `logging_hook` if `steps` is 0.
    pub fn every_steps(steps: u64, sink: LogSink) -> Result<Self> {
        if steps == 0 {
            return Err(Error::config("logging_hook", "every_steps must be >= 1, got 0"));
        }
        Ok(LoggingHook { every_steps: Some(steps), every: None, sink, last: None })
    }

    /// Logs when `secs` seconds have passed since the last line (and at the first step).
    ///
    /// # Errors
    /// [`Error::Config`] naming `logging_hook` unless `secs` is finite and > 0.
    pub fn every_secs(secs: f64, sink: LogSink) -> Result<Self> {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(Error::config(
                "logging_hook",
                format!("every_secs must be finite and > 0, got {secs}"),
            ));
        }
        Ok(LoggingHook { every_steps: None, every: Some(Duration::from_secs_f64(secs)), sink, last: None })
    }

    fn due(&self, step: u64) -> bool {
        let by_steps = self.every_steps.is_some_and(|n| step % n == 0);
        let by_time = self.every.is_some_and(|d| self.last.map_or(true, |(at, _)| at.elapsed() >= d));
        by_steps || by_time
    }
}

/// A value with 6 significant digits.
pub(crate) fn format_value(value: f64) -> String {
    if value != 0.0 && (value.abs() >= 1e5 || value.abs() < 1e-4) {
        format!("{value:.5e}")
    } else {
        format!("{value:.6}")
    }
}

impl Hook for LoggingHook {
    fn begin(&mut self, _ctx: &mut RunContext) -> Result<()> {
        self.last = None;
        Ok(())
    }

    fn after_step(&mut self, ctx: &mut RunContext, output: &StepOutput) -> Result<()> {
        let step = ctx.global_step;
        if !self.due(step) {
            return Ok(());
        }
        let values: Vec<String> =
            output.scalars()?.iter().map(|(name, v)| format!("{name} = {}", format_value(*v))).collect();
        let mut line = format!("step {step}: {}", values.join(", "));
        let now = Instant::now();
        if let Some((at, last_step)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                line.push_str(&format!(" ({:.2} steps/s)", (step - last_step) as f64 / secs));
            }
        }
        self.sink.line(&line);
        self.last = Some((now, step));
        Ok(())
    }
}
