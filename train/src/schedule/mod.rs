//! Learning-rate schedules bound to the global step, with TensorFlow's formulas
//! (`tf.compat.v1.train.*_decay`, Keras's `CosineDecay` with warm-up), which
//! `torch.optim.lr_scheduler`'s closed forms agree with where both exist:
//!
//! | schedule | learning rate at global step `s` | PyTorch equivalent |
//! |---|---|---|
//! | [`Schedule::Constant`] | `lr` | `ConstantLR(factor=1)` |
//! | [`Schedule::ExponentialDecay`] | `lr * rate^(s / decay_steps)` (`floor` of the exponent with `staircase`) | `ExponentialLR` (`decay_steps = 1`), `StepLR` (staircase) |
//! | [`Schedule::PiecewiseConstant`] | `values[i]` for `boundaries[i-1] < s <= boundaries[i]` | `MultiStepLR` with milestones `boundaries[i] + 1` |
//! | [`Schedule::Polynomial`] | `(lr - end) * (1 - min(s, n) / n)^power + end` | `PolynomialLR` (`end = 0`) |
//! | [`Schedule::CosineWithWarmup`] | linear from `warmup_start` to `peak` over `warmup_steps`, then `end + (peak - end) * (1 + cos(pi * t / decay_steps)) / 2` with `t = min(s - warmup_steps, decay_steps)` | `LinearLR` then `CosineAnnealingLR` |
//!
//! A schedule is a pure function of the step, so a run resumed at step `s` continues with the
//! rate it had; [`Schedule::apply`] sets it on any couplet optimizer before its step:
//!
//! ```no_run
//! # use couplet_modules::{Optimizer, Sgd, SgdConfig, Store};
//! # use couplet_train::schedule::Schedule;
//! # fn main() -> couplet_modules::Result<()> {
//! # let store = Store::cpu();
//! let schedule = Schedule::exponential_decay(0.1, 1000, 0.96, true)?;
//! let mut optimizer = Sgd::new(store.variables(), SgdConfig::new(schedule.learning_rate(0)?))?;
//! for step in 0..10_000 {
//!     schedule.apply(&mut optimizer, step)?;
//!     // loss.backward(); optimizer.step()?; ...
//! }
//! # Ok(()) }
//! ```

use couplet_modules::{Error, Optimizer, Result};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A learning rate as a function of the global step. Build one with the checked constructors
/// ([`Schedule::constant`], ...); [`Schedule::learning_rate`] checks a value built by hand or
/// deserialized again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The same rate at every step.
    Constant {
        /// The rate, finite and >= 0.
        lr: f64,
    },
    /// `lr * rate^(step / decay_steps)`, the exponent floored with `staircase` (a step
    /// function that drops every `decay_steps`).
    ExponentialDecay {
        /// The rate at step 0, finite and >= 0.
        lr: f64,
        /// Steps per factor of `rate`, >= 1.
        decay_steps: i64,
        /// The factor per `decay_steps`, finite and > 0 (above 1 grows).
        rate: f64,
        /// Floor the exponent.
        staircase: bool,
    },
    /// `values[0]` up to and including step `boundaries[0]`, `values[i]` for
    /// `boundaries[i-1] < step <= boundaries[i]`, the last value after the last boundary.
    PiecewiseConstant {
        /// Strictly increasing steps.
        boundaries: Vec<i64>,
        /// One more than `boundaries`, each finite and >= 0.
        values: Vec<f64>,
    },
    /// `(lr - end) * (1 - min(step, decay_steps) / decay_steps)^power + end`; with `cycle`,
    /// `decay_steps` is first multiplied by `ceil(step / decay_steps)` (at least 1), restarting
    /// the decay each period, as TensorFlow's `polynomial_decay`.
    Polynomial {
        /// The rate at step 0, finite and >= 0.
        lr: f64,
        /// The length of the decay, >= 1.
        decay_steps: i64,
        /// The rate from `decay_steps` on, finite and >= 0.
        end: f64,
        /// The exponent, finite and > 0 (1 is linear).
        power: f64,
        /// Restart every `decay_steps`.
        cycle: bool,
    },
    /// A linear warm-up from `warmup_start` (at step 0) to `peak` (at `warmup_steps`), then a
    /// half cosine from `peak` down to `end` over `decay_steps`, then `end`.
    CosineWithWarmup {
        /// The rate at step 0, finite and >= 0.
        warmup_start: f64,
        /// The rate at the end of the warm-up, finite and >= 0.
        peak: f64,
        /// The warm-up's length, >= 0 (0: start at `peak`).
        warmup_steps: i64,
        /// The cosine's length, >= 1.
        decay_steps: i64,
        /// The final rate, finite and >= 0.
        end: f64,
    },
}

const SCOPE: &str = "schedule";

fn rate(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(SCOPE, format!("{what} must be finite and >= 0, got {v}")))
    }
}

fn positive(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::config(SCOPE, format!("{what} must be finite and > 0, got {v}")))
    }
}

fn steps(what: &str, v: i64, min: i64) -> Result<()> {
    if v >= min {
        Ok(())
    } else {
        Err(Error::config(SCOPE, format!("{what} must be >= {min}, got {v}")))
    }
}

impl Schedule {
    /// [`Schedule::Constant`].
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite rate.
    pub fn constant(lr: f64) -> Result<Self> {
        let s = Schedule::Constant { lr };
        s.check()?;
        Ok(s)
    }

    /// [`Schedule::ExponentialDecay`].
    ///
    /// # Errors
    /// [`Error::Config`] for a negative/non-finite `lr`, `decay_steps < 1` or a non-positive
    /// or non-finite `rate`.
    pub fn exponential_decay(lr: f64, decay_steps: i64, rate: f64, staircase: bool) -> Result<Self> {
        let s = Schedule::ExponentialDecay { lr, decay_steps, rate, staircase };
        s.check()?;
        Ok(s)
    }

