//! [`NanGuardHook`]: stops training with an error naming the first NaN or infinite loss,
//! gradient or variable (TensorFlow's `NanTensorHook` and tfdbg's `has_inf_or_nan` filter).

use super::{Hook, RunContext};
use crate::model::StepOutput;
use couplet_modules::{Error, Result, TorchContext};
use tch::Tensor;

const MODULE: &str = "nan_guard";

/// After every step, checks in order: every scalar the step reported, then the gradient of
/// every trainable variable (in store order; undefined gradients are skipped), then every
/// variable; the first that holds a NaN or an infinity ends training with
/// [`Error::InvalidArgument`] naming `nan_guard`, the step and the tensor, e.g.
/// `"nan_guard: step 7: loss \"loss\" is NaN"` or
/// `"nan_guard: step 7: gradient of \"mlp/linear_0/w\" has 3 non-finite values (NaN or ±inf) of 12"`.
/// No checkpoint is written for that step (hooks' `end` does not run after an error).
#[derive(Debug, Clone, Copy)]
pub struct NanGuardHook {
    gradients: bool,
    variables: bool,
}

impl Default for NanGuardHook {
    fn default() -> Self {
        NanGuardHook { gradients: true, variables: true }
    }
}

impl NanGuardHook {
    /// Checks losses, gradients and variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks only the reported losses (one host read per step; no tensor scans).
    pub fn losses_only() -> Self {
        NanGuardHook { gradients: false, variables: false }
    }
}

/// How many elements of `t` are not finite.
fn non_finite(t: &Tensor) -> Result<i64> {
    if !t.is_floating_point() {
        return Ok(0);
    }
    let bad =
        t.f_isfinite().and_then(|f| f.f_logical_not()).and_then(|b| b.f_sum(tch::Kind::Int64)).ctx(MODULE)?;
    bad.f_int64_value(&[]).ctx(MODULE)
}

fn describe(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "+inf"
    } else {
        "-inf"
    }
}

impl Hook for NanGuardHook {
    fn after_step(&mut self, ctx: &mut RunContext, output: &StepOutput) -> Result<()> {
        let step = ctx.global_step;
        for (name, value) in output.scalars()? {
            if !value.is_finite() {
                return Err(Error::invalid(
                    MODULE,
                    format!("step {step}: loss {name:?} is {}", describe(*value)),
                ));
            }
        }
        let variables = ctx.model.store().variables();
        if self.gradients {
            for v in variables.iter().filter(|v| v.trainable()) {
                let grad = v.tensor().grad();
                if grad.defined() {
                    let n = non_finite(&grad)?;
                    if n > 0 {
                        return Err(Error::invalid(
                            MODULE,
                            format!(
                                "step {step}: gradient of {:?} has {n} non-finite values (NaN or ±inf) of {}",
                                v.name(),
                                grad.numel()
                            ),
                        ));
                    }
                }
            }
        }
        if self.variables {
            for v in &variables {
                let n = non_finite(v.tensor())?;
                if n > 0 {
                    return Err(Error::invalid(
                        MODULE,
                        format!(
                            "step {step}: variable {:?} has {n} non-finite values (NaN or ±inf) of {}",
                            v.name(),
                            v.tensor().numel()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
