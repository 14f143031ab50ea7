//! Optimizer state as named tensors, `{variable}/{slot}` (PyTorch's state keys), shared by
//! every optimizer's [`Optimizer::state_tensors`](super::Optimizer::state_tensors) and
//! [`Optimizer::load_state_tensors`](super::Optimizer::load_state_tensors).

use crate::error::{Error, Result, TorchContext};
use crate::store::Variable;
use crate::util::shape_str;
use std::collections::{BTreeMap, BTreeSet};
use tch::{Device, Kind, Tensor};

/// The slot of the per-variable step count.
pub(super) const STEP: &str = "step";

/// The largest step count accepted on load (Adam's bias correction takes an `i32` power).
const MAX_STEP: i64 = i32::MAX as i64;

/// The state key of `slot` for `var`: `{name}/{slot}`.
fn key(var: &Variable, slot: &str) -> String {
    format!("{}/{slot}", var.name())
}

/// One variable's state entries: `{name}/step` as a CPU int64 scalar when `step` is given,
/// then a copy of each `(slot, tensor)`.
pub(super) fn entries(
    optimizer: &str,
    var: &Variable,
    step: Option<i64>,
    slots: &[(&str, &Tensor)],
) -> Result<Vec<(String, Tensor)>> {
    let module = format!("{optimizer} (variable {})", var.name());
    let mut out = Vec::with_capacity(slots.len() + 1);
    if let Some(step) = step {
        let t = Tensor::f_scalar_tensor(step, (Kind::Int64, Device::Cpu)).ctx(&module)?;
        out.push((key(var, STEP), t));
    }
    for (slot, t) in slots {
        out.push((key(var, slot), tch::no_grad(|| super::copy_of(t)).ctx(&module)?));
    }
    Ok(out)
}

/// One variable's state read back by [`load`]: its step count (0 when the optimizer keeps
/// none) and its tensor slots in the order they were asked for, copied to the variable's
/// kind and device.
pub(super) struct Loaded {
    pub(super) step: i64,
    pub(super) slots: Vec<Tensor>,
}

impl Loaded {
    /// A shallow clone of slot `i` (an index into the slot list given to [`load`]).
    pub(super) fn slot(&self, i: usize) -> Tensor {
        self.slots[i].shallow_clone()
    }

    /// The step count as the `i32` Adam keeps ([`load`] checked it fits).
    pub(super) fn step_i32(&self) -> i32 {
        i32::try_from(self.step).unwrap_or(i32::MAX)
    }
}

