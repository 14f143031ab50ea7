//! [`Route::Loop`](crate::Route::Loop): the core's own steps, one time step at a time, with
//! the input projection of every step in one call and the batch shrinking as rows end
//! (steps 2–5 of [`dynamic_rnn`](crate::dynamic_rnn)'s algorithm).

use crate::core::RnnCore;
use crate::options::UnrollOptions;
use crate::plan::{Plan, RunningRows};
use crate::state::State;
use couplet_modules::{Error, Result, TorchContext};
use tch::Tensor;

/// Steps `core` over `inputs` (`[B, T, ..]`, or `[T, B, ..]` if time-major) from `initial`.
pub(crate) fn run<C: RnnCore + ?Sized>(
    func: &str,
    core: &C,
    inputs: &Tensor,
    initial: State,
    plan: &Plan,
    options: &UnrollOptions,
) -> Result<(Tensor, State)> {
    let (batch, time) = (plan.batch(), plan.time());
    if plan.steps() == 0 {
        let scope = core.scope();
        let lead = if options.time_major { [time, batch] } else { [batch, time] };
        let shape: Vec<i64> = lead.into_iter().chain(core.output_shape()).collect();
        return Ok((Tensor::f_zeros(shape, (scope.kind(), scope.device())).ctx(func)?, initial));
    }
    let device = inputs.device();
    let projection = core.projection();
    // The whole sequence, time-major, or its real steps packed: one call of the projection.
    let steps = if plan.is_full() {
        if options.time_major {
            inputs.shallow_clone()
        } else {
            inputs.f_transpose(0, 1).ctx(func)?
        }
    } else {
        plan.pack(inputs, options.time_major, func)?
    };
    let projected = match projection {
        Some(p) => Some(p.project_inputs(&steps).map_err(|e| user_shape(e, &steps, inputs, ""))?),
        None => None,
    };
    let steps = projected.as_ref().unwrap_or(&steps);
    let per_step =
        if plan.is_full() { steps.f_unbind(0) } else { steps.f_split_with_sizes(plan.batch_sizes(), 0) }
            .ctx(func)?;

    let mut rows = RunningRows::new(plan, &initial, device)?;
    let mut outputs = Vec::with_capacity(per_step.len());
    for x in &per_step {
        let state = rows.running(x.size()[0])?;
        let (out, next) = match projection {
            Some(p) => p.step_projected(x, state, options.mode)?,
            None => {
                core.step(x, state, options.mode).map_err(|e| user_shape(e, x, inputs, " at each step"))?
            }
        };
        outputs.push(out);
        rows.advance(next);
    }

    let outputs = if plan.is_full() {
        Tensor::f_stack(&outputs, if options.time_major { 0 } else { 1 }).ctx(func)?
    } else {
        plan.unpack(&outputs, options.time_major, func)?
    };
    Ok((outputs, rows.finish(plan, device)?))
}

/// An error about the tensor the loop made from the user's `inputs` (the time-major or packed
/// sequence, or one step's rows), reported with the user's shape instead: a lazy core built
/// for other inputs would otherwise name shapes the user never made
/// (`"lstm: inputs must be [.., 3], got [2, 4, 6]"`, or for a core without projection
/// `"… inputs must be [B, 3] at each step, got [2, 4, 6]"`).
fn user_shape(error: Error, made: &Tensor, inputs: &Tensor, per_step: &str) -> Error {
    match error {
        Error::Shape { module, what, expected, actual }
            if what.starts_with("input") && actual == format!("{:?}", made.size()) =>
        {
            Error::Shape {
                module,
                what: "inputs".to_string(),
                expected: format!("{expected}{per_step}"),
                actual: format!("{:?}", inputs.size()),
            }
        }
        other => other,
    }
}
