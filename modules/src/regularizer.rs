//! Weight regularizers, attached per variable at creation and summed by
//! [`Module::regularization_loss`](crate::Module::regularization_loss).
//!
//! couplet follows Keras: `L2 { scale }` is `scale · Σ w²` (TF 1.x's `l2_regularizer`, which
//! Sonnet v1 used, computes `scale · Σ w² / 2`; pass half the scale to reproduce it).

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
    /// The penalty for `w`, a scalar of `w`'s kind (differentiable).
    pub fn loss(&self, w: &Tensor) -> Result<Tensor, tch::TchError> {
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
    fn penalties_match_hand_sums() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0]);
        let v = |r: Regularizer| r.loss(&w).unwrap().double_value(&[]);
        assert_eq!(v(Regularizer::L1 { scale: 0.5 }), 3.0); // 0.5 * 6
        assert!((v(Regularizer::L2 { scale: 0.1 }) - 1.4).abs() < 1e-6);
        assert!((v(Regularizer::L1L2 { l1: 1.0, l2: 2.0 }) - 34.0).abs() < 1e-6);
    }
}
