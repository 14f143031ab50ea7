//! Optimizers over explicit variable lists, and gradient clipping.
//!
//! An optimizer takes the exact list of [`Variable`]s it trains, usually a module's
//! [`Module::trainable_variables`](crate::Module::trainable_variables). Nothing is collected
//! from a global graph: a GAN builds one optimizer over the generator's variables and one
//! over the discriminator's, and each step touches only its own list.
//!
//! The update rules are PyTorch's `torch.optim` (2.x, single-tensor code path) to float
//! precision: [`Sgd`], [`Adam`], [`AdamW`] and [`RmsProp`]. Each type documents where
//! TensorFlow/Keras compute something different.
//!
//! Semantics shared by every optimizer:
//! - [`Optimizer::step`] reads each variable's current `.grad()` and updates the variable in
//!   place, under `tch::no_grad`. Variables share storage with the [`Store`](crate::Store),
//!   so the model changes. A variable whose gradient is undefined (never computed, or reset
//!   by [`Optimizer::zero_grad`]) is skipped entirely, and its state (step count, moments)
//!   does not advance, as in PyTorch.
//! - [`Optimizer::zero_grad`] resets gradients to *undefined* (PyTorch's default
//!   `set_to_none=True`), not to zeros, so a variable the next loss does not reach is skipped
//!   rather than updated by its momentum or weight decay. Gradients accumulate across
//!   `backward` calls until then.
//! - State (momentum buffers, moment estimates, per-variable step counts) lives in the
//!   optimizer, one slot per variable in list order, created lazily at the variable's first
//!   update. It is never stored in the `Store`, so it is not part of model checkpoints;
//!   [`Optimizer::state_tensors`] and [`Optimizer::load_state_tensors`] save and restore it
//!   (PyTorch's `optimizer.state_dict()`), and
//!   [`checkpoint::save_optimizer`](crate::checkpoint::save_optimizer) and
//!   [`CheckpointManager::save_with_optimizers`](crate::CheckpointManager::save_with_optimizers)
//!   write it to files, so training resumed from a checkpoint continues exactly.
//! - An empty variable list is an [`Error::Config`](crate::Error::Config) (as PyTorch refuses
//!   an empty parameter list): it is almost always a module asked for its variables before
//!   they exist, e.g. a composite whose [`Module::children`](crate::Module::children) were not
//!   declared, and training would silently do nothing.
//! - Learning rates are plain `f64`s; [`Optimizer::set_learning_rate`] changes them between
//!   steps (schedules). A rate that is negative or not finite makes the next `step` fail.
//!
//! ```
//! use couplet_modules::{Linear, LinearConfig, Module, Optimizer, Sgd, SgdConfig, Store};
//! use tch::{Kind, Tensor};
//! # fn main() -> couplet_modules::Result<()> {
//! let store = Store::cpu();
//! let lin = Linear::new(&store.root(), LinearConfig::new(1).with_input_size(2))?;
//! let mut opt = Sgd::new(lin.trainable_variables()?, SgdConfig::new(0.1).with_momentum(0.9))?;
//! let x = Tensor::ones([4, 2], (Kind::Float, store.device()));
//! for _ in 0..3 {
//!     opt.zero_grad();
//!     lin.forward(&x)?.square().mean(Kind::Float).backward();
//!     opt.step()?;
//! }
//! # Ok(())
//! # }
//! ```

mod adam;
mod adamw;
mod clip;
mod rmsprop;
mod sgd;
mod state;

pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Error, Result, TorchContext};
use crate::store::Variable;
use std::collections::{BTreeMap, HashMap};
use tch::{COptimizer, TchError, Tensor};

/// An optimizer over an explicit list of variables.
pub trait Optimizer: Send {
    /// Applies one update to every variable from its current gradient, in place. Variables
    /// whose gradient is undefined are skipped (their state does not advance).
    ///
    /// # Errors
    /// [`Error::Config`] if the learning rate set by [`Optimizer::set_learning_rate`] is
    /// negative or not finite; [`Error::Torch`] naming the variable if libtorch fails.
    fn step(&mut self) -> Result<()>;

    /// Resets every variable's gradient to undefined (PyTorch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&mut self);

    /// The current learning rate.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate used by the following steps. It is checked by
    /// [`Optimizer::step`], which fails on a negative or non-finite rate.
    fn set_learning_rate(&mut self, lr: f64);

    /// The variables this optimizer updates, in the order given at construction.
    fn variables(&self) -> &[Variable];

