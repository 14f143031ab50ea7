//! Adam with L2 weight decay and AMSGrad (`torch.optim.Adam`), and the update shared with
//! [`AdamW`](super::AdamW).

use super::state::{self, Loaded};
use super::{check_lr, check_range, check_variables, for_each_grad, names, with_l2};
use super::{GradReset, Optimizer, Range};
use crate::error::Result;
use crate::store::Variable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

const NAME: &str = "adam";

/// Configuration of [`Adam`]. Defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    /// Learning rate `lr` (finite, >= 0). Default `1e-3`.
    pub learning_rate: f64,
    /// Decay `β1` of the first moment, in `[0, 1)`. Default 0.9.
    pub beta1: f64,
    /// Decay `β2` of the second moment, in `[0, 1)`. Default 0.999.
    pub beta2: f64,
    /// `ε` added to the bias-corrected `√v` (finite, >= 0). Default `1e-8`.
    pub eps: f64,
    /// L2 penalty `λ` added to the gradient, `g + λ p` (finite, >= 0). Default 0.
    /// For decoupled weight decay use [`AdamW`](super::AdamW).
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment. Default `false`.
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

impl AdamConfig {
    /// A config with learning rate `learning_rate` and every other field at its default.
    pub fn new(learning_rate: f64) -> Self {
        AdamConfig { learning_rate, ..Default::default() }
    }
    /// Sets `β1` and `β2`.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Sets `ε`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Sets AMSGrad.
    pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }
}

/// Adam's hyper-parameters, with the weight decay's kind: shared by [`Adam`] and `AdamW`.
pub(super) struct AdamHyper {
    pub(super) learning_rate: f64,
    pub(super) beta1: f64,
    pub(super) beta2: f64,
    pub(super) eps: f64,
    pub(super) weight_decay: f64,
    pub(super) amsgrad: bool,
    pub(super) decoupled: bool,
}

impl AdamHyper {
    pub(super) fn validate(&self, optimizer: &str) -> Result<()> {
        check_lr(optimizer, self.learning_rate)?;
        check_range(optimizer, "beta1", self.beta1, Range::UnitHalfOpen)?;
        check_range(optimizer, "beta2", self.beta2, Range::UnitHalfOpen)?;
        check_range(optimizer, "eps", self.eps, Range::Positive)?;
        check_range(optimizer, "weight_decay", self.weight_decay, Range::NonNegative)
    }
}

/// One variable's Adam state.
pub(super) struct Moments {
    step: i32,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

impl Moments {
    fn new(p: &Tensor, amsgrad: bool) -> std::result::Result<Self, TchError> {
        Ok(Moments {
            step: 0,
            exp_avg: p.f_zeros_like()?,
            exp_avg_sq: p.f_zeros_like()?,
            max_exp_avg_sq: if amsgrad { Some(p.f_zeros_like()?) } else { None },
        })
    }

    /// A variable's state from loaded slots `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq`).
    fn from_loaded(l: Loaded, amsgrad: bool) -> Self {
        Moments {
            step: l.step_i32(),
            exp_avg: l.slot(0),
            exp_avg_sq: l.slot(1),
            max_exp_avg_sq: amsgrad.then(|| l.slot(2)),
        }
    }
}

/// The state slots of Adam/AdamW besides `step`, PyTorch's names.
fn slot_names(amsgrad: bool) -> &'static [&'static str] {
    if amsgrad {
        &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    } else {
        &["exp_avg", "exp_avg_sq"]
    }
}

