//! `straight_through`: the straight-through estimator, forward one function, backward
//! another (Bengio et al. 2013; `y = g + stop_gradient(f - g)`).

use crate::error::{Error, Result, TorchContext};
use crate::util::check_defined;
use tch::Tensor;

/// Returns a tensor with the value of `forward` whose gradient flows into `backward` as if
/// `backward` had been returned: the straight-through estimator `g + stop_gradient(f - g)`.
/// The usual pair is `forward = round(x)` (or a hard sample) and `backward = x` (or its soft
/// probabilities), so a non-differentiable step trains as the identity.
///
/// Computed as `f.detach() + (g - g.detach())`, whose value is exactly `f` (not
/// `g + (f - g)` with its rounding) at entries where `g` is finite; where `g` is infinite or
/// NaN the result is `f.detach()` (value `f`, gradient 0).
///
/// # Errors
/// [`Error::InvalidArgument`] if either tensor is undefined; [`Error::Shape`] if their shapes
/// or kinds differ.
pub fn straight_through(forward: &Tensor, backward: &Tensor) -> Result<Tensor> {
    const MODULE: &str = "straight_through";
    check_defined(MODULE, "forward", forward)?;
    check_defined(MODULE, "backward", backward)?;
    if forward.size() != backward.size() {
        return Err(Error::shape(
            MODULE,
            "backward",
            format!("{:?} (the forward's shape)", forward.size()),
            backward.size(),
        ));
    }
    if forward.kind() != backward.kind() {
        return Err(Error::shape(MODULE, "backward kind", format!("{:?}", forward.kind()), backward.kind()));
    }
    let f = forward.f_detach().ctx(MODULE)?;
    if !backward.requires_grad() {
        return Ok(f);
    }
    let g = backward.f_detach().ctx(MODULE)?;
    let y = backward.f_sub(&g).and_then(|d| f.f_add(&d)).ctx(MODULE)?;
    let finite = backward.f_isfinite().ctx(MODULE)?;
    y.f_where_self(&finite, &f).ctx(MODULE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn forward_value_of_f_gradient_of_g() {
        let x = Tensor::from_slice(&[0.2f32, 0.7, -1.6]).set_requires_grad(true);
        let y = straight_through(&x.round(), &(&x * 3.0)).unwrap();
        assert_eq!(Vec::<f32>::try_from(y.detach()).unwrap(), [0.0, 1.0, -2.0]);
        (&y * Tensor::from_slice(&[1.0f32, 2.0, 3.0])).sum(Kind::Float).backward();
        // Through g = 3x: the gradient is 3 times the weights.
        assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [3.0, 6.0, 9.0]);
    }

    #[test]
    fn mismatches_are_errors() {
        let a = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let e = straight_through(&a, &Tensor::zeros([3], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "straight_through: backward must be [2] (the forward's shape), got [3]");
        let e = straight_through(&a, &Tensor::zeros([2], (Kind::Double, Device::Cpu))).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(matches!(straight_through(&a, &Tensor::new()).unwrap_err(), Error::InvalidArgument { .. }));
    }
}
