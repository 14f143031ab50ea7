//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
//! decay (`torch.optim.SGD`).

use super::{check_lr, check_range, check_variables, copy_of, for_each_grad, names, with_l2};
use super::{state, GradReset, Optimizer, Range};
use crate::error::{Error, Result};
use crate::store::Variable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

const NAME: &str = "sgd";

/// Configuration of [`Sgd`]. Defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SgdConfig {
    /// Learning rate `lr` (finite, >= 0). Default `1e-3`.
    pub learning_rate: f64,
    /// Momentum factor `μ` (finite, >= 0); 0 disables momentum. Default 0.
    pub momentum: f64,
    /// Dampening `τ` of the gradient added to the momentum buffer, in `[0, 1]`. Default 0.
    pub dampening: f64,
    /// L2 penalty `λ` added to the gradient, `g + λ p` (finite, >= 0). Default 0.
    pub weight_decay: f64,
    /// Nesterov momentum; needs `momentum > 0` and `dampening = 0`. Default `false`.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { learning_rate: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

impl SgdConfig {
    /// A config with learning rate `learning_rate` and every other field at its default.
    pub fn new(learning_rate: f64) -> Self {
        SgdConfig { learning_rate, ..Default::default() }
    }
    /// Sets the momentum factor.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets the dampening.
    pub fn with_dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Sets Nesterov momentum.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn validate(&self) -> Result<()> {
        check_lr(NAME, self.learning_rate)?;
        check_range(NAME, "momentum", self.momentum, Range::NonNegative)?;
        check_range(NAME, "dampening", self.dampening, Range::UnitClosed)?;
        check_range(NAME, "weight_decay", self.weight_decay, Range::NonNegative)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::config(
                NAME,
                format!(
                    "nesterov needs momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }
}

/// Stochastic gradient descent, exactly `torch.optim.SGD` (without `maximize`). For each
/// variable `p` with gradient `g`:
///
/// ```text
/// g ← g + λ p                                   (weight_decay λ ≠ 0)
/// b ← g                    at the first update  (momentum μ ≠ 0)
/// b ← μ b + (1 − τ) g      afterwards
/// g ← g + μ b  (nesterov)  or  g ← b
/// p ← p − lr g
/// ```
///
/// State: one momentum buffer `b` per variable (only with momentum), created at the
/// variable's first update as a copy of its gradient (no dampening on that step); its state
/// key is `{variable}/momentum_buffer`, as in PyTorch (no step count).
///
/// TF/Keras differ: `tf.train.MomentumOptimizer` matches for a constant rate, but Keras' SGD
/// keeps `lr` inside the velocity (`v ← μ v − lr g`), so the two diverge when the rate changes
/// during training; TF has no dampening, and its weight decay is a loss term, not part of `g`.
pub struct Sgd {
    config: SgdConfig,
    variables: Vec<Variable>,
    buffers: Vec<Option<Tensor>>,
    reset: GradReset,
}

impl std::fmt::Debug for Sgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sgd")
            .field("config", &self.config)
            .field("variables", &names(&self.variables))
            .finish()
    }
}

impl Sgd {
    /// An SGD optimizer over `variables` (usually `module.trainable_variables()?`).
    ///
    /// # Errors
    /// [`Error::Config`] naming `sgd` for an out-of-range hyper-parameter, Nesterov without
    /// momentum or with dampening, an empty variable
    /// list, a variable that is not trainable, or one listed twice.
    pub fn new(variables: Vec<Variable>, config: SgdConfig) -> Result<Self> {
        config.validate()?;
        check_variables(NAME, &variables)?;
        let reset = GradReset::new(NAME, &variables)?;
        let buffers = variables.iter().map(|_| None).collect();
        Ok(Sgd { config, variables, buffers, reset })
    }

    /// The configuration (its learning rate follows [`Optimizer::set_learning_rate`]).
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

const SLOTS: &[&str] = &["momentum_buffer"];

impl Optimizer for Sgd {
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (v, b) in self.variables.iter().zip(&self.buffers) {
            if let Some(b) = b {
                out.extend(state::entries(NAME, v, None, &[(SLOTS[0], b)])?);
            }
        }
        Ok(out)
    }

