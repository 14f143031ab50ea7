//! [`ProbabilityFn`]: how a mechanism turns its scores into alignments (TF Addons'
//! `probability_fn`): softmax, hardmax or sparsemax, each under the memory's mask.

use crate::softmax::{check_mask, lowest_finite, masked_softmax};
use crate::sparsemax::{hardmax, sparsemax};
use couplet_modules::util::check_defined;
use couplet_modules::{Error, Result, TorchContext};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The probability function of a Luong or Bahdanau mechanism
/// ([`LuongConfig::probability_fn`](crate::LuongConfig::probability_fn),
/// [`BahdanauConfig::probability_fn`](crate::BahdanauConfig::probability_fn)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbabilityFn {
    /// Softmax over the attended slots (TF's default `tf.nn.softmax`).
    #[default]
    Softmax,
    /// One-hot at the highest-scoring attended slot, the first on ties (TF Addons'
    /// `hardmax`); not differentiable.
    Hardmax,
    /// [`sparsemax`] over the attended slots (Martins & Astudillo 2016): exact zeros for
    /// low scores.
    Sparsemax,
}

impl ProbabilityFn {
    /// Alignments `[B, N]` from `scores [B, N]` (floating) where `mask` (bool `[B, N]`,
    /// true = attend; `None`: every slot) allows: the function over the attended slots only,
    /// exact zeros at the others, and all-zero rows where no slot may be attended. Sparsemax
    /// sees a masked slot as the row's lowest attended score minus 1, which the projection
    /// always maps to 0 (its threshold `τ >= max z - 1`), so the attended slots get exactly
    /// the sparsemax of their own scores.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `module` if `scores` is not floating point (for hardmax and
    /// sparsemax under a mask: not a floating `[B, N]`) or `mask` is not a bool `[B, N]`;
    /// [`Error::InvalidArgument`] if either is undefined.
    pub fn apply(self, module: &str, scores: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if self == ProbabilityFn::Softmax {
            return Ok(masked_softmax(module, scores, mask)?.0);
        }
        let Some(mask) = mask else {
            return if self == ProbabilityFn::Hardmax { hardmax(scores) } else { sparsemax(scores) };
        };
        check_defined(module, "scores", scores)?;
        let size = scores.size();
        if !scores.is_floating_point() || size.len() != 2 {
            return Err(Error::shape(module, "scores", "a floating tensor [B, N]", size));
        }
        check_mask(module, mask, size[0], size[1])?;
        let options = (scores.kind(), scores.device());
        let zero = Tensor::f_zeros([], options).ctx(module)?;
        let p = if self == ProbabilityFn::Hardmax {
            // The kind's lowest finite value: never above an attended score.
            let lowest = Tensor::f_scalar_tensor(lowest_finite(scores.kind()), options).ctx(module)?;
            hardmax(&scores.f_where_self(mask, &lowest).ctx(module)?)?
        } else {
            let inf = Tensor::f_scalar_tensor(f64::INFINITY, options).ctx(module)?;
            let fill = scores
                .f_where_self(mask, &inf)
                .and_then(|s| s.f_amin([-1i64].as_slice(), true))
                .and_then(|m| m.f_sub_scalar(1.0))
                .ctx(module)?;
            // A row without attended slots: any finite fill (its result is zeroed below).
            let fill = fill.f_isfinite().and_then(|f| fill.f_where_self(&f, &zero)).ctx(module)?;
            sparsemax(&scores.f_where_self(mask, &fill).ctx(module)?)?
        };
        p.f_where_self(mask, &zero).ctx(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn each_function_by_hand_under_a_mask() {
        // Row 0 attends slots 0..3 of [0.8, 1.0, 0.1, 9.0]: slot 3 is masked although highest.
        // Row 1 attends nothing.
        let scores = Tensor::from_slice(&[0.8f64, 1.0, 0.1, 9.0, 1.0, 2.0, 3.0, 4.0]).view([2, 4]);
        let mask = Tensor::from_slice(&[true, true, true, false, false, false, false, false]).view([2, 4]);
        let m = Some(&mask);
        // sparsemax([0.8, 1, 0.1]) = [0.4, 0.6, 0] (τ = 0.4).
        let p = values(&ProbabilityFn::Sparsemax.apply("m", &scores, m).unwrap());
        let want = [0.4, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!(p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{p:?}");
        let h = values(&ProbabilityFn::Hardmax.apply("m", &scores, m).unwrap());
        assert_eq!(h, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let s = values(&ProbabilityFn::Softmax.apply("m", &scores, m).unwrap());
        let z: f64 = [0.8f64, 1.0, 0.1].iter().map(|x| x.exp()).sum();
        assert!((s[1] - 1f64.exp() / z).abs() < 1e-12 && s[3] == 0.0 && s[4..].iter().all(|&x| x == 0.0));
        // Without a mask: the plain functions.
        let h = values(&ProbabilityFn::Hardmax.apply("m", &scores, None).unwrap());
        assert_eq!(h, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let p = values(&ProbabilityFn::Sparsemax.apply("m", &scores, None).unwrap());
        assert_eq!(p, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn bad_scores_are_typed_errors() {
        let mask = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
        let scores = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
        let e = ProbabilityFn::Sparsemax.apply("mech", &scores, Some(&mask)).unwrap_err();
        assert_eq!(e.to_string(), "mech: mask must be a bool tensor [1, 2], got Float [1, 2]");
        let e = ProbabilityFn::Hardmax.apply("mech", &scores.view([2]), Some(&mask)).unwrap_err();
        assert_eq!(e.to_string(), "mech: scores must be a floating tensor [B, N], got [2]");
        let e = ProbabilityFn::Softmax.apply("mech", &Tensor::from_slice(&[1i64, 2]), None).unwrap_err();
        assert!(e.to_string().starts_with("mech: logits kind"), "{e}");
        let e = ProbabilityFn::Sparsemax.apply("mech", &Tensor::new(), Some(&mask)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    }
}
