//! `jacobian` and `batch_jacobian`: full Jacobians of a function's output with respect to its
//! input, as TensorFlow's `GradientTape.jacobian` / `batch_jacobian`.

use crate::error::{Error, Result, TorchContext};
use crate::util::check_defined;
use tch::Tensor;

const JACOBIAN: &str = "jacobian";
const BATCH_JACOBIAN: &str = "batch_jacobian";

/// A leaf copy of `x` that requires grad, after checking it is defined and floating point.
fn leaf(module: &str, x: &Tensor) -> Result<Tensor> {
    check_defined(module, "input", x)?;
    if !x.is_floating_point() {
        return Err(Error::shape(module, "input kind", "a floating-point kind", x.kind()));
    }
    x.f_detach().and_then(|x| x.f_set_requires_grad(true)).ctx(module)
}

/// The gradient of `root` (a scalar) with respect to `x`, zeros where `root` does not depend
/// on it.
fn grad(module: &str, root: &Tensor, x: &Tensor) -> Result<Tensor> {
    if !root.requires_grad() {
        return x.f_zeros_like().ctx(module);
    }
    let g = Tensor::f_run_backward(&[root], &[x], true, false).ctx(module)?;
    match g.into_iter().next() {
        Some(g) if g.defined() => Ok(g),
        _ => x.f_zeros_like().ctx(module),
    }
}

fn numel(module: &str, shape: &[i64]) -> Result<i64> {
    shape
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(module, format!("element count of {shape:?} overflows i64")))
}

