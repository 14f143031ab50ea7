//! Initializers for variables, serialisable so they can live in JSON/TOML configs.
//!
//! Variance-scaling initializers need a variable's fan-in and fan-out; [`Fans`] carries them.
//! [`Fans::from_shape`] follows TensorFlow (`[.., in, out]`, as Sonnet's `w`), and
//! [`Fans::torch`] follows PyTorch (`[out, in, ..]`, as `weight_ih` or conv weights), so each
//! module states which layout its variable has.

use crate::error::{Error, Result, TorchContext};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Fan-in and fan-out of a variable, for variance scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fans {
    /// Number of inputs feeding one output unit.
    pub fan_in: i64,
    /// Number of outputs fed by one input unit.
    pub fan_out: i64,
}

impl Fans {
    /// TensorFlow's rule (`[in, out]`, conv kernels `[k.., in, out]`): scalars give (1, 1),
    /// vectors `[n]` give (n, n), and higher ranks multiply both by the receptive field
    /// `prod(shape[..rank-2])`.
    pub fn from_shape(shape: &[i64]) -> Fans {
        match shape {
            [] => Fans { fan_in: 1, fan_out: 1 },
            [n] => Fans { fan_in: *n, fan_out: *n },
            [rest @ .., i, o] => {
                // Saturating: a fan only divides a variance, and shapes that large are
                // refused when the variable is created.
                let r = rest.iter().fold(1i64, |a, &d| a.saturating_mul(d));
                Fans { fan_in: i.saturating_mul(r), fan_out: o.saturating_mul(r) }
            }
        }
    }

    /// PyTorch's rule (`[out, in]`, conv weights `[out, in, k..]`): higher ranks multiply
    /// both by the receptive field `prod(shape[2..])`.
    pub fn torch(shape: &[i64]) -> Fans {
        match shape {
            [] => Fans { fan_in: 1, fan_out: 1 },
            [n] => Fans { fan_in: *n, fan_out: *n },
            [o, i, rest @ ..] => {
                // Saturating: a fan only divides a variance, and shapes that large are
                // refused when the variable is created.
                let r = rest.iter().fold(1i64, |a, &d| a.saturating_mul(d));
                Fans { fan_in: i.saturating_mul(r), fan_out: o.saturating_mul(r) }
            }
        }
    }
}

/// Which fan variance scaling divides by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// `fan_in` (He/LeCun).
    FanIn,
    /// `fan_out`.
    FanOut,
    /// `(fan_in + fan_out) / 2` (Glorot).
    FanAvg,
}

/// The distribution variance scaling draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Normal truncated at two standard deviations, rescaled so the variance is `scale / n`.
    TruncatedNormal,
    /// Plain normal with variance `scale / n`.
    UntruncatedNormal,
    /// Uniform on `[-sqrt(3 scale / n), sqrt(3 scale / n)]`.
    Uniform,
}

/// How a variable's initial value is drawn. The variants follow TensorFlow 2 / Keras.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Initializer {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element `value`.
    Constant {
        /// The value.
        value: f64,
    },
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound (must be >= `low`).
        high: f64,
    },
    /// Normal with mean `mean` and standard deviation `std`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (>= 0).
        std: f64,
    },
    /// Normal truncated to `mean ± 2 std` (TensorFlow's `truncated_normal`; values outside
    /// are redrawn, so the standard deviation of the result is about `0.88 std`).
    TruncatedNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation of the untruncated normal (>= 0).
        std: f64,
    },
    /// Glorot/Xavier uniform: variance scaling with scale 1, `fan_avg`, uniform.
    GlorotUniform,
    /// Glorot/Xavier normal: variance scaling with scale 1, `fan_avg`, truncated normal.
    GlorotNormal,
    /// Variance scaling: variance `scale / n`, `n` chosen by `mode`.
    VarianceScaling {
        /// Multiplier of the variance (> 0).
        scale: f64,
        /// Which fan `n` is.
        mode: FanMode,
        /// Distribution drawn from.
        distribution: Distribution,
    },
    /// A (semi-)orthogonal matrix times `gain`: the shape is flattened to
    /// `[prod(shape[..-1]), shape[-1]]` (rank >= 2 required), as in TensorFlow.
    Orthogonal {
        /// Multiplier.
        gain: f64,
    },
    /// The identity matrix times `gain` on the last two dimensions (`eye(rows, cols)`, ones
    /// on the main diagonal of a non-square matrix), repeated over any leading dimensions:
    /// Sonnet's `snt.initializers.Identity` (rank >= 2 required). Recurrent weights `[H, H]`
    /// initialised this way give IRNN (Le et al. 2015).
    Identity {
        /// Multiplier.
        gain: f64,
    },
}