/// Adam/AdamW's [`Optimizer::state_tensors`].
pub(super) fn adam_state(
    optimizer: &str,
    variables: &[Variable],
    moments: &[Option<Moments>],
) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (v, m) in variables.iter().zip(moments) {
        let Some(m) = m else { continue };
        let mut slots = vec![("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)];
        slots.extend(m.max_exp_avg_sq.as_ref().map(|t| ("max_exp_avg_sq", t)));
        out.extend(state::entries(optimizer, v, Some(m.step.into()), &slots)?);
    }
    Ok(out)
}

/// Adam/AdamW's [`Optimizer::load_state_tensors`].
pub(super) fn load_adam_state(
    optimizer: &str,
    amsgrad: bool,
    variables: &[Variable],
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Vec<Option<Moments>>> {
    let loaded = state::load(optimizer, variables, true, slot_names(amsgrad), tensors)?;
    Ok(loaded.into_iter().map(|l| l.map(|l| Moments::from_loaded(l, amsgrad))).collect())
}

/// One Adam/AdamW step over `variables`, PyTorch's `_single_tensor_adam`.
pub(super) fn adam_step(
    optimizer: &str,
    h: &AdamHyper,
    variables: &[Variable],
    state: &mut [Option<Moments>],
) -> Result<()> {
    check_lr(optimizer, h.learning_rate)?;
    for_each_grad(optimizer, variables, |i, p, g| {
        let s = match &mut state[i] {
            Some(s) => s,
            slot @ None => slot.insert(Moments::new(p, h.amsgrad)?),
        };
        s.step += 1;
        let g = if h.decoupled {
            if h.weight_decay != 0.0 {
                let _ = p.f_mul_scalar_(1.0 - h.learning_rate * h.weight_decay)?;
            }
            g.shallow_clone()
        } else {
            with_l2(g, p, h.weight_decay)?
        };
        let _ = s.exp_avg.f_lerp_(&g, 1.0 - h.beta1)?;
        let _ = s.exp_avg_sq.f_mul_scalar_(h.beta2)?;
        let _ = s.exp_avg_sq.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - h.beta2)?)?;
        let bias_correction1 = 1.0 - h.beta1.powi(s.step);
        let bias_correction2 = 1.0 - h.beta2.powi(s.step);
        let step_size = h.learning_rate / bias_correction1;
        let second = match &mut s.max_exp_avg_sq {
            Some(max) => {
                let m = max.f_maximum(&s.exp_avg_sq)?;
                max.f_copy_(&m)?;
                max.shallow_clone()
            }
            None => s.exp_avg_sq.shallow_clone(),
        };
        let denom = second.f_sqrt()?.f_div_scalar(bias_correction2.sqrt())?.f_add_scalar(h.eps)?;
        let _ = p.f_sub_(&s.exp_avg.f_div(&denom)?.f_mul_scalar(step_size)?)?;
        Ok(())
    })
}

/// Adam (Kingma & Ba 2015), exactly `torch.optim.Adam` (without `maximize`). For each
/// variable `p` with gradient `g`, at its `t`-th update:
///
/// ```text
/// g ← g + λ p                         (weight_decay λ ≠ 0, plain L2)
/// m ← β1 m + (1 − β1) g
/// v ← β2 v + (1 − β2) g²
/// v̂ ← max(v̂, v)  (amsgrad)  or  v̂ ← v
/// p ← p − lr / (1 − β1ᵗ) · m / (√v̂ / √(1 − β2ᵗ) + ε)
/// ```
///
/// State per variable (from its first update): the step count `t`, `m` and `v` (zeros at
/// first) and, with AMSGrad, the running maximum `v̂`.
///
/// TF/Keras differ: `ε` is added to the *uncorrected* `√v` (`p ← p − lr_t m / (√v + ε)` with
/// `lr_t = lr √(1 − β2ᵗ) / (1 − β1ᵗ)`), which equals PyTorch's with `ε √(1 − β2ᵗ)`; Keras'
/// default `ε` is `1e-7`; TF's Adam has no weight-decay term.
pub struct Adam {
    config: AdamConfig,
    variables: Vec<Variable>,
    state: Vec<Option<Moments>>,
    reset: GradReset,
}

impl std::fmt::Debug for Adam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adam")
            .field("config", &self.config)
            .field("variables", &names(&self.variables))
            .finish()
    }
}

impl Adam {
    /// An Adam optimizer over `variables` (usually `module.trainable_variables()?`).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming `adam` for an out-of-range
    /// hyper-parameter (`lr < 0`, betas outside `[0, 1)`, `eps <= 0`, `weight_decay < 0`, or a
    /// non-finite value), an empty variable
    /// list, a variable that is not trainable, or one listed twice.
    pub fn new(variables: Vec<Variable>, config: AdamConfig) -> Result<Self> {
        hyper(&config).validate(NAME)?;
        check_variables(NAME, &variables)?;
        let reset = GradReset::new(NAME, &variables)?;
        let state = variables.iter().map(|_| None).collect();
        Ok(Adam { config, variables, state, reset })
    }

    /// The configuration (its learning rate follows [`Optimizer::set_learning_rate`]).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

fn hyper(c: &AdamConfig) -> AdamHyper {
    AdamHyper {
        learning_rate: c.learning_rate,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weight_decay: c.weight_decay,
        amsgrad: c.amsgrad,
        decoupled: false,
    }
}

impl Optimizer for Adam {
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        adam_state(NAME, &self.variables, &self.state)
    }