    fn load_state_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let slots = if self.config.momentum != 0.0 { SLOTS } else { &[] };
        let loaded = state::load(NAME, &self.variables, false, slots, tensors)?;
        self.buffers = loaded.into_iter().map(|l| l.map(|l| l.slot(0))).collect();
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        let c = &self.config;
        check_lr(NAME, c.learning_rate)?;
        let buffers = &mut self.buffers;
        for_each_grad(NAME, &self.variables, |i, p, g| {
            let mut g = with_l2(g, p, c.weight_decay)?;
            if c.momentum != 0.0 {
                let buf = match &mut buffers[i] {
                    Some(buf) => {
                        let _ = buf.f_mul_scalar_(c.momentum)?;
                        let _ = buf.f_add_(&g.f_mul_scalar(1.0 - c.dampening)?)?;
                        buf.shallow_clone()
                    }
                    slot @ None => slot.insert(copy_of(&g)?).shallow_clone(),
                };
                g = if c.nesterov { g.f_add(&buf.f_mul_scalar(c.momentum)?)? } else { buf };
            }
            let _ = p.f_sub_(&g.f_mul_scalar(c.learning_rate)?)?;
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

    #[test]
    fn plain_step_by_hand() {
        let (_s, p) = param(&[1.0, -2.0]);
        let mut opt = Sgd::new(vec![p.clone()], SgdConfig::new(0.1)).unwrap();
        set_grad(&p, &[2.0, 4.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[0.8, -2.4]);
    }

    #[test]
    fn momentum_dampening_and_weight_decay_by_hand() {
        let (_s, p) = param(&[1.0]);
        let config = SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.5).with_weight_decay(0.1);
        let mut opt = Sgd::new(vec![p.clone()], config).unwrap();
        // Step 1: g = 1 + 0.1·1 = 1.1; b = g (no dampening at the first step); p = 1 − 0.11.
        set_grad(&p, &[1.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[0.89]);
        // Step 2: g = 1 + 0.1·0.89 = 1.089; b = 0.9·1.1 + 0.5·1.089 = 1.5345; p = 0.89 − 0.15345.
        set_grad(&p, &[1.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[0.73655]);
    }

    #[test]
    fn nesterov_by_hand() {
        let (_s, p) = param(&[0.0]);
        let config = SgdConfig::new(1.0).with_momentum(0.5).with_nesterov(true);
        let mut opt = Sgd::new(vec![p.clone()], config).unwrap();
        // Step 1: b = 2, update g + μ b = 2 + 1 = 3.
        set_grad(&p, &[2.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-3.0]);
        // Step 2: b = 0.5·2 + 4 = 5, update 4 + 2.5 = 6.5.
        set_grad(&p, &[4.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[-9.5]);
    }

    #[test]
    fn invalid_hyper_parameters_are_config_errors() {
        let bad = [
            (SgdConfig::new(-0.1), "sgd: bad configuration: learning_rate must be finite and >= 0, got -0.1"),
            (SgdConfig::new(0.1).with_momentum(-1.0), "sgd: bad configuration: momentum must be finite and >= 0, got -1"),
            (SgdConfig::new(0.1).with_dampening(1.5), "sgd: bad configuration: dampening must be in [0, 1], got 1.5"),
            (SgdConfig::new(0.1).with_weight_decay(f64::INFINITY), "sgd: bad configuration: weight_decay must be finite and >= 0, got inf"),
            (
                SgdConfig::new(0.1).with_nesterov(true),
                "sgd: bad configuration: nesterov needs momentum > 0 and dampening = 0, got momentum 0 and dampening 0",
            ),
            (
                SgdConfig::new(0.1).with_nesterov(true).with_momentum(0.9).with_dampening(0.1),
                "sgd: bad configuration: nesterov needs momentum > 0 and dampening = 0, got momentum 0.9 and dampening 0.1",
            ),
        ];
        for (config, message) in bad {
            let e = Sgd::new(Vec::new(), config).unwrap_err();
            assert!(matches!(e, Error::Config { .. }));
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn config_defaults_are_pytorch_and_round_trip_through_serde() {
        let c = SgdConfig::default();
        assert_eq!(
            (c.learning_rate, c.momentum, c.dampening, c.weight_decay, c.nesterov),
            (1e-3, 0.0, 0.0, 0.0, false)
        );
        let c: SgdConfig = serde_json::from_str(r#"{"momentum": 0.9}"#).unwrap();
        assert_eq!(c, SgdConfig::default().with_momentum(0.9));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SgdConfig>(&json).unwrap(), c);
    }
}