/// The Jacobian of `y = f(x)`: `J [..y, ..x]` with `J[i.., j..] = ∂y[i..] / ∂x[j..]`, by one
/// backward pass per element of `y`. `f` is called once, on a copy of `x` that requires
/// grad (so `x` itself is left untouched); entries of `y` that do not depend on `x` give zero
/// rows. The result is detached.
///
/// # Errors
/// [`Error::InvalidArgument`] if `x` or `y` is undefined or the Jacobian's size overflows
/// `i64`; [`Error::Shape`] if `x` or `y` is not floating point; `f`'s own errors unchanged.
pub fn jacobian(f: impl FnOnce(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    let m = JACOBIAN;
    let x = leaf(m, x)?;
    let y = f(&x)?;
    check_defined(m, "output", &y)?;
    if !y.is_floating_point() {
        return Err(Error::shape(m, "output kind", "a floating-point kind", y.kind()));
    }
    let (ys, xs) = (y.size(), x.size());
    let (ny, nx) = (numel(m, &ys)?, numel(m, &xs)?);
    numel(m, &[ny, nx])?;
    let flat = y.f_reshape([ny]).ctx(m)?;
    let mut rows = Vec::with_capacity(usize::try_from(ny).unwrap_or(0));
    for i in 0..ny {
        rows.push(grad(m, &flat.f_get(i).ctx(m)?, &x)?.f_reshape([nx]).ctx(m)?);
    }
    let out: Vec<i64> = ys.iter().chain(&xs).copied().collect();
    if rows.is_empty() {
        return Tensor::f_zeros(out, (x.kind(), x.device())).ctx(m);
    }
    Tensor::f_stack(&rows, 0).and_then(|j| j.f_reshape(out)).ctx(m)
}

/// The per-example Jacobian of `y = f(x)` for `x [B, ..x]`, `y [B, ..y]`: `J [B, ..y, ..x]`
/// with `J[b, i.., j..] = ∂y[b, i..] / ∂x[b, j..]`, assuming (as TensorFlow does) that row `b`
/// of `y` depends only on row `b` of `x`, which takes one backward pass per element of one
/// example's `y` whatever `B` is (`B` may be any size, 0 included). The result is detached.
///
/// # Errors
/// [`Error::Shape`] if `x` is a scalar, `y`'s leading dimension differs from `x`'s, or either
/// is not floating point; [`Error::InvalidArgument`] if either is undefined or a size
/// overflows `i64`; `f`'s own errors unchanged.
pub fn batch_jacobian(f: impl FnOnce(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    let m = BATCH_JACOBIAN;
    let x = leaf(m, x)?;
    let xs = x.size();
    let Some(&b) = xs.first() else {
        return Err(Error::shape(m, "input", "[B, ..]", xs));
    };
    let y = f(&x)?;
    check_defined(m, "output", &y)?;
    if !y.is_floating_point() {
        return Err(Error::shape(m, "output kind", "a floating-point kind", y.kind()));
    }
    let ys = y.size();
    if ys.first() != Some(&b) {
        return Err(Error::shape(m, "output", format!("[{b}, ..] (the input's batch)"), ys));
    }
    let (ny, nx) = (numel(m, &ys[1..])?, numel(m, &xs[1..])?);
    numel(m, &[b, ny, nx])?;
    let flat = y.f_reshape([b, ny]).ctx(m)?;
    let mut cols = Vec::with_capacity(usize::try_from(ny).unwrap_or(0));
    for i in 0..ny {
        let root = flat.f_select(1, i).and_then(|c| c.f_sum(c.kind())).ctx(m)?;
        cols.push(grad(m, &root, &x)?.f_reshape([b, nx]).ctx(m)?);
    }
    let out: Vec<i64> = [b].iter().chain(&ys[1..]).chain(&xs[1..]).copied().collect();
    if cols.is_empty() {
        return Tensor::f_zeros(out, (x.kind(), x.device())).ctx(m);
    }
    Tensor::f_stack(&cols, 1).and_then(|j| j.f_reshape(out)).ctx(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    const CPU: (Kind, Device) = (Kind::Double, Device::Cpu);

    #[test]
    fn jacobian_of_a_matrix_product_is_the_matrix() {
        let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).view([3, 2]);
        let x = Tensor::from_slice(&[0.5f64, -1.0]);
        let j = jacobian(|x| Ok(a.matmul(x)), &x).unwrap();
        assert_eq!(j.size(), [3, 2]);
        assert!(j.equal(&a));
        assert!(!x.requires_grad(), "x is left untouched");
    }

    #[test]
    fn jacobian_of_an_elementwise_square_is_diagonal_hand_worked() {
        let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]);
        let j = jacobian(|x| Ok(x.square()), &x).unwrap();
        assert_eq!(j.size(), [2, 2, 2, 2]);
        // ∂(x²)[i] / ∂x[k] = 2 x[i] δ(i, k).
        assert_eq!(j.double_value(&[1, 0, 1, 0]), 6.0);
        assert_eq!(j.double_value(&[1, 0, 0, 1]), 0.0);
        assert_eq!(j.sum(Kind::Double).double_value(&[]), 20.0);
        // An output that ignores x: zeros.
        let z = jacobian(|_| Ok(Tensor::ones([3], CPU)), &x).unwrap();
        assert_eq!(z.size(), [3, 2, 2]);
        assert_eq!(z.abs().sum(Kind::Double).double_value(&[]), 0.0);
    }

    #[test]
    fn batch_jacobian_matches_the_full_jacobians_block_diagonal() {
        let w = Tensor::randn([3, 2], CPU);
        let x = Tensor::randn([4, 3], CPU);
        let f = |x: &Tensor| Ok(x.matmul(&w).tanh());
        let bj = batch_jacobian(f, &x).unwrap();
        assert_eq!(bj.size(), [4, 2, 3]);
        let full = jacobian(f, &x).unwrap(); // [4, 2, 4, 3]
        for b in 0..4 {
            assert!(bj.get(b).allclose(&full.get(b).select(1, b), 1e-12, 1e-12, false));
        }
        // tanh'(u) w[k, j] worked from the formula.
        let u = x.matmul(&w);
        let expected = (u.tanh().square().neg() + 1.0).unsqueeze(2) * w.tr().unsqueeze(0);
        assert!(bj.allclose(&expected, 1e-12, 1e-12, false));
        // Any batch size, including 0.
        assert_eq!(batch_jacobian(f, &Tensor::zeros([0, 3], CPU)).unwrap().size(), [0, 2, 3]);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let x = Tensor::zeros([2, 3], CPU);
        let e = batch_jacobian(|x| Ok(x.sum_dim_intlist([0i64].as_slice(), false, Kind::Double)), &x)
            .unwrap_err();
        assert_eq!(e.to_string(), "batch_jacobian: output must be [2, ..] (the input's batch), got [3]");
        let e = batch_jacobian(|x| Ok(x.shallow_clone()), &Tensor::from(1.0f64)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e =
            jacobian(|x| Ok(x.shallow_clone()), &Tensor::zeros([2], (Kind::Int64, Device::Cpu))).unwrap_err();
        assert_eq!(e.to_string(), "jacobian: input kind must be a floating-point kind, got Int64");
        assert!(matches!(jacobian(|_| Ok(Tensor::new()), &x).unwrap_err(), Error::InvalidArgument { .. }));
        assert!(matches!(
            jacobian(|x| Ok(x.shallow_clone()), &Tensor::new()).unwrap_err(),
            Error::InvalidArgument { .. }
        ));
    }
}
