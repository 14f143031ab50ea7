//! Gradient clipping over explicit variable lists (`torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`).

use crate::error::{Error, Result, TorchContext};
use crate::store::Variable;
use tch::Tensor;

/// The defined gradients of `variables`, in order.
fn defined_grads(variables: &[Variable]) -> Vec<Tensor> {
    variables.iter().map(|v| v.tensor().grad()).filter(Tensor::defined).collect()
}

/// Clips the gradients of `variables` by their global L2 norm, in place, exactly as
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: with `total = ‖(‖g₁‖₂, …, ‖gₙ‖₂)‖₂`
/// over the defined gradients, every gradient is multiplied by
/// `min(max_norm / (total + 1e-6), 1)`, computed in the gradients' kind. Variables without
/// a gradient are ignored. Call it between `backward` and [`Optimizer::step`](super::Optimizer::step).
///
/// Returns the total norm *before* clipping (0 when no variable has a gradient). As in
/// PyTorch, a non-finite total norm is returned and propagates into the gradients (NaN)
/// rather than being an error. TF's `clip_by_global_norm` scales by
/// `max_norm / max(total, max_norm)` (no `1e-6`), a difference of about `1e-6` relative.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `clip_grad_norm` if `max_norm` is negative or NaN;
/// [`Error::Torch`] if libtorch fails (e.g. gradients on different devices cannot be stacked).
pub fn clip_grad_norm(variables: &[Variable], max_norm: f64) -> Result<f64> {
    const NAME: &str = "clip_grad_norm";
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(NAME, format!("max_norm must be >= 0, got {max_norm}")));
    }
    let grads = defined_grads(variables);
    let Some(first) = grads.first() else {
        return Ok(0.0);
    };
    let (kind, device) = (first.kind(), first.device());
    tch::no_grad(|| {
        let norms = grads
            .iter()
            .map(|g| g.f_norm().and_then(|n| n.f_to_device_(device, kind, false, false)))
            .collect::<Result<Vec<_>, _>>()
            .ctx(NAME)?;
        let total = Tensor::f_stack(&norms, 0).and_then(|n| n.f_norm()).ctx(NAME)?;
        let coefficient = total
            .f_add_scalar(1e-6)
            .and_then(|t| t.f_reciprocal())
            .and_then(|t| t.f_mul_scalar(max_norm))
            .and_then(|t| t.f_clamp_max(1.0))
            .ctx(NAME)?;
        for g in &grads {
            let c = coefficient.f_to_device_(g.device(), g.kind(), false, false).ctx(NAME)?;
            let _ = g.shallow_clone().f_mul_(&c).ctx(NAME)?;
        }
        Ok(total.double_value(&[]))
    })
}

/// Clamps every gradient of `variables` to `[-clip_value, clip_value]`, in place, as
/// `torch.nn.utils.clip_grad_value_` (TF: `tf.clip_by_value` on each gradient). Variables
/// without a gradient are ignored.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `clip_grad_value` if `clip_value` is negative or NaN;
/// [`Error::Torch`] if libtorch fails.
pub fn clip_grad_value(variables: &[Variable], clip_value: f64) -> Result<()> {
    const NAME: &str = "clip_grad_value";
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::invalid(NAME, format!("clip_value must be >= 0, got {clip_value}")));
    }
    tch::no_grad(|| {
        for g in defined_grads(variables) {
            // Beyond the kind's range the clamp is a no-op, and libtorch would refuse the bound.
            if !crate::util::scalar_fits(clip_value, g.kind()) {
                continue;
            }
            let _ = g.shallow_clone().f_clamp_(-clip_value, clip_value).ctx(NAME)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::Store;

    fn two_params() -> (Store, Variable, Variable) {
        let store = Store::cpu();
        let s = store.root().child("m").unwrap();
        let _ = s.var("a", &[2]).create().unwrap();
        let _ = s.var("b", &[1]).create().unwrap();
        let _ = s.var("unused", &[1]).create().unwrap();
        (store.clone(), store.get("m/a").unwrap(), store.get("m/b").unwrap())
    }

    fn grad(v: &Variable) -> Vec<f64> {
        Vec::<f64>::try_from(v.tensor().grad().to_kind(tch::Kind::Double)).unwrap()
    }

    #[test]
    fn clip_values_beyond_the_kind_leave_half_gradients_alone() {
        // A bound that overflows Half used to panic inside tch's f_clamp_.
        let store = Store::with_kind(tch::Device::Cpu, tch::Kind::Half).unwrap();
        let v =
            store.root().child("m").unwrap().var("a", &[2]).init(crate::Initializer::Ones).create().unwrap();
        (&v * 3.0).sum(tch::Kind::Float).backward();
        let vars = store.variables();
        clip_grad_value(&vars, 1e10).unwrap();
        assert_eq!(grad(&vars[0]), [3.0, 3.0]);
        clip_grad_value(&vars, 2.0).unwrap();
        assert_eq!(grad(&vars[0]), [2.0, 2.0]);
    }

    #[test]
    fn clip_grad_norm_scales_by_the_global_norm() {
        let (store, a, b) = two_params();
        set_grad(&a, &[3.0, 0.0]);
        set_grad(&b, &[4.0]);
        // total = √(9 + 16) = 5; coefficient = 1 / (5 + 1e-6).
        let total = clip_grad_norm(&store.variables(), 1.0).unwrap();
        assert!((total - 5.0).abs() < 1e-6, "{total}");
        let c = 1.0 / (5.0 + 1e-6);
        assert_near(&grad(&a), &[3.0 * c, 0.0]);
        assert_near(&grad(&b), &[4.0 * c]);
        assert!(!store.get("m/unused").unwrap().tensor().grad().defined());
        // Below the threshold the gradients are left as they are.
        let total = clip_grad_norm(&store.variables(), 10.0).unwrap();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert_near(&grad(&b), &[4.0 * c]);
    }

    #[test]
    fn clip_grad_norm_without_gradients_is_zero() {
        let (store, _, _) = two_params();
        assert_eq!(clip_grad_norm(&store.variables(), 1.0).unwrap(), 0.0);
        assert_eq!(clip_grad_norm(&[], 1.0).unwrap(), 0.0);
    }

    #[test]
    fn clip_grad_value_clamps_each_element() {
        let (store, a, b) = two_params();
        set_grad(&a, &[3.0, -0.5]);
        set_grad(&b, &[-4.0]);
        clip_grad_value(&store.variables(), 1.0).unwrap();
        assert_near(&grad(&a), &[1.0, -0.5]);
        assert_near(&grad(&b), &[-1.0]);
    }

    #[test]
    fn negative_thresholds_are_errors() {
        let e = clip_grad_norm(&[], -1.0).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }));
        assert_eq!(e.to_string(), "clip_grad_norm: max_norm must be >= 0, got -1");
        let e = clip_grad_value(&[], f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "clip_grad_value: clip_value must be >= 0, got NaN");
    }
}
