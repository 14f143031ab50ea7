//! [`EarlyStoppingHook`]: stops `train_and_evaluate` when an evaluation metric has not
//! improved for a number of evaluations (TensorFlow's `stop_if_no_decrease_hook` /
//! `stop_if_no_increase_hook`, Keras's `EarlyStopping`).

use super::{Hook, RunContext};
use crate::Evaluation;
use couplet_modules::{Error, Result};

const MODULE: &str = "early_stopping_hook";

/// The value of `name` in `evaluation`, else an [`Error::InvalidArgument`] naming `module`
/// and the metrics the evaluation has.
fn metric(evaluation: &Evaluation, name: &str, module: &str) -> Result<f64> {
    evaluation.metrics.get(name).copied().ok_or_else(|| {
        let names: Vec<&str> = evaluation.metrics.keys().map(String::as_str).collect();
        Error::invalid(module, format!("no metric {name:?} in the evaluation; it has {names:?}"))
    })
}

/// Whether a metric should fall or rise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Lower is better (losses).
    Minimize,
    /// Higher is better (accuracies).
    Maximize,
}

/// Stops training once `patience` consecutive evaluations have not improved on the best
/// value of `metric` by more than `min_delta` (an evaluation improves when it is below
/// `best - min_delta` for [`Goal::Minimize`], above `best + min_delta` for
/// [`Goal::Maximize`]). The first evaluation sets the best value.
#[derive(Debug)]
pub struct EarlyStoppingHook {
    metric: String,
    goal: Goal,
    patience: u64,
    min_delta: f64,
    best: Option<(f64, u64)>,
    stale: u64,
}

impl EarlyStoppingHook {
    /// Watches `metric` (a name of the evaluation's metrics, e.g. `loss`).
    ///
    /// # Errors
    /// [`Error::Config`] naming `early_stopping_hook` if `patience` is 0 or `min_delta` is
    /// negative or not finite.
    pub fn new(metric: &str, goal: Goal, patience: u64, min_delta: f64) -> Result<Self> {
        if patience == 0 {
            return Err(Error::config(MODULE, "patience must be >= 1, got 0"));
        }
        if !(min_delta.is_finite() && min_delta >= 0.0) {
            return Err(Error::config(MODULE, format!("min_delta must be finite and >= 0, got {min_delta}")));
        }
        Ok(EarlyStoppingHook { metric: metric.to_string(), goal, patience, min_delta, best: None, stale: 0 })
    }

    /// The best value seen and the global step of its evaluation.
    pub fn best(&self) -> Option<(f64, u64)> {
        self.best
    }
}

impl Hook for EarlyStoppingHook {
    fn after_evaluation(&mut self, ctx: &mut RunContext, evaluation: &Evaluation) -> Result<()> {
        let value = metric(evaluation, &self.metric, MODULE)?;
        let improved = match (self.best, self.goal) {
            (None, _) => true,
            (Some((best, _)), Goal::Minimize) => value < best - self.min_delta,
            (Some((best, _)), Goal::Maximize) => value > best + self.min_delta,
        };
        if improved {
            self.best = Some((value, evaluation.global_step));
            self.stale = 0;
        } else {
            self.stale += 1;
            if self.stale >= self.patience {
                let (best, at) = self.best.unwrap_or((value, evaluation.global_step));
                ctx.request_stop(format!(
                    "early_stopping: {} has not improved on {best} (step {at}) for {} evaluations",
                    self.metric, self.stale
                ));
            }
        }
        Ok(())
    }
}

/// Stops training once an evaluation's `metric` reaches `target` (`<= target` for
/// [`Goal::Minimize`], `>= target` for [`Goal::Maximize`]), e.g. an exact-match accuracy of 1.
#[derive(Debug)]
pub struct MetricTargetHook {
    metric: String,
    goal: Goal,
    target: f64,
}

impl MetricTargetHook {
    /// Stops when `metric` reaches `target`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `metric_target_hook` for a NaN target.
    pub fn new(metric: &str, goal: Goal, target: f64) -> Result<Self> {
        if target.is_nan() {
            return Err(Error::config("metric_target_hook", "target must not be NaN"));
        }
        Ok(MetricTargetHook { metric: metric.to_string(), goal, target })
    }
}

impl Hook for MetricTargetHook {
    fn after_evaluation(&mut self, ctx: &mut RunContext, evaluation: &Evaluation) -> Result<()> {
        let value = metric(evaluation, &self.metric, "metric_target_hook")?;
        let reached = match self.goal {
            Goal::Minimize => value <= self.target,
            Goal::Maximize => value >= self.target,
        };
        if reached {
            ctx.request_stop(format!(
                "metric_target: {} reached {value} (target {})",
                self.metric, self.target
            ));
        }
        Ok(())
    }
}
