//! Adam with decoupled weight decay (`torch.optim.AdamW`, Loshchilov & Hutter 2019).

use super::adam::{adam_state, adam_step, load_adam_state, AdamHyper, Moments};
use super::{check_variables, names, GradReset, Optimizer};
use crate::error::Result;
use crate::store::Variable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

const NAME: &str = "adamw";

/// Configuration of [`AdamW`]. Defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Learning rate `lr` (finite, >= 0). Default `1e-3`.
    pub learning_rate: f64,
    /// Decay `β1` of the first moment, in `[0, 1)`. Default 0.9.
    pub beta1: f64,
    /// Decay `β2` of the second moment, in `[0, 1)`. Default 0.999.
    pub beta2: f64,
    /// `ε` added to the bias-corrected `√v` (finite, >= 0). Default `1e-8`.
    pub eps: f64,
    /// Decoupled weight decay `λ`: `p ← p (1 − lr λ)` before the Adam step (finite, >= 0).
    /// Default `1e-2` (Keras' `AdamW` defaults to `0.004`).
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment. Default `false`.
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

impl AdamWConfig {
    /// A config with learning rate `learning_rate` and every other field at its default.
    pub fn new(learning_rate: f64) -> Self {
        AdamWConfig { learning_rate, ..Default::default() }
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
    /// Sets the decoupled weight decay.
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

fn hyper(c: &AdamWConfig) -> AdamHyper {
    AdamHyper {
        learning_rate: c.learning_rate,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weight_decay: c.weight_decay,
        amsgrad: c.amsgrad,
        decoupled: true,
    }
}

/// AdamW, exactly `torch.optim.AdamW` (without `maximize`): first `p ← p (1 − lr λ)`, then
/// the [`Adam`](super::Adam) update with the raw gradient (no L2 term). The decay uses the
/// current learning rate, so schedules scale it too.
///
/// State per variable (from its first update): the step count and Adam's moments (and the
/// AMSGrad maximum).
///
/// TF/Keras differ: Keras' `AdamW` decays the same way (`p ← p − lr λ p`) but defaults to
/// `λ = 0.004` and `ε = 1e-7`, and adds `ε` to the uncorrected `√v` (see [`Adam`](super::Adam)).
pub struct AdamW {
    config: AdamWConfig,
    variables: Vec<Variable>,
    state: Vec<Option<Moments>>,
    reset: GradReset,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("variables", &names(&self.variables))
            .finish()
    }
}

impl AdamW {
    /// An AdamW optimizer over `variables` (usually `module.trainable_variables()?`).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming `adamw` for an out-of-range
    /// hyper-parameter (`lr < 0`, betas outside `[0, 1)`, `eps <= 0`, `weight_decay < 0`, or a
    /// non-finite value), an empty variable
    /// list, a variable that is not trainable, or one listed twice.
    pub fn new(variables: Vec<Variable>, config: AdamWConfig) -> Result<Self> {
        hyper(&config).validate(NAME)?;
        check_variables(NAME, &variables)?;
        let reset = GradReset::new(NAME, &variables)?;
        let state = variables.iter().map(|_| None).collect();
        Ok(AdamW { config, variables, state, reset })
    }

    /// The configuration (its learning rate follows [`Optimizer::set_learning_rate`]).
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

impl Optimizer for AdamW {
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
    fn decay_is_applied_to_the_weights_not_the_gradient() {
        let (_s, p) = param(&[2.0]);
        let config = AdamWConfig::new(0.1).with_weight_decay(0.5).with_eps(1e-30);
        let mut opt = AdamW::new(vec![p.clone()], config).unwrap();
        // p ← 2 (1 − 0.05) = 1.9, then the first Adam step moves it by lr · sign(g) = 0.1.
        // Adam's L2 term would instead give 2 − 0.1 = 1.9.
        set_grad(&p, &[3.0]);
        opt.step().unwrap();
        assert_near(&values(&p), &[1.8]);
        // A zero gradient leaves only the decay: 4 (1 − 0.05) = 3.8 (L2 would give 3.9).
        let (_s, q) = param(&[4.0]);
        let mut opt = AdamW::new(vec![q.clone()], AdamWConfig::new(0.1).with_weight_decay(0.5)).unwrap();
        set_grad(&q, &[0.0]);
        opt.step().unwrap();
        assert_near(&values(&q), &[3.8]);
    }

    #[test]
    fn defaults_and_errors() {
        let c = AdamWConfig::default();
        assert_eq!(
            (c.learning_rate, c.beta1, c.beta2, c.eps, c.weight_decay),
            (1e-3, 0.9, 0.999, 1e-8, 1e-2)
        );
        let e = AdamW::new(Vec::new(), AdamWConfig::new(0.1).with_betas(0.9, 1.0)).unwrap_err();
        assert!(matches!(e, Error::Config { .. }));
        assert_eq!(e.to_string(), "adamw: bad configuration: beta2 must be in [0, 1), got 1");
        let e = AdamW::new(Vec::new(), AdamWConfig::new(0.1).with_weight_decay(-0.1)).unwrap_err();
        assert_eq!(e.to_string(), "adamw: bad configuration: weight_decay must be finite and >= 0, got -0.1");
    }
}
