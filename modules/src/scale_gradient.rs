//! `scale_gradient`: the identity forward, the gradient times a scale backward (Sonnet's
//! `snt.scale_gradient`).

use crate::error::{Error, Result, TorchContext};
use crate::util::check_defined;
use tch::Tensor;

/// Returns a tensor equal to `x` whose gradient is `scale` times the incoming one. `scale = 0`
/// stops the gradient (`x.detach()`), `scale = 1` is `x` itself, a negative scale reverses it
/// (the gradient reversal layer of domain-adversarial training). Sonnet's definition.
///
/// Computed as `x.detach() + (x - x.detach()) · scale`, whose forward value is exactly `x`
/// at finite entries. At entries that are infinite or NaN, `x - x.detach()` is NaN, so there
/// the result is `x.detach()`: the value is still `x`, and the gradient is 0.
///
/// # Errors
/// [`Error::InvalidArgument`] if `x` is undefined or `scale` is not finite.
pub fn scale_gradient(x: &Tensor, scale: f64) -> Result<Tensor> {
    const MODULE: &str = "scale_gradient";
    check_defined(MODULE, "input", x)?;
    if !scale.is_finite() {
        return Err(Error::invalid(MODULE, format!("scale must be finite, got {scale}")));
    }
    if scale == 1.0 {
        return Ok(x.shallow_clone());
    }
    let frozen = x.f_detach().ctx(MODULE)?;
    if scale == 0.0 || !x.requires_grad() {
        return Ok(frozen);
    }
    let scaled =
        x.f_sub(&frozen).and_then(|d| d.f_mul_scalar(scale)).and_then(|d| frozen.f_add(&d)).ctx(MODULE)?;
    let finite = x.f_isfinite().ctx(MODULE)?;
    scaled.f_where_self(&finite, &frozen).ctx(MODULE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn grad_of(scale: f64) -> (Tensor, Tensor) {
        let x = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).set_requires_grad(true);
        let y = scale_gradient(&x, scale).unwrap();
        (y.square().sum(Kind::Float)).backward();
        (y.detach(), x.grad())
    }

    #[test]
    fn identity_forward_scaled_gradient() {
        for scale in [0.5, -1.0, 2.0, 1.0] {
            let (y, g) = grad_of(scale);
            assert!(y.equal(&Tensor::from_slice(&[1.5f32, -2.0, 3.25])), "scale {scale}");
            // d/dx of y² is 2y, times the scale: hand-worked.
            let expected = Tensor::from_slice(&[3.0f32, -4.0, 6.5]) * scale;
            assert!(g.allclose(&expected, 1e-6, 1e-6, false), "scale {scale}: {g:?}");
        }
        // Scale 0 stops the gradient: the result is detached.
        let x = Tensor::from_slice(&[1.5f32]).set_requires_grad(true);
        let y = scale_gradient(&x, 0.0).unwrap();
        assert!(!y.requires_grad() && y.equal(&x.detach()));
    }

    #[test]
    fn non_finite_entries_keep_their_value() {
        let x = Tensor::from_slice(&[f32::INFINITY, 2.0]).set_requires_grad(true);
        let y = scale_gradient(&x, 0.5).unwrap();
        assert_eq!(y.double_value(&[0]), f64::INFINITY);
        y.get(1).backward();
        assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [0.0, 0.5]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let e = scale_gradient(&x, f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "scale_gradient: scale must be finite, got NaN");
        assert!(matches!(scale_gradient(&Tensor::new(), 1.0).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
