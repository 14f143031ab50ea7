//! `Dropout`: inverted dropout in training, the identity in evaluation (Sonnet v2's
//! `snt.Dropout`, PyTorch's `nn.Dropout`).

use crate::error::{Error, Result, TorchContext};
use crate::module::{Forward, Mode, Module};
use crate::store::Scope;
use crate::util::check_floating;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Configuration of a [`Dropout`] module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DropoutConfig {
    /// Probability of dropping each element, in `[0, 1)`. Default 0.5.
    pub rate: f64,
}

impl Default for DropoutConfig {
    fn default() -> Self {
        DropoutConfig { rate: 0.5 }
    }
}

impl DropoutConfig {
    /// A config dropping elements with probability `rate`.
    pub fn new(rate: f64) -> Self {
        DropoutConfig { rate }
    }
}

/// Checks that `rate` lies in `[0, 1)`, else an [`Error::Config`] naming `module`.
pub(crate) fn check_rate(module: &str, what: &str, rate: f64) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(Error::config(module, format!("{what} must be in [0, 1), got {rate}")))
    }
}

/// Inverted dropout of `x` with probability `rate` in [`Mode::Train`] (`x · mask / (1 − rate)`
/// with `mask ~ Bernoulli(1 − rate)` from libtorch's RNG); a shallow clone of `x` in
/// [`Mode::Eval`] or when `rate` is 0. `rate` must already be checked.
pub(crate) fn dropout(module: &str, x: &Tensor, rate: f64, mode: Mode) -> Result<Tensor> {
    check_floating(module, "input", x)?;
    if mode.is_training() && rate > 0.0 {
        x.f_dropout(rate, true).ctx(module)
    } else {
        Ok(x.shallow_clone())
    }
}

/// Drops each element of `x [..]` with probability `rate` in training and scales the kept
/// ones by `1 / (1 − rate)`, so the expected value is unchanged; identity in evaluation.
/// Every element gets its own mask entry (no `noise_shape` broadcasting). Has no variables.
///
/// Masks come from libtorch's generator for the input's device: seed it with
/// `tch::manual_seed` for repeatable masks. That generator is process-wide, so draws made by
/// other threads in between (variable initialisers, other dropouts) change the sequence;
/// repeatable runs draw from one thread.
pub struct Dropout {
    scope: Scope,
    config: DropoutConfig,
}

impl std::fmt::Debug for Dropout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dropout").field("scope", &self.scope.path()).field("config", &self.config).finish()
    }
}

impl Dropout {
    /// Builds a `Dropout` in a new child scope `dropout` (or `dropout_1`, …) of `parent`.
    ///
    /// # Errors
    /// [`Error::Config`] if `rate` is outside `[0, 1)` (or NaN).
    pub fn new(parent: &Scope, config: DropoutConfig) -> Result<Self> {
        Self::named(parent, "dropout", config)
    }

    /// Like [`Dropout::new`] with the child scope named `name`.
    pub fn named(parent: &Scope, name: &str, config: DropoutConfig) -> Result<Self> {
        let scope = parent.child(name)?;
        check_rate(scope.path(), "rate", config.rate)?;
        Ok(Dropout { scope, config })
    }

    /// The configuration.
    pub fn config(&self) -> &DropoutConfig {
        &self.config
    }

    /// Applies dropout: `x [..]` → `[..]`, dropped in [`Mode::Train`], unchanged in
    /// [`Mode::Eval`].
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not floating point.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        dropout(self.scope.path(), x, self.config.rate, mode)
    }
}

impl Module for Dropout {
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

impl Forward for Dropout {
    fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Dropout::forward_t(self, x, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use tch::{Device, Kind};

    #[test]
    fn train_keeps_about_one_minus_rate_and_scales_them() {
        let store = Store::cpu();
        let d = Dropout::new(&store.root(), DropoutConfig::new(0.25)).unwrap();
        tch::manual_seed(7);
        let x = Tensor::ones([200, 500], (Kind::Float, Device::Cpu));
        let y = d.forward_t(&x, Mode::Train).unwrap();
        let kept = y.ne(0.0).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        // 100 000 Bernoulli(0.75) draws: standard error 0.0014.
        assert!((kept - 0.75).abs() < 0.01, "kept fraction {kept}");
        // Every kept element is 1 / 0.75; the others are exactly 0.
        let off = (&y - 4.0 / 3.0).abs().minimum(&y.abs()).max().double_value(&[]);
        assert!(off < 1e-6, "{off}");
        // Two calls draw different masks.
        assert!(!y.equal(&d.forward_t(&x, Mode::Train).unwrap()));
    }

    #[test]
    fn eval_and_zero_rate_are_identity() {
        let store = Store::cpu();
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let d = Dropout::new(&store.root(), DropoutConfig::new(0.9)).unwrap();
        assert!(d.forward_t(&x, Mode::Eval).unwrap().equal(&x));
        let zero = Dropout::new(&store.root(), DropoutConfig::new(0.0)).unwrap();
        assert!(zero.forward_t(&x, Mode::Train).unwrap().equal(&x));
        assert_eq!(zero.name(), "dropout_1");
        assert!(zero.variables().unwrap().is_empty());
    }

    #[test]
    fn bad_rates_and_kinds_are_errors() {
        let store = Store::cpu();
        for rate in [1.0, -0.1, f64::NAN] {
            let e = Dropout::new(&store.root(), DropoutConfig::new(rate)).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
            assert!(e.to_string().contains("rate must be in [0, 1)"), "{e}");
        }
        let d = Dropout::new(&store.root(), DropoutConfig::default()).unwrap();
        let e = d.forward_t(&Tensor::from_slice(&[1i64, 2]), Mode::Train).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: input kind", d.name())), "{e}");
    }

    #[test]
    fn serde_round_trip() {
        let c: DropoutConfig = serde_json::from_str(r#"{"rate": 0.1}"#).unwrap();
        assert_eq!(c, DropoutConfig::new(0.1));
        assert_eq!(serde_json::from_str::<DropoutConfig>("{}").unwrap().rate, 0.5);
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<Dropout>();
    }
}
