//! Masked softmax shared by every attention module.

use couplet_modules::{Error, Result, TorchContext};
use tch::{Kind, Tensor};

/// The lowest finite value of a floating-point kind: what masked logits are set to.
pub fn lowest_finite(kind: Kind) -> f64 {
    match kind {
        Kind::Double => f64::MIN,
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        _ => f32::MIN as f64,
    }
}

/// Checks that `mask` is a bool tensor of shape `[B, N]` for logits `[B, N]`.
pub fn check_mask(module: &str, mask: &Tensor, batch: i64, n: i64) -> Result<()> {
    couplet_modules::util::check_defined(module, "mask", mask)?;
    if mask.kind() != Kind::Bool || mask.size() != [batch, n] {
        return Err(Error::Shape {
            module: module.to_string(),
            what: "mask".to_string(),
            expected: format!("a bool tensor [{batch}, {n}]"),
            actual: format!("{:?} {:?}", mask.kind(), mask.size()),
        });
    }
    Ok(())
}

/// `x [B, N, ..]` with every row `x[b, n]` whose `mask[b, n]` (bool `[B, N]`, true = keep)
/// is false replaced by zeros. A select (`where`), not a product: padding holding NaN or an
/// infinity is gone afterwards (`0 · inf` would be NaN). The mask is moved to `x`'s device.
///
/// # Errors
/// [`Error::Shape`] naming `module` if `mask`'s shape is not a prefix of `x`'s.
pub(crate) fn zero_masked_rows(module: &str, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (xs, ms) = (x.size(), mask.size());
    if ms.len() > xs.len() || ms[..] != xs[..ms.len()] {
        return Err(Error::shape(module, "mask", format!("a prefix of {xs:?}"), ms));
    }
    // Trailing unit dimensions by `unsqueeze`, not a `view` to host sizes: a traced export
    // (couplet::export) must not bake the traced batch size into the mask.
    let mut keep = mask.f_to_device(x.device()).ctx(module)?;
    for _ in ms.len()..xs.len() {
        keep = keep.f_unsqueeze(-1).ctx(module)?;
    }
    // A zero tensor, not a scalar: tch 0.26 panics when an op taking a scalar fails.
    let zero = Tensor::f_zeros([], (x.kind(), x.device())).ctx(module)?;
    x.f_where_self(&keep, &zero).ctx(module)
}

/// Softmax over the last dimension of `logits [.., N]` where `mask` (bool, broadcastable,
/// true = attend) allows. Masked logits are set to the kind's lowest finite value (Sonnet);
/// rows with no allowed slot get all-zero weights instead of a uniform or NaN row.
///
/// Returns `(weights, masked_logits)`.
///
/// # Errors
/// [`Error::Shape`] naming `module` if `logits` is not floating point or `mask` is not bool;
/// [`Error::InvalidArgument`] if either is undefined;
/// [`Error::Torch`] naming `module` if `mask` does not broadcast to `logits`.
pub fn masked_softmax(module: &str, logits: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
    couplet_modules::util::check_defined(module, "logits", logits)?;
    if let Some(mask) = mask {
        couplet_modules::util::check_defined(module, "mask", mask)?;
    }
    if !logits.is_floating_point() {
        return Err(Error::shape(module, "logits kind", "a floating-point kind", logits.kind()));
    }
    if let Some(mask) = mask.filter(|m| m.kind() != Kind::Bool) {
        return Err(Error::shape(module, "mask kind", "Bool", mask.kind()));
    }
    let Some(mask) = mask else {
        let weights = logits.f_softmax(-1, logits.kind()).ctx(module)?;
        return Ok((weights, logits.shallow_clone()));
    };
    let fill = Tensor::f_scalar_tensor(lowest_finite(logits.kind()), (logits.kind(), logits.device()))
        .ctx(module)?;
    let masked = logits.f_where_self(mask, &fill).ctx(module)?;
    let weights = masked.f_softmax(-1, logits.kind()).ctx(module)?;
    let any = mask.f_any_dim(-1, true).ctx(module)?;
    let zero = Tensor::f_zeros([], (weights.kind(), weights.device())).ctx(module)?;
    let weights = weights.f_where_self(&any, &zero).ctx(module)?;
    Ok((weights, masked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_logits_and_non_bool_masks_are_shape_errors() {
        // Int64 logits used to panic in tch: lowest_finite(Int64) overflows an int64 scalar.
        let logits = Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]);
        let mask = Tensor::from_slice(&[true, false, true]).view([1, 3]);
        let e = masked_softmax("attn", &logits, Some(&mask)).unwrap_err();
        assert_eq!(e.to_string(), "attn: logits kind must be a floating-point kind, got Int64");
        assert!(masked_softmax("attn", &logits, None).is_err());
        let float_mask = mask.to_kind(Kind::Float);
        let e = masked_softmax("attn", &logits.to_kind(Kind::Float), Some(&float_mask)).unwrap_err();
        assert_eq!(e.to_string(), "attn: mask kind must be Bool, got Float");
    }

    #[test]
    fn masked_rows_are_selected_away_even_when_not_finite() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, f32::INFINITY, f32::NAN, 5.0, 6.0]).view([1, 3, 2]);
        let mask = Tensor::from_slice(&[true, false, true]).view([1, 3]);
        let y = zero_masked_rows("m", &x, &mask).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(), [1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
        assert!(zero_masked_rows("m", &x, &mask.narrow(1, 0, 2)).is_err(), "a mask of another length");
        assert!(check_mask("m", &Tensor::new(), 1, 3).is_err());
    }

    #[test]
    fn masked_slots_get_zero_weight_and_empty_rows_are_zero() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0]).view([2, 3]);
        let mask = Tensor::from_slice(&[true, false, true, false, false, false]).view([2, 3]);
        let (w, l) = masked_softmax("m", &logits, Some(&mask)).unwrap();
        let w = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        let e = (1.0f32).exp() + (3.0f32).exp();
        let want = [1f32.exp() / e, 0.0, 3f32.exp() / e, 0.0, 0.0, 0.0];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        assert_eq!(l.double_value(&[0, 1]), f32::MIN as f64);
        let (w, _) = masked_softmax("m", &logits, None).unwrap();
        assert!((w.sum(Kind::Float).double_value(&[]) - 2.0).abs() < 1e-6);
    }
}