/// Reads the state of `variables` from `tensors`, strictly. A variable with none of its keys
/// has no state (`None`: not stepped yet); one with any key must have all of them: the step
/// (when `has_step`) and every slot of `slots`, each shaped like the variable. Every key of
/// `tensors` must be one of these.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `optimizer` that lists every missing key, unexpected key,
/// shape mismatch and invalid step count (not an integral scalar in `[0, 2^31 - 1]`);
/// [`Error::Torch`] if a copy fails. Nothing is returned on error.
pub(super) fn load(
    optimizer: &str,
    variables: &[Variable],
    has_step: bool,
    slots: &[&str],
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Vec<Option<Loaded>>> {
    let mut unexpected: BTreeSet<&str> = tensors.keys().map(String::as_str).collect();
    let (mut missing, mut mismatched, mut bad_steps) = (Vec::new(), Vec::new(), Vec::new());
    let mut bad_values = Vec::new();
    let mut found = Vec::with_capacity(variables.len());
    for v in variables {
        let step_key = has_step.then(|| key(v, STEP));
        let slot_keys: Vec<String> = slots.iter().map(|s| key(v, s)).collect();
        let all = step_key.iter().chain(&slot_keys);
        if !all.clone().any(|k| tensors.contains_key(k)) {
            found.push(None);
            continue;
        }
        for k in all {
            unexpected.remove(k.as_str());
            if !tensors.contains_key(k) {
                missing.push(k.clone());
            }
        }
        let step = match step_key.as_ref().and_then(|k| Some((k, tensors.get(k)?))) {
            Some((k, t)) => match step_value(t) {
                Some(step) => step,
                None => {
                    bad_steps.push(format!("{k}: {} {:?} tensor", shape_str(&t.size()), t.kind()));
                    0
                }
            },
            None => 0,
        };
        let want = v.tensor().size();
        for (k, slot) in slot_keys.iter().zip(slots) {
            let Some(t) = tensors.get(k) else { continue };
            if !t.defined() {
                bad_values.push(format!("{k}: an undefined tensor"));
            } else if t.size() != want {
                mismatched.push(format!(
                    "{k}: variable {}, state {}",
                    shape_str(&want),
                    shape_str(&t.size())
                ));
            } else if let Some(problem) = slot_problem(t, v.tensor().kind(), slot) {
                bad_values.push(format!("{k}: {problem}"));
            }
        }
        found.push(Some((v, step, slot_keys)));
    }

    let mut problems = Vec::new();
    let mut list = |what: &str, items: Vec<String>, sep: &str| {
        if !items.is_empty() {
            problems.push(format!("{what} ({}): {}", items.len(), items.join(sep)));
        }
    };
    list("missing", missing, ", ");
    list("unexpected", unexpected.into_iter().map(str::to_string).collect(), ", ");
    list("shape mismatches", mismatched, "; ");
    list(&format!("step counts that are not an integral scalar in [0, {MAX_STEP}]"), bad_steps, "; ");
    list("invalid values", bad_values, "; ");
    if !problems.is_empty() {
        return Err(Error::invalid(
            optimizer,
            format!("state does not match the variables: {}", problems.join("; ")),
        ));
    }

    tch::no_grad(|| {
        found
            .into_iter()
            .map(|entry| {
                let Some((v, step, slot_keys)) = entry else { return Ok(None) };
                let module = format!("{optimizer} (variable {})", v.name());
                let slots = slot_keys
                    .iter()
                    .map(|k| {
                        let mut t = v.tensor().f_empty_like()?;
                        t.f_copy_(&tensors[k])?;
                        Ok(t)
                    })
                    .collect::<std::result::Result<Vec<_>, tch::TchError>>()
                    .ctx(&module)?;
                Ok(Some(Loaded { step, slots }))
            })
            .collect()
    })
}

/// Slots that hold running averages of squares: never negative (Adam and RMSProp take their
/// square root).
const NON_NEGATIVE_SLOTS: &[&str] = &["exp_avg_sq", "max_exp_avg_sq", "square_avg"];

/// What is wrong with the values of a slot tensor once converted to the variable's `kind`:
/// not a number kind, non-finite values (NaN, or a value beyond the kind such as `1e10` in
/// `Half`), or negative values in a [`NON_NEGATIVE_SLOTS`] slot.
fn slot_problem(t: &Tensor, kind: Kind, slot: &str) -> Option<String> {
    let float_kind = matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double);
    if t.kind() == Kind::Bool || t.is_floating_point() != float_kind {
        return Some(format!("kind {:?} for a {kind:?} variable", t.kind()));
    }
    let converted = t.f_to_kind(kind).ok()?;
    if let Err(e) = crate::util::check_all_finite("", &format!("the values in {kind:?}"), &converted) {
        return Some(e.to_string().trim_start_matches(": ").to_string());
    }
    let negative = NON_NEGATIVE_SLOTS.contains(&slot)
        && converted.f_lt(0.0).and_then(|n| n.f_any()).and_then(|a| a.f_int64_value(&[])).ok()? != 0;
    negative.then(|| "negative values in a running average of squares".to_string())
}

/// The value of a step-count tensor: a scalar of an integer or floating kind (PyTorch keeps
/// `float32` steps) holding an integer in `[0, MAX_STEP]`.
fn step_value(t: &Tensor) -> Option<i64> {
    use Kind::*;
    let numeric = matches!(t.kind(), Uint8 | Int8 | Int16 | Int | Int64 | Half | Float | Double | BFloat16);
    if !numeric || t.dim() != 0 {
        return None;
    }
    let value = t.f_double_value(&[]).ok()?;
    (value.fract() == 0.0 && (0.0..=MAX_STEP as f64).contains(&value)).then_some(value as i64)
}