    fn load_state_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        self.state = load_adam_state(NAME, self.config.amsgrad, &self.variables, tensors)?;
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        adam_step(NAME, &hyper(&self.config), &self.variables, &mut self.state)
    }

    fn zero_grad(&mut self) {
        self.reset.reset(&self.variables);
    }

    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.learning_rate = lr;
    }

    fn variables(&self) -> &[Variable] {
        &self.variables
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::Error;

    #[test]
    fn first_steps_by_hand() {
        let (_s, p) = param(&[1.0, 1.0]);
        let mut opt = Adam::new(vec![p.clone()], AdamConfig::new(0.1)).unwrap();
        // Step 1: m̂ = g, v̂ = g², so the step is lr · g / (|g| + ε) ≈ lr · sign(g).
        set_grad(&p, &[2.0, -0.5]);
        opt.step().unwrap();
        let e1 = 0.1 * 2.0 / (2.0 + 1e-8);
        assert_near(&values(&p), &[1.0 - e1, 1.0 + 0.1 * 0.5 / (0.5 + 1e-8)]);
        // Step 2 (first element): m = 0.9·0.1·2 + 0.1·1 = 0.28; v = 0.999·0.001·4 + 0.001·1.
        set_grad(&p, &[1.0, 0.0]);
        opt.step().unwrap();
        let (m, v) = (0.28_f64, 0.999 * 0.004 + 0.001);
        let step = 0.1 / (1.0 - 0.81) * m / ((v / (1.0 - 0.999f64.powi(2))).sqrt() + 1e-8);
        assert_near(&values(&p)[..1], &[1.0 - e1 - step]);
    }

    #[test]
    fn amsgrad_keeps_the_largest_second_moment() {
        let (_s, p) = param(&[0.0]);
        let config = AdamConfig::new(1.0).with_betas(0.0, 0.5).with_amsgrad(true).with_eps(1e-30);
        let mut opt = Adam::new(vec![p.clone()], config).unwrap();
        // β1 = 0: m = g. Step 1: v = 0.5·16 = 8, v̂ = 8, bc2 = 0.5: p −= 4 / √16 = 1.
        set_grad(&p, &[4.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-1.0]);
        // Step 2: v = 4 + 0.5 = 4.5 < v̂ = 8, bc2 = 0.75: p −= 1 / √(8 / 0.75).
        set_grad(&p, &[1.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-1.0 - 1.0 / (8.0f64 / 0.75).sqrt()]);
    }

    #[test]
    fn a_variable_without_gradient_keeps_its_step_count() {
        let (store, p) = param(&[0.0]);
        let q = {
            let mut t = store.root().child("n").unwrap().var("q", &[1]).create().unwrap();
            tch::no_grad(|| t.copy_(&Tensor::from_slice(&[0.0f32])));
            store.get("n/q").unwrap()
        };
        let config = AdamConfig::new(1.0).with_betas(0.5, 0.5).with_eps(1e-30);
        let mut opt = Adam::new(vec![p.clone(), q.clone()], config).unwrap();
        set_grad(&p, &[1.0]);
        opt.step().unwrap();
        assert_near(&values(&q), &[0.0]);
        opt.zero_grad();
        set_grad(&p, &[1.0]);
        set_grad(&q, &[1.0]);
        opt.step().unwrap();
        // q's first update (t = 1) moves it by exactly lr; p's second (t = 2, same g) also by lr.
        assert_near(&values(&q), &[-1.0]);
        assert_near(&values(&p), &[-2.0]);
    }

    #[test]
    fn invalid_hyper_parameters_are_config_errors() {
        let bad = [
            (AdamConfig::new(-1.0), "learning_rate must be finite and >= 0, got -1"),
            (AdamConfig::new(0.1).with_betas(1.0, 0.9), "beta1 must be in [0, 1), got 1"),
            (AdamConfig::new(0.1).with_betas(0.9, -0.1), "beta2 must be in [0, 1), got -0.1"),
            (AdamConfig::new(0.1).with_eps(-1e-8), "eps must be finite and > 0, got -0.00000001"),
            // eps = 0 divides 0 by 0 for a zero gradient: NaN weights.
            (AdamConfig::new(0.1).with_eps(0.0), "eps must be finite and > 0, got 0"),
            (
                AdamConfig::new(0.1).with_weight_decay(f64::NAN),
                "weight_decay must be finite and >= 0, got NaN",
            ),
        ];
        for (config, message) in bad {
            let e = Adam::new(Vec::new(), config).unwrap_err();
            assert!(matches!(e, Error::Config { .. }));
            assert_eq!(e.to_string(), format!("adam: bad configuration: {message}"));
        }
    }

    #[test]
    fn config_defaults_are_pytorch() {
        let c = AdamConfig::default();
        assert_eq!((c.learning_rate, c.beta1, c.beta2, c.eps), (1e-3, 0.9, 0.999, 1e-8));
        assert_eq!((c.weight_decay, c.amsgrad), (0.0, false));
        let c: AdamConfig = serde_json::from_str(r#"{"amsgrad": true, "beta2": 0.99}"#).unwrap();
        assert_eq!(c, AdamConfig::default().with_amsgrad(true).with_betas(0.9, 0.99));
    }
}
