//! RMSProp with momentum and the centered variant (`torch.optim.RMSprop`).

use super::state::{self, Loaded};
use super::{check_lr, check_range, check_variables, for_each_grad, names, with_l2};
use super::{GradReset, Optimizer, Range};
use crate::error::Result;
use crate::store::Variable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{TchError, Tensor};

const NAME: &str = "rmsprop";

/// Configuration of [`RmsProp`]. Defaults are PyTorch's (TF/Keras: `rho = 0.9`, see
/// [`RmsProp`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RmsPropConfig {
    /// Learning rate `lr` (finite, >= 0). Default `1e-2`.
    pub learning_rate: f64,
    /// Smoothing constant `α` of the squared-gradient average (TF's `rho`/`decay`), in
    /// `[0, 1]`. Default 0.99.
    pub alpha: f64,
    /// `ε` added to the root (outside the square root; finite, >= 0). Default `1e-8`.
    pub eps: f64,
    /// L2 penalty `λ` added to the gradient, `g + λ p` (finite, >= 0). Default 0.
    pub weight_decay: f64,
    /// Momentum factor `μ` (finite, >= 0); 0 disables momentum. Default 0.
    pub momentum: f64,
    /// Centered RMSProp: normalise by an estimate of the variance instead of the second
    /// moment. Default `false`.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            learning_rate: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropConfig {
    /// A config with learning rate `learning_rate` and every other field at its default.
    pub fn new(learning_rate: f64) -> Self {
        RmsPropConfig { learning_rate, ..Default::default() }
    }
    /// Sets the smoothing constant `α`.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
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
    /// Sets the momentum factor.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets the centered variant.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    fn validate(&self) -> Result<()> {
        check_lr(NAME, self.learning_rate)?;
        check_range(NAME, "alpha", self.alpha, Range::UnitClosed)?;
        check_range(NAME, "eps", self.eps, Range::Positive)?;
        check_range(NAME, "weight_decay", self.weight_decay, Range::NonNegative)?;
        check_range(NAME, "momentum", self.momentum, Range::NonNegative)
    }
}

/// One variable's RMSProp state.
struct RmsState {
    /// Update count: not used by the update, kept (as PyTorch does) so states interchange.
    step: i64,
    square_avg: Tensor,
    grad_avg: Option<Tensor>,
    buffer: Option<Tensor>,
}

impl RmsState {
    fn new(p: &Tensor, c: &RmsPropConfig) -> std::result::Result<Self, TchError> {
        Ok(RmsState {
            step: 0,
            square_avg: p.f_zeros_like()?,
            grad_avg: if c.centered { Some(p.f_zeros_like()?) } else { None },
            buffer: if c.momentum > 0.0 { Some(p.f_zeros_like()?) } else { None },
        })
    }

    /// The state slots besides `step` for `c`, PyTorch's names, in the order of `slots()`.
    fn slot_names(c: &RmsPropConfig) -> Vec<&'static str> {
        let mut names = vec!["square_avg"];
        if c.momentum > 0.0 {
            names.push("momentum_buffer");
        }
        if c.centered {
            names.push("grad_avg");
        }
        names
    }

    /// The state tensors with their slot names.
    fn slots(&self) -> Vec<(&'static str, &Tensor)> {
        let mut slots = vec![("square_avg", &self.square_avg)];
        slots.extend(self.buffer.as_ref().map(|t| ("momentum_buffer", t)));
        slots.extend(self.grad_avg.as_ref().map(|t| ("grad_avg", t)));
        slots
    }

    /// A variable's state from the slots loaded for [`RmsState::slot_names`].
    fn from_loaded(l: Loaded, c: &RmsPropConfig) -> Self {
        let buffer = (c.momentum > 0.0).then(|| l.slot(1));
        let grad_avg = c.centered.then(|| l.slot(1 + usize::from(buffer.is_some())));
        RmsState { step: l.step, square_avg: l.slot(0), grad_avg, buffer }
    }
}

/// RMSProp (Hinton 2012; centered: Graves 2013), exactly `torch.optim.RMSprop` (without
/// `maximize`). For each variable `p` with gradient `g`:
///
/// ```text
/// g ← g + λ p                                     (weight_decay λ ≠ 0)
/// s ← α s + (1 − α) g²
/// a ← α a + (1 − α) g,   d ← √(s − a²) + ε       (centered)
///                        d ← √s + ε               (otherwise)
/// b ← μ b + g / d,  p ← p − lr b                  (momentum μ > 0)
/// p ← p − lr g / d                                (otherwise)
/// ```
///
/// State per variable (from its first update, all zeros at first): `s`, and `a` when
/// centered, and the buffer `b` with momentum (state keys `square_avg`, `grad_avg`,
/// `momentum_buffer`), and an update count `step` as PyTorch keeps.
///
/// TF/Keras differ: `ε` goes *inside* the square root (`√(s + ε)`), the defaults are
/// `rho = 0.9` and `ε = 1e-10` (TF 1.x) or `1e-7` (Keras), the momentum buffer includes the
/// learning rate (`b ← μ b + lr g / d`, `p ← p − b`), and TF 1.x `RMSPropOptimizer` starts
/// `s` at ones rather than zeros.
pub struct RmsProp {
    config: RmsPropConfig,
    variables: Vec<Variable>,
    state: Vec<Option<RmsState>>,
    reset: GradReset,
}