const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;

impl Initializer {
    /// Uniform on `[-bound, bound)`.
    pub fn symmetric_uniform(bound: f64) -> Self {
        Initializer::Uniform { low: -bound, high: bound }
    }

    /// Sonnet's default for weights: truncated normal with `std = 1 / sqrt(fan_in)`.
    pub fn sonnet_default(fan_in: i64) -> Self {
        Initializer::TruncatedNormal { mean: 0.0, std: 1.0 / (fan_in.max(1) as f64).sqrt() }
    }

    /// Draws a tensor of `shape` with `options` (kind, device). Call under `no_grad`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `module` for invalid parameters (a negative standard
    /// deviation, `low > high`, a non-positive scale, orthogonal of rank < 2, a constant
    /// beyond the kind's finite range, a NaN or infinite parameter) and for parameters whose
    /// draw is not finite in `options`' kind (`Normal { mean: 1e6, .. }` in a `Half` store).
    pub fn create(&self, module: &str, shape: &[i64], fans: Fans, options: (Kind, Device)) -> Result<Tensor> {
        self.check(module)?;
        let t = self.draw(module, shape, fans, options)?;
        crate::util::check_all_finite(module, "initial value", &t).map_err(|_| {
            Error::config(module, format!("{self:?} gives values that are not finite in {:?}", options.0))
        })?;
        Ok(t)
    }

    /// Checks that every parameter is finite.
    fn check(&self, module: &str) -> Result<()> {
        let params: &[(&str, f64)] = match *self {
            Initializer::Constant { value } => &[("constant initializer value", value)],
            Initializer::Uniform { low, high } => {
                &[("uniform initializer low", low), ("uniform initializer high", high)]
            }
            Initializer::Normal { mean, std } | Initializer::TruncatedNormal { mean, std } => {
                &[("normal initializer mean", mean), ("normal initializer std", std)]
            }
            Initializer::VarianceScaling { scale, .. } => &[("variance scaling scale", scale)],
            Initializer::Orthogonal { gain } => &[("orthogonal initializer gain", gain)],
            Initializer::Identity { gain } => &[("identity initializer gain", gain)],
            _ => &[],
        };
        params.iter().try_for_each(|&(what, v)| crate::util::check_finite(module, what, v))
    }

    // The negated comparisons reject NaN parameters too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn draw(&self, module: &str, shape: &[i64], fans: Fans, options: (Kind, Device)) -> Result<Tensor> {
        let bad = |m: String| Err(Error::config(module, m));
        match *self {
            Initializer::Zeros => Tensor::f_zeros(shape, options).ctx(module),
            Initializer::Ones => Tensor::f_ones(shape, options).ctx(module),
            Initializer::Constant { value } => {
                if !crate::util::scalar_fits(value, options.0) {
                    return bad(format!("constant initializer value {value:e} overflows {:?}", options.0));
                }
                Tensor::f_full(shape, value, options).ctx(module)
            }
            Initializer::Uniform { low, high } => {
                if !(low <= high) {
                    return bad(format!("uniform initializer needs low <= high, got [{low}, {high})"));
                }
                Tensor::f_empty(shape, options).and_then(|mut t| t.f_uniform_(low, high)).ctx(module)
            }
            Initializer::Normal { mean, std } => {
                if !(std >= 0.0) {
                    return bad(format!("normal initializer needs std >= 0, got {std}"));
                }
                Tensor::f_empty(shape, options).and_then(|mut t| t.f_normal_(mean, std)).ctx(module)
            }
            Initializer::TruncatedNormal { mean, std } => {
                if !(std >= 0.0) {
                    return bad(format!("truncated normal initializer needs std >= 0, got {std}"));
                }
                truncated_normal(shape, mean, std, options).ctx(module)
            }
            Initializer::GlorotUniform => Initializer::VarianceScaling {
                scale: 1.0,
                mode: FanMode::FanAvg,
                distribution: Distribution::Uniform,
            }
            .draw(module, shape, fans, options),
            Initializer::GlorotNormal => Initializer::VarianceScaling {
                scale: 1.0,
                mode: FanMode::FanAvg,
                distribution: Distribution::TruncatedNormal,
            }
            .draw(module, shape, fans, options),
            Initializer::VarianceScaling { scale, mode, distribution } => {
                if !(scale > 0.0) {
                    return bad(format!("variance scaling needs scale > 0, got {scale}"));
                }
                let n = match mode {
                    FanMode::FanIn => fans.fan_in as f64,
                    FanMode::FanOut => fans.fan_out as f64,
                    FanMode::FanAvg => (fans.fan_in as f64 + fans.fan_out as f64) / 2.0,
                };
                let variance = scale / n.max(1.0);
                match distribution {
                    Distribution::TruncatedNormal => {
                        truncated_normal(shape, 0.0, variance.sqrt() / TRUNCATED_STD, options).ctx(module)
                    }
                    Distribution::UntruncatedNormal => Tensor::f_empty(shape, options)
                        .and_then(|mut t| t.f_normal_(0.0, variance.sqrt()))
                        .ctx(module),
                    Distribution::Uniform => {
                        let limit = (3.0 * variance).sqrt();
                        Tensor::f_empty(shape, options)
                            .and_then(|mut t| t.f_uniform_(-limit, limit))
                            .ctx(module)
                    }
                }
            }
            Initializer::Orthogonal { gain } => {
                if shape.len() < 2 {
                    return bad(format!("orthogonal initializer needs rank >= 2, got shape {shape:?}"));
                }
                orthogonal(shape, gain, options).ctx(module)
            }
            Initializer::Identity { gain } => {
                let &[.., rows, cols] = shape else {
                    return bad(format!("identity initializer needs rank >= 2, got shape {shape:?}"));
                };
                if !crate::util::scalar_fits(gain, options.0) {
                    return bad(format!("identity initializer gain {gain:e} overflows {:?}", options.0));
                }
                Tensor::f_eye_m(rows, cols, options)
                    .and_then(|eye| eye.f_mul_scalar(gain))
                    .and_then(|eye| eye.f_expand(shape, false))
                    .and_then(|eye| eye.f_contiguous())
                    .ctx(module)
            }
        }
    }
}

