//! Monotonic attention (Raffel et al. 2017), TF Addons' `monotonic_attention` and
//! `safe_cumprod`: the expected alignments of an attention that moves left to right over the
//! memory, stopping at each slot with probability `p_choose`.

use couplet_modules::util::check_defined;
use couplet_modules::{Error, Result, TorchContext};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

const NAME: &str = "monotonic_attention";

/// How [`monotonic_attention`] computes the alignments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonotonicMode {
    /// The expected alignments by the recurrence `q[j] = (1 - p[j-1]) q[j-1] + prev[j]`,
    /// `a[j] = p[j] q[j]`, one slot at a time (exact, sequential over the memory).
    Recursive,
    /// The same expectation in closed form with cumulative sums and [`safe_cumprod`] (the
    /// training mode: parallel over the memory; inexact when `1 - p` underflows).
    Parallel,
    /// Test-time hard attention: `p_choose` must be 0 or 1 and `previous` one-hot (or all
    /// zeros); the result is one-hot at the first chosen slot at or after the previous one.
    Hard,
}

/// `exp(cumsum(log(clip(x, tiny, 1))))` along `dim` (TF Addons' `safe_cumprod`): a cumulative
/// product in log space that neither underflows to exact zeros early nor gives NaN gradients;
/// `exclusive` shifts it right by one (the first entry 1).
///
/// # Errors
/// [`Error::Shape`] naming `safe_cumprod` if `x` is not floating point or has no dimension
/// `dim`; [`Error::InvalidArgument`] if it is undefined.
pub fn safe_cumprod(x: &Tensor, dim: i64, exclusive: bool) -> Result<Tensor> {
    const SAFE: &str = "safe_cumprod";
    check_defined(SAFE, "x", x)?;
    let rank = x.dim() as i64;
    if !x.is_floating_point() || rank == 0 || dim < -rank || dim >= rank {
        return Err(Error::shape(SAFE, "x", format!("a floating tensor with a dimension {dim}"), x.size()));
    }
    let tiny = match x.kind() {
        Kind::Double => f64::MIN_POSITIVE,
        Kind::Half => 6.103_515_625e-5,
        Kind::BFloat16 => 1.175_494_350_822_287_5e-38,
        _ => f32::MIN_POSITIVE as f64,
    };
    let logs = x.f_clamp(tiny, 1.0).and_then(|c| c.f_log()).ctx(SAFE)?;
    let sums = logs.f_cumsum(dim, logs.kind()).ctx(SAFE)?;
    let sums = if exclusive {
        let d = if dim < 0 { dim + rank } else { dim };
        let n = x.size()[d as usize];
        let zero = sums.f_narrow(d, 0, 1.min(n)).and_then(|z| z.f_zeros_like()).ctx(SAFE)?;
        let head = sums.f_narrow(d, 0, (n - 1).max(0)).ctx(SAFE)?;
        Tensor::f_cat(&[zero, head], d).and_then(|s| s.f_narrow(d, 0, n)).ctx(SAFE)?
    } else {
        sums
    };
    sums.f_exp().ctx(SAFE)
}