    /// Every piece of state, as copies keyed `{variable name}/{slot}` with PyTorch's state
    /// keys as slots, in variable order, e.g. `gan/generator/linear/w/exp_avg`:
    ///
    /// | optimizer | slots per variable |
    /// |---|---|
    /// | [`Sgd`] | `momentum_buffer` (only with momentum) |
    /// | [`Adam`], [`AdamW`] | `step`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (only with AMSGrad) |
    /// | [`RmsProp`] | `step`, `square_avg`, `momentum_buffer` (only with momentum), `grad_avg` (only centered) |
    ///
    /// `step` (the variable's update count) is an int64 scalar (shape `[]`) on the CPU; the
    /// other slots have the variable's shape, kind and device. A variable that has not been
    /// updated yet has no state and no keys. Hyper-parameters (learning rate, betas) are
    /// configuration, not state, and are not included.
    ///
    /// # Errors
    /// [`Error::Torch`] if libtorch fails to copy a tensor (out of memory).
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>>;

    /// Replaces the whole state with `tensors`, as returned by
    /// [`Optimizer::state_tensors`] (for an optimizer of the same type and options over
    /// variables with the same names and shapes), so the following steps continue exactly
    /// where the saved optimizer left off.
    ///
    /// Strict: a variable with no key in `tensors` gets no state (it has not been updated
    /// yet; its first update starts from zero moments); a variable with any key must have
    /// every slot of the table above, each shaped like the variable, and `step` a scalar
    /// holding an integer in `[0, 2^31 - 1]` of any integer or floating kind (PyTorch keeps
    /// a float32 step). Every key must belong to a variable of this optimizer and a slot its
    /// options use (`max_exp_avg_sq` without AMSGrad is unexpected). Values are copied,
    /// converted to each variable's kind and device.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the optimizer (`"adam: state does not match the
    /// variables: missing (1): m/w/exp_avg_sq; unexpected (1): m/w/max_exp_avg_sq"`) that
    /// lists every missing key, unexpected key, shape mismatch and invalid step count; the
    /// state is unchanged on error. [`Error::Torch`] if a copy fails.
    fn load_state_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()>;
}

/// Checks an optimizer's variable list: not empty, every variable trainable, none listed twice.
fn check_variables(optimizer: &str, variables: &[Variable]) -> Result<()> {
    if variables.is_empty() {
        return Err(Error::config(
            optimizer,
            "the variable list is empty, so training would change nothing; build lazy modules \
             (call them once) before listing their variables, and declare a composite's parts \
             in Module::children",
        ));
    }
    // Same variable = same tensor (storage, offset, shape, strides); two stores may each hold
    // a variable of the same scoped name, which are different variables.
    let mut seen: HashMap<&str, Vec<&Variable>> = HashMap::new();
    for v in variables {
        if !v.trainable() {
            return Err(Error::config(
                optimizer,
                format!("variable {:?} is not trainable; pass the module's trainable_variables()", v.name()),
            ));
        }
        let same_name = seen.entry(v.name()).or_default();
        if same_name.iter().any(|u| u.tensor().is_set_to(v.tensor())) {
            return Err(Error::config(optimizer, format!("variable {:?} is listed twice", v.name())));
        }
        same_name.push(v);
    }
    Ok(())
}

/// Checks `lower <= value` (or `<` when `strict`), `value <= upper` (or `<`) and finiteness,
/// else an [`Error::Config`] such as `"adam: bad configuration: beta1 must be in [0, 1), got 1"`.
fn check_range(optimizer: &str, what: &str, value: f64, range: Range) -> Result<()> {
    let ok = value.is_finite()
        && match range {
            Range::NonNegative => value >= 0.0,
            Range::Positive => value > 0.0,
            Range::UnitClosed => (0.0..=1.0).contains(&value),
            Range::UnitHalfOpen => (0.0..1.0).contains(&value),
        };
    if ok {
        Ok(())
    } else {
        let expected = match range {
            Range::NonNegative => "finite and >= 0",
            Range::Positive => "finite and > 0",
            Range::UnitClosed => "in [0, 1]",
            Range::UnitHalfOpen => "in [0, 1)",
        };
        Err(Error::config(optimizer, format!("{what} must be {expected}, got {value}")))
    }
}

/// The accepted ranges of hyper-parameters.
#[derive(Clone, Copy)]
enum Range {
    NonNegative,
    /// Finite and > 0: a denominator's epsilon (0 gives 0/0 = NaN for a zero gradient).
    Positive,
    UnitClosed,
    UnitHalfOpen,
}