    /// [`Schedule::PiecewiseConstant`].
    ///
    /// # Errors
    /// [`Error::Config`] when `values` is not one longer than `boundaries`, the boundaries do
    /// not strictly increase, or a value is negative or not finite.
    pub fn piecewise_constant(boundaries: Vec<i64>, values: Vec<f64>) -> Result<Self> {
        let s = Schedule::PiecewiseConstant { boundaries, values };
        s.check()?;
        Ok(s)
    }

    /// [`Schedule::Polynomial`].
    ///
    /// # Errors
    /// [`Error::Config`] for a negative/non-finite `lr` or `end`, `decay_steps < 1` or a
    /// non-positive/non-finite `power`.
    pub fn polynomial(lr: f64, decay_steps: i64, end: f64, power: f64, cycle: bool) -> Result<Self> {
        let s = Schedule::Polynomial { lr, decay_steps, end, power, cycle };
        s.check()?;
        Ok(s)
    }

    /// [`Schedule::CosineWithWarmup`].
    ///
    /// # Errors
    /// [`Error::Config`] for a negative/non-finite rate, `warmup_steps < 0` or
    /// `decay_steps < 1`.
    pub fn cosine_with_warmup(
        warmup_start: f64,
        peak: f64,
        warmup_steps: i64,
        decay_steps: i64,
        end: f64,
    ) -> Result<Self> {
        let s = Schedule::CosineWithWarmup { warmup_start, peak, warmup_steps, decay_steps, end };
        s.check()?;
        Ok(s)
    }

    /// Checks every setting (the constructors call it; so does [`Schedule::learning_rate`]).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad setting.
    pub fn check(&self) -> Result<()> {
        match self {
            Schedule::Constant { lr } => rate("lr", *lr),
            Schedule::ExponentialDecay { lr, decay_steps, rate: r, .. } => {
                rate("lr", *lr)?;
                steps("decay_steps", *decay_steps, 1)?;
                positive("rate", *r)
            }
            Schedule::PiecewiseConstant { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(Error::config(
                        SCOPE,
                        format!(
                            "piecewise constant needs one more value than boundaries, got {} values for {} boundaries",
                            values.len(),
                            boundaries.len()
                        ),
                    ));
                }
                if let Some(w) = boundaries.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(Error::config(
                        SCOPE,
                        format!("boundaries must strictly increase, got {} then {}", w[0], w[1]),
                    ));
                }
                values.iter().enumerate().try_for_each(|(i, v)| rate(&format!("values[{i}]"), *v))
            }
            Schedule::Polynomial { lr, decay_steps, end, power, .. } => {
                rate("lr", *lr)?;
                steps("decay_steps", *decay_steps, 1)?;
                rate("end", *end)?;
                positive("power", *power)
            }
            Schedule::CosineWithWarmup { warmup_start, peak, warmup_steps, decay_steps, end } => {
                rate("warmup_start", *warmup_start)?;
                rate("peak", *peak)?;
                steps("warmup_steps", *warmup_steps, 0)?;
                steps("decay_steps", *decay_steps, 1)?;
                rate("end", *end)
            }
        }
    }

    /// The learning rate at global step `step` (finite and >= 0).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative step; [`Error::Config`] for a bad setting
    /// (see [`Schedule::check`]) or a rate that overflows (an exponential growth past
    /// `f64::MAX`).
    pub fn learning_rate(&self, step: i64) -> Result<f64> {
        if step < 0 {
            return Err(Error::invalid(SCOPE, format!("the global step must be >= 0, got {step}")));
        }
        self.check()?;
        let s = step as f64;
        let lr = match self {
            Schedule::Constant { lr } => *lr,
            Schedule::ExponentialDecay { lr, decay_steps, rate, staircase } => {
                let p = s / *decay_steps as f64;
                lr * rate.powf(if *staircase { p.floor() } else { p })
            }
            Schedule::PiecewiseConstant { boundaries, values } => {
                values[boundaries.partition_point(|&b| b < step)]
            }
            Schedule::Polynomial { lr, decay_steps, end, power, cycle } => {
                let mut n = *decay_steps as f64;
                let s = if *cycle {
                    n *= if step == 0 { 1.0 } else { (s / n).ceil() };
                    s
                } else {
                    s.min(n)
                };
                (lr - end) * (1.0 - s / n).powf(*power) + end
            }
            Schedule::CosineWithWarmup { warmup_start, peak, warmup_steps, decay_steps, end } => {
                if step < *warmup_steps {
                    warmup_start + (peak - warmup_start) * s / *warmup_steps as f64
                } else {
                    let t = ((step - warmup_steps) as f64).min(*decay_steps as f64);
                    end + (peak - end) * 0.5 * (1.0 + (std::f64::consts::PI * t / *decay_steps as f64).cos())
                }
            }
        };
        if lr.is_finite() && lr >= 0.0 {
            Ok(lr)
        } else {
            Err(Error::config(SCOPE, format!("the learning rate at step {step} is {lr} (overflow)")))
        }
    }

    /// Sets `optimizer`'s learning rate to the rate at `step` and returns it.
    ///
    /// # Errors
    /// As [`Schedule::learning_rate`]; the optimizer is left unchanged then.
    pub fn apply(&self, optimizer: &mut dyn Optimizer, step: i64) -> Result<f64> {
        let lr = self.learning_rate(step)?;
        optimizer.set_learning_rate(lr);
        Ok(lr)
    }
}