/// The alignments `[B, T]` of monotonic attention over `T` memory slots from the stopping
/// probabilities `p_choose [B, T]` (each in `[0, 1]`, usually `sigmoid(score + noise)`) and the
/// previous step's alignments `previous [B, T]` (one-hot at slot 0 before the first step), as TF
/// Addons' `monotonic_attention` in each [`MonotonicMode`]. Alignments sum to at most 1: the
/// rest is the probability that the attention moved past the last slot.
///
/// # Errors
/// [`Error::Shape`] naming `monotonic_attention` if the two are not floating `[B, T]` of one
/// shape and kind; [`Error::InvalidArgument`] if either is undefined.
pub fn monotonic_attention(p_choose: &Tensor, previous: &Tensor, mode: MonotonicMode) -> Result<Tensor> {
    check_defined(NAME, "p_choose", p_choose)?;
    check_defined(NAME, "previous", previous)?;
    let size = p_choose.size();
    if !p_choose.is_floating_point() || size.len() != 2 {
        return Err(Error::shape(NAME, "p_choose", "a floating tensor [B, T]", size));
    }
    if previous.size() != size || previous.kind() != p_choose.kind() {
        return Err(Error::Shape {
            module: NAME.into(),
            what: "previous".into(),
            expected: format!("{:?} {size:?} (p_choose's kind and shape)", p_choose.kind()),
            actual: format!("{:?} {:?}", previous.kind(), previous.size()),
        });
    }
    let (b, t) = (size[0], size[1]);
    let one_minus = p_choose.f_neg().and_then(|n| n.f_add_scalar(1.0)).ctx(NAME)?;
    match mode {
        MonotonicMode::Recursive => {
            let mut q = Tensor::f_zeros([b], (p_choose.kind(), p_choose.device())).ctx(NAME)?;
            let mut out = Vec::with_capacity(t as usize);
            for j in 0..t {
                let carry = if j == 0 {
                    Tensor::f_ones([b], (p_choose.kind(), p_choose.device())).ctx(NAME)?
                } else {
                    one_minus.f_select(1, j - 1).ctx(NAME)?
                };
                q = carry.f_mul(&q).and_then(|c| c.f_add(&previous.f_select(1, j)?)).ctx(NAME)?;
                out.push(p_choose.f_select(1, j).and_then(|p| p.f_mul(&q)).ctx(NAME)?);
            }
            if out.is_empty() {
                return p_choose.f_zeros_like().ctx(NAME);
            }
            Tensor::f_stack(&out, 1).ctx(NAME)
        }
        MonotonicMode::Parallel => {
            let cumprod = safe_cumprod(&one_minus, 1, true)?;
            let ratio = cumprod.f_clamp(1e-10, 1.0).and_then(|c| previous.f_div(&c)).ctx(NAME)?;
            let sums = ratio.f_cumsum(1, ratio.kind()).ctx(NAME)?;
            p_choose.f_mul(&cumprod).and_then(|a| a.f_mul(&sums)).ctx(NAME)
        }
        MonotonicMode::Hard => {
            let reachable = previous.f_cumsum(1, previous.kind()).ctx(NAME)?;
            let p = p_choose.f_mul(&reachable).ctx(NAME)?;
            let not_before = p.f_neg().and_then(|n| n.f_add_scalar(1.0)).ctx(NAME)?;
            // Exclusive cumulative product: ones up to and including the first chosen slot.
            let first = not_before.f_cumprod(1, p.kind()).ctx(NAME)?;
            let shifted = Tensor::f_cat(
                &[
                    Tensor::f_ones([b, 1.min(t)], (p.kind(), p.device())).ctx(NAME)?,
                    first.f_narrow(1, 0, (t - 1).max(0)).ctx(NAME)?,
                ],
                1,
            )
            .and_then(|s| s.f_narrow(1, 0, t))
            .ctx(NAME)?;
            p.f_mul(&shifted).ctx(NAME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn recursive_by_hand() {
        // Start at slot 0 (previous one-hot), p = [0.5, 0.5, 1]: stop at 0 w.p. 0.5, at 1 w.p.
        // 0.25, at 2 w.p. 0.25.
        let p = Tensor::from_slice(&[0.5f64, 0.5, 1.0]).view([1, 3]);
        let prev = Tensor::from_slice(&[1.0f64, 0.0, 0.0]).view([1, 3]);
        let a = monotonic_attention(&p, &prev, MonotonicMode::Recursive).unwrap();
        assert!(close(&values(&a), &[0.5, 0.25, 0.25], 1e-12), "{a:?}");
        // From slot 1 (previous [0, 1, 0]): slot 0 unreachable.
        let prev = Tensor::from_slice(&[0.0f64, 1.0, 0.0]).view([1, 3]);
        let a = monotonic_attention(&p, &prev, MonotonicMode::Recursive).unwrap();
        assert!(close(&values(&a), &[0.0, 0.5, 0.5], 1e-12), "{a:?}");
    }

    #[test]
    fn parallel_agrees_with_recursive() {
        let p = Tensor::rand([4, 7], (Kind::Double, Device::Cpu)) * 0.9 + 0.05;
        let prev = Tensor::rand([4, 7], (Kind::Double, Device::Cpu)).softmax(-1, Kind::Double);
        let r = monotonic_attention(&p, &prev, MonotonicMode::Recursive).unwrap();
        let q = monotonic_attention(&p, &prev, MonotonicMode::Parallel).unwrap();
        assert!(close(&values(&r), &values(&q), 1e-9));
        // At most the previous mass, less what moved past the end.
        let total = r.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        assert!(values(&total).iter().all(|&s| s <= 1.0 + 1e-12));
    }

    #[test]
    fn hard_picks_the_first_chosen_slot_not_before_the_previous_one() {
        // TF Addons' example: p = [0, 0, 0, 1, 1, 0, 1, 1] from slot 0 attends slot 3.
        let p = Tensor::from_slice(&[0.0f64, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]).view([1, 8]);
        let from0 = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view([1, 8]);
        let a = monotonic_attention(&p, &from0, MonotonicMode::Hard).unwrap();
        assert_eq!(values(&a), [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        // From slot 5: slots 3 and 4 are behind, so slot 6.
        let from5 = Tensor::from_slice(&[0.0f64, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).view([1, 8]);
        let a = monotonic_attention(&p, &from5, MonotonicMode::Hard).unwrap();
        assert_eq!(values(&a), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn safe_cumprod_is_a_cumulative_product_without_early_zeros() {
        let x = Tensor::from_slice(&[0.5f64, 0.25, 2.0, 0.0]).view([1, 4]);
        // Clipped to [tiny, 1]: 0.5, 0.125, 0.125, 0.125 · tiny.
        let c = values(&safe_cumprod(&x, 1, false).unwrap());
        assert!(close(&c[..3], &[0.5, 0.125, 0.125], 1e-12) && c[3] > 0.0, "{c:?}");
        let e = values(&safe_cumprod(&x, -1, true).unwrap());
        assert!(close(&e, &[1.0, 0.5, 0.125, 0.125], 1e-12), "{e:?}");
        assert!(matches!(safe_cumprod(&x, 2, false).unwrap_err(), Error::Shape { .. }));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let p = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let e = monotonic_attention(
            &p,
            &Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)),
            MonotonicMode::Parallel,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "monotonic_attention: previous must be Float [2, 3] (p_choose's kind and shape), got Float [2, 4]");
        let e = monotonic_attention(&p.get(0), &p.get(0), MonotonicMode::Hard).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(matches!(
            monotonic_attention(&Tensor::new(), &p, MonotonicMode::Hard).unwrap_err(),
            Error::InvalidArgument { .. }
        ));
    }
}