/// Checks the learning rate (finite and >= 0).
fn check_lr(optimizer: &str, lr: f64) -> Result<()> {
    check_range(optimizer, "learning_rate", lr, Range::NonNegative)
}

/// Resets gradients to undefined through libtorch's C++ optimizer, whose `zero_grad` has
/// `set_to_none = true` (tch's `Tensor::zero_grad` can only fill them with zeros).
struct GradReset {
    holder: COptimizer,
}

impl GradReset {
    fn new(optimizer: &str, variables: &[Variable]) -> Result<Self> {
        let mut holder = COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false).ctx(optimizer)?;
        for v in variables {
            holder.add_parameters(v.tensor(), 0).ctx(optimizer)?;
        }
        Ok(GradReset { holder })
    }

    fn reset(&self, variables: &[Variable]) {
        if self.holder.zero_grad().is_err() {
            // Not reachable in practice (the C++ call only touches gradients); fall back to
            // zero-filled gradients, which is still a valid reset for the next backward.
            for v in variables {
                v.tensor().shallow_clone().zero_grad();
            }
        }
    }
}

/// Runs `update(index, param, grad)` under `no_grad` for every variable whose gradient is
/// defined; libtorch errors name the optimizer and the variable.
fn for_each_grad(
    optimizer: &str,
    variables: &[Variable],
    mut update: impl FnMut(usize, &mut Tensor, &Tensor) -> std::result::Result<(), TchError>,
) -> Result<()> {
    tch::no_grad(|| {
        for (i, v) in variables.iter().enumerate() {
            let grad = v.tensor().grad();
            if !grad.defined() {
                continue;
            }
            let mut param = v.tensor().shallow_clone();
            update(i, &mut param, &grad).ctx(&format!("{optimizer} (variable {})", v.name()))?;
        }
        Ok(())
    })
}

/// `grad + weight_decay * param` (PyTorch's L2 term), or `grad` itself when the decay is 0.
fn with_l2(grad: &Tensor, param: &Tensor, weight_decay: f64) -> std::result::Result<Tensor, TchError> {
    if weight_decay == 0.0 {
        Ok(grad.shallow_clone())
    } else {
        grad.f_add(&param.f_mul_scalar(weight_decay)?)
    }
}

/// A new tensor holding a copy of `t` (PyTorch's `t.detach().clone()`).
fn copy_of(t: &Tensor) -> std::result::Result<Tensor, TchError> {
    let mut c = t.f_empty_like()?;
    c.f_copy_(t)?;
    Ok(c)
}

/// Formats variable names for `Debug`.
fn names(variables: &[Variable]) -> Vec<&str> {
    variables.iter().map(Variable::name).collect()
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::store::{Store, Variable};
    use tch::{Kind, Tensor};

    /// A store with one trainable variable `m/p` holding `values` (f32), and the variable.
    pub fn param(values: &[f32]) -> (Store, Variable) {
        let store = Store::cpu();
        let scope = store.root().child("m").unwrap();
        let mut t = scope.var("p", &[values.len() as i64]).create().unwrap();
        tch::no_grad(|| t.copy_(&Tensor::from_slice(values)));
        (store.clone(), store.get("m/p").unwrap())
    }

    /// Sets `v`'s gradient to exactly `g` (after a reset) by back-propagating `sum(v * g)`.
    pub fn set_grad(v: &Variable, g: &[f32]) {
        let mut t = v.tensor().shallow_clone();
        t.zero_grad();
        (v.tensor() * Tensor::from_slice(g)).sum(Kind::Float).backward();
    }

    /// The variable's values.
    pub fn values(v: &Variable) -> Vec<f64> {
        Vec::<f64>::try_from(v.tensor().to_kind(Kind::Double)).unwrap()
    }

    /// Asserts two slices agree to 1e-6.
    #[track_caller]
    pub fn assert_near(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= 1e-6 * (1.0 + e.abs()), "{actual:?} vs {expected:?}");
        }
    }
}

