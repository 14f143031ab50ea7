//! Weight regularizers, attached per variable at creation and summed by
//! [`Module::regularization_loss`](crate::Module::regularization_loss).
//!
//! couplet follows Keras: `L2 { scale }` is `scale · Σ w²` (TF 1.x's `l2_regularizer`, which
//! Sonnet v1 used, computes `scale · Σ w² / 2`; pass half the scale to reproduce it).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// A penalty on a variable's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Regularizer {
    /// `scale · Σ |w|`.
    L1 {
        /// Multiplier.
        scale: f64,
    },
    /// `scale · Σ w²`.
    L2 {
        /// Multiplier.
        scale: f64,
    },
    /// `l1 · Σ |w| + l2 · Σ w²`.
    L1L2 {
        /// L1 multiplier.
        l1: f64,
        /// L2 multiplier.
        l2: f64,
    },
}

impl Regularizer {
    /// Checks that every multiplier is finite and `>= 0` (a negative or NaN scale would
    /// reward large weights or poison the loss).
    ///
    /// # Errors
    /// [`Error::Config`] naming `module` with the offending multiplier.
    pub fn check(&self, module: &str) -> Result<()> {
        let scales: &[f64] = match self {
            Regularizer::L1 { scale } | Regularizer::L2 { scale } => &[*scale][..],
            Regularizer::L1L2 { l1, l2 } => &[*l1, *l2][..],
        };
        for &s in scales {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::config(module, format!("regularizer {self:?} needs finite scales >= 0")));
            }
        }
        Ok(())
    }

    /// The penalty for `w`, a scalar of `w`'s kind (differentiable).
    pub fn loss(&self, w: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        let l1 = |s: f64| w.f_abs()?.f_sum(w.kind())?.f_mul_scalar(s);
        let l2 = |s: f64| w.f_square()?.f_sum(w.kind())?.f_mul_scalar(s);
        match *self {
            Regularizer::L1 { scale } => l1(scale),
            Regularizer::L2 { scale } => l2(scale),
            Regularizer::L1L2 { l1: a, l2: b } => l1(a)?.f_add(&l2(b)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_or_negative_scales_are_config_errors() {
        assert!(Regularizer::L2 { scale: 0.0 }.check("m").is_ok());
        for r in [
            Regularizer::L1 { scale: f64::NAN },
            Regularizer::L2 { scale: -1.0 },
            Regularizer::L1L2 { l1: 0.1, l2: f64::INFINITY },
        ] {
            let e = r.check("m").unwrap_err();
            assert!(e.to_string().starts_with("m: bad configuration: regularizer"), "{e}");
        }
        let store = crate::Store::cpu();
        let e = store
            .root()
            .var("w", &[2])
            .regularizer(Some(Regularizer::L1 { scale: f64::NAN }))
            .create()
            .unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[test]
    fn penalties_match_hand_sums() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0]);
        let v = |r: Regularizer| r.loss(&w).unwrap().double_value(&[]);
        assert_eq!(v(Regularizer::L1 { scale: 0.5 }), 3.0); // 0.5 * 6
        assert!((v(Regularizer::L2 { scale: 0.1 }) - 1.4).abs() < 1e-6);
        assert!((v(Regularizer::L1L2 { l1: 1.0, l2: 2.0 }) - 34.0).abs() < 1e-6);
    }
}
