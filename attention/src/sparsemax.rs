//! [`sparsemax`] (Martins & Astudillo 2016) and [`hardmax`]: probability functions for
//! attention besides softmax (TF Addons' `sparsemax`, TF's `AttentionWrapper` hardmax).

use couplet_modules::util::check_defined;
use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

fn check(name: &str, logits: &Tensor) -> Result<()> {
    check_defined(name, "logits", logits)?;
    if !logits.is_floating_point() || logits.dim() == 0 || logits.size().last() == Some(&0) {
        return Err(Error::shape(name, "logits", "a floating tensor [.., N] with N >= 1", logits.size()));
    }
    Ok(())
}

/// Sparsemax over the last dimension of `logits [.., N]`: the Euclidean projection of the
/// logits onto the probability simplex, `p = max(z - τ, 0)` with `τ` such that `Σ p = 1`
/// (sort `z` decreasingly, `k = max{k : 1 + k z₍ₖ₎ > Σ_{j≤k} z₍ⱼ₎}`,
/// `τ = (Σ_{j≤k} z₍ⱼ₎ - 1) / k`). Unlike softmax it gives exact zeros. Differentiable: the
/// gradient is sparsemax's Jacobian `diag(s) - s sᵀ / |S|` on the support `S`.
///
/// # Errors
/// [`Error::Shape`] naming `sparsemax` if `logits` is not floating point, is a scalar or has
/// `N = 0`; [`Error::InvalidArgument`] if it is undefined.
pub fn sparsemax(logits: &Tensor) -> Result<Tensor> {
    const NAME: &str = "sparsemax";
    check(NAME, logits)?;
    let n = logits.size()[logits.dim() - 1];
    let (sorted, _) = logits.f_sort(-1, true).ctx(NAME)?;
    let cumsum = sorted.f_cumsum(-1, sorted.kind()).ctx(NAME)?;
    let k = Tensor::f_arange_start(1, n + 1, (sorted.kind(), logits.device())).ctx(NAME)?;
    // In the support: 1 + k z_(k) > Σ_{j<=k} z_(j); the support is a prefix of the sorted order.
    let support = k
        .f_mul(&sorted)
        .and_then(|kz| kz.f_add_scalar(1.0))
        .and_then(|kz| kz.f_gt_tensor(&cumsum))
        .ctx(NAME)?;
    let size = support.f_sum_dim_intlist([-1i64].as_slice(), true, Kind::Int64).ctx(NAME)?;
    let top = cumsum.f_gather(-1, &size.f_sub_scalar(1).ctx(NAME)?, false).ctx(NAME)?;
    let tau = top.f_sub_scalar(1.0).and_then(|t| t.f_div(&size.f_to_kind(top.kind())?)).ctx(NAME)?;
    logits.f_sub(&tau).and_then(|d| d.f_clamp_min(0.0)).ctx(NAME)
}

/// Hardmax over the last dimension of `logits [.., N]`: one-hot of the argmax (the first
/// maximum on ties), in `logits`' kind. Not differentiable (its gradient is zero).
///
/// # Errors
/// As [`sparsemax`], naming `hardmax`.
pub fn hardmax(logits: &Tensor) -> Result<Tensor> {
    const NAME: &str = "hardmax";
    check(NAME, logits)?;
    let n = logits.size()[logits.dim() - 1];
    logits.f_argmax(-1, false).and_then(|i| i.f_one_hot(n)).and_then(|h| h.f_to_kind(logits.kind())).ctx(NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use couplet_modules::jacobian;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn sparsemax_by_hand() {
        // z = [1, 0.8, 0.1]: k = 2 (1 + 2·0.8 = 2.6 > 1.8; 1 + 3·0.1 = 1.3 < 1.9), τ = 0.4.
        let z = Tensor::from_slice(&[0.8f64, 1.0, 0.1, 3.0, 0.0, -1.0]).view([2, 3]);
        let p = values(&sparsemax(&z).unwrap());
        let want = [0.4, 0.6, 0.0, 1.0, 0.0, 0.0];
        assert!(p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{p:?}");
        // Equal logits: uniform.
        let p = values(&sparsemax(&Tensor::zeros([4], (Kind::Double, tch::Device::Cpu))).unwrap());
        assert!(p.iter().all(|&x| (x - 0.25).abs() < 1e-12), "{p:?}");
    }

    #[test]
    fn sparsemax_gradient_is_its_jacobian_formula() {
        let z = Tensor::from_slice(&[0.8f64, 1.0, 0.1, 0.75]);
        let j = jacobian(sparsemax, &z).unwrap();
        // Sorted 1, 0.8, 0.75, 0.1: support {1, 0, 3} (1 + 3·0.75 > 2.55, 1 + 4·0.1 < 2.65), so
        // J = diag(s) - s sᵀ / 3.
        let s = [1.0, 1.0, 0.0, 1.0];
        for a in 0..4 {
            for b in 0..4 {
                let want = if a == b { s[a] } else { 0.0 } - s[a] * s[b] / 3.0;
                assert!((j.double_value(&[a as i64, b as i64]) - want).abs() < 1e-12, "J[{a}, {b}]");
            }
        }
    }

    #[test]
    fn hardmax_is_one_hot_of_the_first_maximum() {
        let z = Tensor::from_slice(&[0.5f32, 2.0, 2.0, -1.0]).view([2, 2]);
        assert_eq!(values(&hardmax(&z).unwrap()), [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(values(&hardmax(&Tensor::from_slice(&[1.0f32, 1.0])).unwrap()), [1.0, 0.0]);
    }

    #[test]
    fn bad_logits_are_typed_errors() {
        let e = sparsemax(&Tensor::from_slice(&[1i64])).unwrap_err();
        assert_eq!(e.to_string(), "sparsemax: logits must be a floating tensor [.., N] with N >= 1, got [1]");
        assert!(matches!(
            hardmax(&Tensor::zeros([2, 0], (Kind::Float, tch::Device::Cpu))).unwrap_err(),
            Error::Shape { .. }
        ));
        assert!(matches!(sparsemax(&Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