#[cfg(test)]
mod state_tests;

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::Store;

    #[test]
    fn non_trainable_and_duplicate_variables_are_config_errors() {
        let store = Store::cpu();
        let s = store.root().child("m").unwrap();
        let _ = s.var("w", &[2]).create().unwrap();
        let _ = s.var("frozen", &[2]).trainable(false).create().unwrap();
        let e = Sgd::new(store.variables(), SgdConfig::default()).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert_eq!(
            e.to_string(),
            "sgd: bad configuration: variable \"m/frozen\" is not trainable; \
             pass the module's trainable_variables()"
        );
        let w = store.get("m/w").unwrap();
        let e = Adam::new(vec![w.clone(), w.clone()], AdamConfig::default()).unwrap_err();
        assert_eq!(e.to_string(), "adam: bad configuration: variable \"m/w\" is listed twice");
        // Two stores may each have an `m/w`: different variables, both trained.
        let other = Store::cpu();
        let _ = other.root().child("m").unwrap().var("w", &[2]).create().unwrap();
        let mut opt = Sgd::new(vec![w.clone(), other.get("m/w").unwrap()], SgdConfig::new(1.0)).unwrap();
        let loss =
            w.tensor().sum(tch::Kind::Float) + other.get("m/w").unwrap().tensor().sum(tch::Kind::Float) * 2.0;
        loss.backward();
        opt.step().unwrap();
        assert_eq!(Vec::<f32>::try_from(w.tensor()).unwrap(), [-1.0, -1.0]);
        assert_eq!(Vec::<f32>::try_from(other.get("m/w").unwrap().tensor()).unwrap(), [-2.0, -2.0]);
    }

    #[test]
    fn every_optimizer_refuses_an_empty_variable_list() {
        let want = |name: &str| {
            format!(
                "{name}: bad configuration: the variable list is empty, so training would change nothing; \
                 build lazy modules (call them once) before listing their variables, and declare a \
                 composite's parts in Module::children"
            )
        };
        let errors = [
            ("adam", Adam::new(Vec::new(), AdamConfig::default()).map(|_| ())),
            ("adamw", AdamW::new(Vec::new(), AdamWConfig::default()).map(|_| ())),
            ("sgd", Sgd::new(Vec::new(), SgdConfig::default()).map(|_| ())),
            ("rmsprop", RmsProp::new(Vec::new(), RmsPropConfig::default()).map(|_| ())),
        ];
        for (name, result) in errors {
            let e = result.unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert_eq!(e.to_string(), want(name));
        }
    }

    #[test]
    fn zero_grad_makes_gradients_undefined_and_step_skips_them() {
        let (_store, p) = param(&[1.0, 2.0]);
        let mut opt = Sgd::new(vec![p.clone()], SgdConfig::new(0.5).with_momentum(0.9)).unwrap();
        set_grad(&p, &[1.0, 1.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[0.5, 1.5]);
        opt.zero_grad();
        assert!(!p.tensor().grad().defined());
        // With a zero-filled gradient momentum would still move p; an undefined one is skipped.
        opt.step().unwrap();
        assert_near(&values(&p), &[0.5, 1.5]);
    }

    #[test]
    fn learning_rate_can_be_read_and_set_and_is_checked_at_step() {
        let (_store, p) = param(&[1.0]);
        let mut opts: Vec<Box<dyn Optimizer>> = vec![
            Box::new(Sgd::new(vec![p.clone()], SgdConfig::new(0.1)).unwrap()),
            Box::new(Adam::new(vec![p.clone()], AdamConfig::new(0.1)).unwrap()),
            Box::new(AdamW::new(vec![p.clone()], AdamWConfig::new(0.1)).unwrap()),
            Box::new(RmsProp::new(vec![p.clone()], RmsPropConfig::new(0.1)).unwrap()),
        ];
        for opt in &mut opts {
            assert_eq!(opt.learning_rate(), 0.1);
            opt.set_learning_rate(0.25);
            assert_eq!(opt.learning_rate(), 0.25);
            set_grad(&p, &[1.0]);
            opt.set_learning_rate(-1.0);
            let e = opt.step().unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().ends_with("learning_rate must be finite and >= 0, got -1"), "{e}");
            opt.set_learning_rate(f64::NAN);
            assert!(opt.step().is_err());
        }
        // A rate of 0 is valid and leaves the variable where it is (SGD without decay).
        let before = values(&p);
        opts[0].set_learning_rate(0.0);
        opts[0].step().unwrap();
        assert_eq!(values(&p), before);
    }

    #[test]
    fn optimizers_are_send() {
        fn send<T: Send>() {}
        send::<Sgd>();
        send::<Adam>();
        send::<AdamW>();
        send::<RmsProp>();
        send::<Box<dyn Optimizer>>();
    }
}