/// Normal truncated at two standard deviations, drawn by inverting the CDF on the truncated
/// range (exact, no rejection loop): `x = mean + std * sqrt(2) * erfinv(2u - 1)` with `u`
/// uniform on `[Φ(-2), Φ(2)]`.
fn truncated_normal(
    shape: &[i64],
    mean: f64,
    std: f64,
    options: (Kind, Device),
) -> Result<Tensor, tch::TchError> {
    const LOW: f64 = 0.022_750_131_948_179_195; // Φ(-2)
    const HIGH: f64 = 0.977_249_868_051_820_8; // Φ(2)
    let u = Tensor::f_empty(shape, (Kind::Double, options.1))?.f_uniform_(LOW, HIGH)?;
    let z = u.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?.f_erfinv()?;
    let z = z.f_mul_scalar(std::f64::consts::SQRT_2)?.f_clamp(-2.0, 2.0)?;
    z.f_mul_scalar(std)?.f_add_scalar(mean)?.f_to_kind(options.0)
}

fn orthogonal(shape: &[i64], gain: f64, options: (Kind, Device)) -> Result<Tensor, tch::TchError> {
    let cols = *shape.last().unwrap_or(&1);
    let rows: i64 = shape[..shape.len() - 1].iter().product();
    let (r, c) = (rows.max(cols), rows.min(cols));
    let a = Tensor::f_empty([r, c], (Kind::Double, options.1))?.f_normal_(0.0, 1.0)?;
    let (q, rr) = Tensor::f_linalg_qr(&a, "reduced")?;
    let d = rr.f_diagonal(0, 0, 1)?.f_sign()?;
    let q = q.f_mul(&d.f_unsqueeze(0)?)?;
    let q = if rows < cols { q.f_tr()? } else { q };
    q.f_contiguous()?.f_reshape(shape)?.f_mul_scalar(gain)?.f_to_kind(options.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_eye_times_gain_on_the_last_two_dimensions() {
        let fans = Fans::from_shape(&[2, 3]);
        let t = Initializer::Identity { gain: 2.0 }.create("m", &[2, 3], fans, CPU).unwrap();
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), [2.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
        let t = Initializer::Identity { gain: 1.0 }
            .create("m", &[4, 2, 2], Fans::from_shape(&[4, 2, 2]), CPU)
            .unwrap();
        assert_eq!(t.size(), [4, 2, 2]);
        assert!(t.get(3).equal(&Tensor::eye(2, CPU)));
        let e =
            Initializer::Identity { gain: 1.0 }.create("m", &[3], Fans::from_shape(&[3]), CPU).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m: bad configuration: identity initializer needs rank >= 2, got shape [3]"
        );
        let serialised = serde_json::to_string(&Initializer::Identity { gain: 0.5 }).unwrap();
        assert_eq!(serialised, r#"{"kind":"identity","gain":0.5}"#);
        let e = Initializer::Identity { gain: f64::NAN }.create("m", &[2, 2], Fans::from_shape(&[2, 2]), CPU);
        assert!(e.unwrap_err().to_string().contains("identity initializer gain must be finite"));
    }

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    fn draw(init: Initializer, shape: &[i64]) -> Tensor {
        tch::manual_seed(0);
        init.create("test", shape, Fans::from_shape(shape), CPU).unwrap()
    }

    #[test]
    fn a_constant_beyond_the_kind_is_a_config_error() {
        // tch 0.26's f_full panics (in Scalar's drop) when libtorch reports the overflow.
        let e = Initializer::Constant { value: 1e300 }.create("m", &[2], Fans::from_shape(&[2]), CPU);
        assert_eq!(
            e.unwrap_err().to_string(),
            "m: bad configuration: constant initializer value 1e300 overflows Float"
        );
        let half = (Kind::Half, Device::Cpu);
        let e = Initializer::Constant { value: 7e4 }.create("m", &[2], Fans::from_shape(&[2]), half);
        assert!(matches!(e, Err(Error::Config { .. })));
        let ok =
            Initializer::Constant { value: 6e4 }.create("m", &[2], Fans::from_shape(&[2]), half).unwrap();
        assert_eq!(ok.kind(), Kind::Half);
        // Infinities are refused like any non-finite parameter (they used to be accepted).
        let inf =
            Initializer::Constant { value: f64::INFINITY }.create("m", &[1], Fans::from_shape(&[1]), half);
        assert!(matches!(inf, Err(Error::Config { .. })));
        assert!(draw(Initializer::Constant { value: 1e30 }, &[1]).double_value(&[0]) > 9.9e29);
    }

    fn stats(t: &Tensor) -> (f64, f64, f64, f64) {
        let t = t.to_kind(Kind::Double);
        (
            t.mean(Kind::Double).double_value(&[]),
            t.std(true).double_value(&[]),
            t.min().double_value(&[]),
            t.max().double_value(&[]),
        )
    }

    #[test]
    fn constants() {
        assert_eq!(draw(Initializer::Zeros, &[2, 3]).abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(draw(Initializer::Ones, &[2, 3]).sum(Kind::Float).double_value(&[]), 6.0);
        let c = draw(Initializer::Constant { value: 2.5 }, &[4]);
        assert_eq!(Vec::<f32>::try_from(&c).unwrap(), [2.5; 4]);
    }

    #[test]
    fn fans_follow_tf_and_torch_layouts() {
        assert_eq!(Fans::from_shape(&[3, 3, 16, 32]), Fans { fan_in: 144, fan_out: 288 });
        assert_eq!(Fans::torch(&[32, 16, 3, 3]), Fans { fan_in: 144, fan_out: 288 });
        assert_eq!(Fans::from_shape(&[5]), Fans { fan_in: 5, fan_out: 5 });
        assert_eq!(Fans::from_shape(&[]), Fans { fan_in: 1, fan_out: 1 });
    }

    #[test]
    fn uniform_and_normal_moments() {
        let (m, s, lo, hi) = stats(&draw(Initializer::Uniform { low: -1.0, high: 3.0 }, &[100_000]));
        assert!((m - 1.0).abs() < 0.02 && (s - 4.0 / 12f64.sqrt()).abs() < 0.02);
        assert!(lo >= -1.0 && hi < 3.0);
        let (m, s, _, _) = stats(&draw(Initializer::Normal { mean: 2.0, std: 0.5 }, &[100_000]));
        assert!((m - 2.0).abs() < 0.01 && (s - 0.5).abs() < 0.01);
    }

    #[test]
    fn truncated_normal_stays_within_two_std() {
        let (m, s, lo, hi) = stats(&draw(Initializer::TruncatedNormal { mean: 1.0, std: 0.5 }, &[100_000]));
        assert!(lo >= 0.0 - 1e-6 && hi <= 2.0 + 1e-6, "{lo} {hi}");
        assert!((m - 1.0).abs() < 0.01);
        // The standard deviation of a normal truncated at ±2σ is 0.8796σ.
        assert!((s - 0.5 * TRUNCATED_STD).abs() < 0.01, "{s}");
    }

    #[test]
    fn variance_scaling_hits_the_target_variance() {
        let shape = [400, 600];
        for distribution in
            [Distribution::TruncatedNormal, Distribution::UntruncatedNormal, Distribution::Uniform]
        {
            for (mode, n) in [(FanMode::FanIn, 400.0), (FanMode::FanOut, 600.0), (FanMode::FanAvg, 500.0)] {
                let init = Initializer::VarianceScaling { scale: 2.0, mode, distribution };
                let (m, s, _, _) = stats(&draw(init, &shape));
                let want = (2.0f64 / n).sqrt();
                assert!(m.abs() < 2e-3, "{distribution:?} {mode:?} mean {m}");
                assert!((s / want - 1.0).abs() < 0.02, "{distribution:?} {mode:?} std {s} want {want}");
            }
        }
        let (_, s, lo, hi) = stats(&draw(Initializer::GlorotUniform, &shape));
        let limit = (6.0f64 / 1000.0).sqrt();
        assert!(lo >= -limit && hi <= limit && (s - limit / 3f64.sqrt()).abs() < 1e-3);
        let (_, s, _, _) = stats(&draw(Initializer::GlorotNormal, &shape));
        assert!((s / (1.0f64 / 500.0).sqrt() - 1.0).abs() < 0.02);
    }

    #[test]
    fn orthogonal_is_orthogonal() {
        for shape in [[6i64, 4], [4, 6]] {
            let q = draw(Initializer::Orthogonal { gain: 2.0 }, &shape).to_kind(Kind::Double);
            let gram = if shape[0] >= shape[1] { q.tr().matmul(&q) } else { q.matmul(&q.tr()) };
            let k = shape[0].min(shape[1]);
            let eye = Tensor::eye(k, (Kind::Double, Device::Cpu)) * 4.0;
            assert!(gram.allclose(&eye, 1e-6, 1e-6, false), "{shape:?}");
        }
        let e = Initializer::Orthogonal { gain: 1.0 }.create("m", &[3], Fans::from_shape(&[3]), CPU);
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn invalid_parameters_are_config_errors() {
        for init in [
            Initializer::Uniform { low: 1.0, high: 0.0 },
            Initializer::Normal { mean: 0.0, std: -1.0 },
            Initializer::TruncatedNormal { mean: 0.0, std: f64::NAN },
            Initializer::VarianceScaling {
                scale: 0.0,
                mode: FanMode::FanIn,
                distribution: Distribution::Uniform,
            },
        ] {
            let e = init.create("mlp/linear", &[2], Fans::from_shape(&[2]), CPU).unwrap_err();
            assert!(e.to_string().starts_with("mlp/linear: bad configuration"), "{e}");
        }
    }

    #[test]
    fn non_finite_parameters_and_draws_are_config_errors() {
        let n = f64::NAN;
        for init in [
            Initializer::Constant { value: n },
            Initializer::Constant { value: f64::INFINITY },
            Initializer::Uniform { low: f64::NEG_INFINITY, high: 0.0 },
            Initializer::Normal { mean: n, std: 1.0 },
            Initializer::Normal { mean: 0.0, std: f64::INFINITY },
            Initializer::TruncatedNormal { mean: f64::INFINITY, std: 1.0 },
            Initializer::VarianceScaling {
                scale: f64::INFINITY,
                mode: FanMode::FanIn,
                distribution: Distribution::Uniform,
            },
            Initializer::Orthogonal { gain: n },
        ] {
            let e = init.create("m", &[2, 2], Fans::from_shape(&[2, 2]), CPU).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{init:?}: {e}");
            assert!(e.to_string().contains("must be finite"), "{e}");
        }
        // A finite mean whose draw overflows Half: refused like the equivalent constant.
        let half = (Kind::Half, Device::Cpu);
        let e = Initializer::Normal { mean: 1e6, std: 1.0 }.create("m", &[4], Fans::from_shape(&[4]), half);
        assert_eq!(
            e.unwrap_err().to_string(),
            "m: bad configuration: Normal { mean: 1000000.0, std: 1.0 } gives values that are not finite in Half"
        );
        assert!(Initializer::Normal { mean: 1e3, std: 1.0 }
            .create("m", &[4], Fans::from_shape(&[4]), half)
            .is_ok());
        // Fans of huge shapes saturate instead of overflowing.
        let f = Fans::from_shape(&[i64::MAX, 3, 4, 5]);
        assert_eq!((f.fan_in, f.fan_out), (i64::MAX, i64::MAX));
    }

    #[test]
    fn serde_round_trip() {
        let init = Initializer::VarianceScaling {
            scale: 2.0,
            mode: FanMode::FanIn,
            distribution: Distribution::TruncatedNormal,
        };
        let json = serde_json::to_string(&init).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"variance_scaling","scale":2.0,"mode":"fan_in","distribution":"truncated_normal"}"#
        );
        assert_eq!(serde_json::from_str::<Initializer>(&json).unwrap(), init);
    }
}