impl std::fmt::Debug for RmsProp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmsProp")
            .field("config", &self.config)
            .field("variables", &names(&self.variables))
            .finish()
    }
}

impl RmsProp {
    /// An RMSProp optimizer over `variables` (usually `module.trainable_variables()?`).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming `rmsprop` for an out-of-range
    /// hyper-parameter (`lr`, `eps`, `weight_decay` or `momentum` negative, `alpha` outside
    /// `[0, 1]`, or a non-finite value), an empty variable
    /// list, a variable that is not trainable, or one listed twice.
    pub fn new(variables: Vec<Variable>, config: RmsPropConfig) -> Result<Self> {
        config.validate()?;
        check_variables(NAME, &variables)?;
        let reset = GradReset::new(NAME, &variables)?;
        let state = variables.iter().map(|_| None).collect();
        Ok(RmsProp { config, variables, state, reset })
    }

    /// The configuration (its learning rate follows [`Optimizer::set_learning_rate`]).
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }
}

impl Optimizer for RmsProp {
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (v, s) in self.variables.iter().zip(&self.state) {
            if let Some(s) = s {
                out.extend(state::entries(NAME, v, Some(s.step), &s.slots())?);
            }
        }
        Ok(out)
    }

    fn load_state_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let c = &self.config;
        let loaded = state::load(NAME, &self.variables, true, &RmsState::slot_names(c), tensors)?;
        self.state = loaded.into_iter().map(|l| l.map(|l| RmsState::from_loaded(l, c))).collect();
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        let c = &self.config;
        check_lr(NAME, c.learning_rate)?;
        let state = &mut self.state;
        for_each_grad(NAME, &self.variables, |i, p, g| {
            let s = match &mut state[i] {
                Some(s) => s,
                slot @ None => slot.insert(RmsState::new(p, c)?),
            };
            s.step += 1;
            let g = with_l2(g, p, c.weight_decay)?;
            let _ = s.square_avg.f_mul_scalar_(c.alpha)?;
            let _ = s.square_avg.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - c.alpha)?)?;
            let mut avg = match &mut s.grad_avg {
                Some(a) => {
                    let _ = a.f_lerp_(&g, 1.0 - c.alpha)?;
                    s.square_avg.f_sub(&a.f_mul(a)?)?.f_sqrt()?
                }
                None => s.square_avg.f_sqrt()?,
            };
            let _ = avg.f_add_scalar_(c.eps)?;
            match &mut s.buffer {
                Some(b) => {
                    let _ = b.f_mul_scalar_(c.momentum)?;
                    let _ = b.f_add_(&g.f_div(&avg)?)?;
                    let _ = p.f_sub_(&b.f_mul_scalar(c.learning_rate)?)?;
                }
                None => {
                    let _ = p.f_sub_(&g.f_div(&avg)?.f_mul_scalar(c.learning_rate)?)?;
                }
            }
            Ok(())
        })
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
    fn plain_step_by_hand_has_eps_outside_the_root() {
        let (_s, p) = param(&[1.0]);
        let config = RmsPropConfig::new(0.1).with_alpha(0.75).with_eps(0.5);
        let mut opt = RmsProp::new(vec![p.clone()], config).unwrap();
        // s = 0.25 · 4 = 1; p ← 1 − 0.1 · 2 / (√1 + 0.5). (TF: 2 / √1.5.)
        set_grad(&p, &[2.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[1.0 - 0.2 / 1.5]);
    }

    #[test]
    fn centered_with_momentum_by_hand() {
        let (_s, p) = param(&[0.0]);
        let config =
            RmsPropConfig::new(1.0).with_alpha(0.5).with_eps(1e-30).with_momentum(0.5).with_centered(true);
        let mut opt = RmsProp::new(vec![p.clone()], config).unwrap();
        // Step 1: s = 2, a = 1, d = √(2 − 1) = 1, b = 2, p = −2.
        set_grad(&p, &[2.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-2.0]);
        // Step 2: g = 4: s = 1 + 8 = 9, a = 0.5 + 2 = 2.5, d = √(9 − 6.25) = √2.75,
        // b = 1 + 4 / √2.75, p = −2 − b.
        set_grad(&p, &[4.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-3.0 - 4.0 / 2.75f64.sqrt()]);
    }

    #[test]
    fn defaults_and_errors() {
        let c = RmsPropConfig::default();
        assert_eq!((c.learning_rate, c.alpha, c.eps, c.momentum, c.centered), (1e-2, 0.99, 1e-8, 0.0, false));
        let e = RmsProp::new(Vec::new(), RmsPropConfig::new(0.1).with_alpha(1.5)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert_eq!(e.to_string(), "rmsprop: bad configuration: alpha must be in [0, 1], got 1.5");
        let e = RmsProp::new(Vec::new(), RmsPropConfig::new(0.1).with_momentum(-0.5)).unwrap_err();
        assert_eq!(e.to_string(), "rmsprop: bad configuration: momentum must be finite and >= 0, got -0.5");
        let e = RmsProp::new(Vec::new(), RmsPropConfig::new(0.1).with_eps(-1.0)).unwrap_err();
        assert_eq!(e.to_string(), "rmsprop: bad configuration: eps must be finite and > 0, got -1");
    }
}
