//! `Activation`: the element-wise nonlinearities modules take by name (`"relu"`, `"gelu"`, …),
//! serialisable so they can live in configs.

use crate::error::{Result, TorchContext};
use crate::util::check_floating;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// An element-wise nonlinearity, applied by [`Activation::apply`].
///
/// Serialised in snake case: unit variants as a string (`"relu"`, `"swish"`, with `"silu"`
/// accepted as an alias of `"swish"`), `LeakyRelu` as `{"leaky_relu": {"negative_slope": 0.2}}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x` for `x > 0`, `exp(x) - 1` otherwise (alpha 1).
    Elu,
    /// `λ x` for `x > 0`, `λ α (exp(x) - 1)` otherwise, with `λ ≈ 1.0507`, `α ≈ 1.6733`
    /// (Klambauer et al. 2017).
    Selu,
    /// Exact GELU, `x Φ(x)` with the normal CDF `Φ` computed through `erf` (not the tanh
    /// approximation).
    Gelu,
    /// `x` for `x >= 0`, `negative_slope · x` otherwise.
    LeakyRelu {
        /// Slope for negative inputs (TF's default is 0.2, PyTorch's 0.01).
        negative_slope: f64,
    },
    /// `ln(1 + exp(x))` (computed as `x` above 20, as PyTorch does, to avoid overflow).
    Softplus,
    /// Swish / SiLU: `x · sigmoid(x)`.
    #[serde(alias = "silu")]
    Swish,
}

impl Activation {
    /// The activation's snake-case name (`"leaky_relu"`), used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Softplus => "softplus",
            Activation::Swish => "swish",
        }
    }

    /// Applies the nonlinearity element-wise: `x [..]` → `[..]` of the same shape and kind.
    /// `Identity` returns a shallow clone of `x`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the activation if `x` is not floating point
    /// (`"gelu: input kind must be floating point, got Int64"`); [`Error::InvalidArgument`]
    /// if `x` is undefined; [`Error::Config`] for a NaN or infinite `LeakyRelu` slope.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let name = self.name();
        check_floating(name, "input", x)?;
        if let Activation::LeakyRelu { negative_slope } = *self {
            crate::util::check_finite(name, "negative_slope", negative_slope)?;
        }
        match *self {
            Activation::Identity => Ok(x.shallow_clone()),
            Activation::Relu => x.f_relu(),
            Activation::Relu6 => x.f_relu6(),
            Activation::Tanh => x.f_tanh(),
            Activation::Sigmoid => x.f_sigmoid(),
            Activation::Elu => x.f_elu(),
            Activation::Selu => x.f_selu(),
            Activation::Gelu => x.f_gelu("none"),
            Activation::LeakyRelu { negative_slope } => x
                .f_clamp_min(0.0)
                .and_then(|pos| x.f_clamp_max(0.0)?.f_mul_scalar(negative_slope)?.f_add(&pos)),
            Activation::Softplus => x.f_softplus(),
            Activation::Swish => x.f_silu(),
        }
        .ctx(name)
    }
}

/// Checks that `x` has a floating-point kind, else an [`Error::Shape`] naming `module`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use tch::{Device, Kind};

    /// Applies `act` to `[-2, -0.5, 0, 1, 7]` in f64.
    fn at_points(act: Activation) -> Vec<f64> {
        let x = Tensor::from_slice(&[-2.0f64, -0.5, 0.0, 1.0, 7.0]);
        Vec::<f64>::try_from(act.apply(&x).unwrap()).unwrap()
    }

    #[track_caller]
    fn assert_all_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= 1e-12 + 1e-12 * e.abs(), "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn piecewise_linear_activations() {
        assert_all_close(&at_points(Activation::Identity), &[-2.0, -0.5, 0.0, 1.0, 7.0]);
        assert_all_close(&at_points(Activation::Relu), &[0.0, 0.0, 0.0, 1.0, 7.0]);
        assert_all_close(&at_points(Activation::Relu6), &[0.0, 0.0, 0.0, 1.0, 6.0]);
        let leaky = Activation::LeakyRelu { negative_slope: 0.2 };
        assert_all_close(&at_points(leaky), &[-0.4, -0.1, 0.0, 1.0, 7.0]);
    }

    #[test]
    fn smooth_activations_at_chosen_points() {
        let e = std::f64::consts::E;
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert_all_close(&at_points(Activation::Sigmoid), &[sig(-2.0), sig(-0.5), 0.5, sig(1.0), sig(7.0)]);
        let th = f64::tanh;
        assert_all_close(&at_points(Activation::Tanh), &[th(-2.0), th(-0.5), 0.0, th(1.0), th(7.0)]);
        assert_all_close(
            &at_points(Activation::Elu),
            &[e.powi(-2) - 1.0, (-0.5f64).exp() - 1.0, 0.0, 1.0, 7.0],
        );
        // SELU constants from Klambauer et al. (2017).
        let (l, a) = (1.050_700_987_355_480_5, 1.673_263_242_354_377_3);
        let selu = [l * a * (e.powi(-2) - 1.0), l * a * ((-0.5f64).exp() - 1.0), 0.0, l, 7.0 * l];
        assert_all_close(&at_points(Activation::Selu), &selu);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        assert_all_close(
            &at_points(Activation::Softplus),
            &[sp(-2.0), sp(-0.5), 2f64.ln(), sp(1.0), sp(7.0)],
        );
        let sw = [-2.0 * sig(-2.0), -0.5 * sig(-0.5), 0.0, sig(1.0), 7.0 * sig(7.0)];
        assert_all_close(&at_points(Activation::Swish), &sw);
    }

    #[test]
    fn gelu_is_exact_not_tanh_approximation() {
        // x Φ(x): Φ(1) = 0.841344746068543, Φ(-0.5) = 0.308537538725987, Φ(-2) = 0.022750131948179.
        let want =
            [-2.0 * 0.022_750_131_948_179_2, -0.5 * 0.308_537_538_725_986_9, 0.0, 0.841_344_746_068_542_9];
        let got = at_points(Activation::Gelu);
        assert_all_close(&got[..4], &want);
        // The tanh approximation gives 0.841191990607 at 1: far outside the tolerance above.
        assert!((got[3] - 0.841_191_990_607_2).abs() > 1e-4);
    }

    #[test]
    fn integer_input_is_a_kind_error() {
        let e = Activation::Gelu.apply(&Tensor::from_slice(&[1i64, 2])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }));
        assert_eq!(e.to_string(), "gelu: input kind must be floating point, got Int64");
    }

    #[test]
    fn keeps_shape_and_kind() {
        let x = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu));
        let y = Activation::Swish.apply(&x).unwrap();
        assert_eq!((y.size(), y.kind()), (vec![2, 3, 4], Kind::Float));
    }

    #[test]
    fn serde_names() {
        assert_eq!(serde_json::to_string(&Activation::Relu6).unwrap(), r#""relu6""#);
        assert_eq!(serde_json::from_str::<Activation>(r#""silu""#).unwrap(), Activation::Swish);
        assert_eq!(serde_json::from_str::<Activation>(r#""swish""#).unwrap(), Activation::Swish);
        let leaky = Activation::LeakyRelu { negative_slope: 0.2 };
        let json = serde_json::to_string(&leaky).unwrap();
        assert_eq!(json, r#"{"leaky_relu":{"negative_slope":0.2}}"#);
        assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), leaky);
        assert!(serde_json::from_str::<Activation>(r#""softmax""#).is_err());
    }
}
